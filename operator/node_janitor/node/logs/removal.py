"""Removing files without following links: every directory below a trusted top is opened with O_NOFOLLOW and
files are unlinked relative to it (`dir_fd`), so a symlink swapped in anywhere on the way is refused, never
followed; only regular files go."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from node_janitor.node.outcome import Outcome

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def printable(name: str) -> str:
    """A file name safe to print and to send in a report, whatever bytes it holds (not UTF-8: escaped)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def open_beneath(top: str, parts: Sequence[str]) -> int:
    """A directory fd for `top/parts...`: `top` is opened as given (it is configured: the pod log directory, the
    host root), every part below it with O_NOFOLLOW (a symlink fails with ELOOP or ENOTDIR)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise OSError(errno.EINVAL, f"not a plain name: {printable(part)!r}")
            below = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlink_regular(dir_fd: int, name: str) -> tuple[Outcome, str, int]:
    """Unlink `name` in the directory `dir_fd` if it is a regular file (never through a link)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    if not stat.S_ISREG(st.st_mode):
        return Outcome.SKIPPED, "not a regular file", 0
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    return Outcome.DONE, "", st.st_blocks * 512


def remove_file_beneath(top: str, path: str) -> tuple[Outcome, str, int]:
    """Remove the regular file `path`, which lies below `top`, following no link below `top`."""
    parts = os.path.relpath(path, top).split(os.sep)
    if parts[0] in ("..", "."):
        return Outcome.SKIPPED, f"not below {printable(top)}", 0
    try:
        fd = open_beneath(top, parts[:-1])
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EINVAL):
            return Outcome.SKIPPED, "a symlink or a file on the way; not followed", 0
        raise
    try:
        return unlink_regular(fd, parts[-1])
    finally:
        os.close(fd)


def remove_file(path: str) -> tuple[Outcome, str, int]:
    """Remove the regular file `path` (a link in its place is refused, not followed)."""
    return remove_file_beneath(os.path.dirname(path) or ".", path)
