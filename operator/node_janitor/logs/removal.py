"""Removing files and pod directories: regular files only, symlinks removed and never followed."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys

from node_janitor.executor import Outcome


def _remove_file(path: str) -> tuple[Outcome, str, int]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    if not stat.S_ISREG(st.st_mode):
        return Outcome.SKIPPED, "not a regular file", 0
    try:
        os.unlink(path)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    return Outcome.DONE, "", st.st_blocks * 512


def _tree_bytes(path: str) -> int:
    total = 0
    for top, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
    return total


def _remove_tree(path: str) -> tuple[Outcome, str, int]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    if not stat.S_ISDIR(st.st_mode):
        return Outcome.SKIPPED, "not a directory", 0
    size = _tree_bytes(path)
    errors: list[str] = []

    def on_exc(_func: object, p: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            errors.append(f"{p}: {exc}")

    # Symlinks are removed, never followed.
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=on_exc)
    else:
        shutil.rmtree(path, onerror=lambda f, p, info: on_exc(f, p, info[1]))
    if errors:
        left = _tree_bytes(path) if os.path.lexists(path) else 0
        return Outcome.FAILED, "; ".join(errors[:3]), size - left
    return Outcome.DONE, "", size
