"""gzip of rotated files: the copy is written beside the original, then put in place in one quick step."""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import secrets
import shutil
import stat
from dataclasses import dataclass

from node_janitor.node.logs.names import COMPRESS_SUFFIX, draft_name
from node_janitor.node.logs.rotation import rename_noreplace
from node_janitor.node.outcome import Outcome


@dataclass(frozen=True, slots=True)
class GzipDraft:
    """A complete, fsynced gzip copy of `path` in `tmp`, not yet in place."""

    path: str
    tmp: str
    before: os.stat_result  # `path` when it was read


def write_gzip_draft(path: str, level: int) -> GzipDraft | tuple[Outcome, str, int]:
    """gzip `path` into a draft of its own (`draft_name`: unique, O_EXCL: two compressions, in this process or
    another, never write into one file; out of the kubelet's reach) and fsync it; or the outcome, if there is
    nothing to compress. A symlink in `path`'s place is not followed."""
    tmp = draft_name(path, secrets.token_hex(8))
    try:
        src_fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Outcome.SKIPPED, "not a regular file", 0
        raise
    with os.fdopen(src_fd, "rb") as src:
        before = os.fstat(src.fileno())
        if not stat.S_ISREG(before.st_mode):
            return Outcome.SKIPPED, "not a regular file", 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, stat.S_IMODE(before.st_mode) or 0o640)
        try:
            with os.fdopen(fd, "wb") as raw:
                with gzip.GzipFile(
                    os.path.basename(path), "wb", compresslevel=level, fileobj=raw, mtime=int(before.st_mtime)
                ) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
            os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return GzipDraft(path, tmp, before)


def discard_gzip_draft(draft: GzipDraft) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(draft.tmp)


def commit_gzip_draft(draft: GzipDraft) -> tuple[Outcome, str, int]:
    """Put the copy in place (`path.gz`, never over one) and remove `path`: skipped, nothing changed, if `path`
    changed since it was read (its writer had not finished with it) or another compression finished first; done
    with nothing freed if `path` was removed meanwhile.

    Quick: run it under the tree lock (`LogJanitor` does), so that no pass plans to remove `path` and then finds
    its lines moved to `path.gz`, out of the plan's reach (the budget would remove newer files in its place)."""
    path, tmp, before = draft.path, draft.tmp, draft.before
    dst = path + COMPRESS_SUFFIX
    try:
        try:
            after = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:  # removed meanwhile (maxFiles, the budget): nothing to keep
            return Outcome.DONE, "already gone", 0
        if (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
            return Outcome.SKIPPED, "still being written", 0
        try:
            rename_noreplace(tmp, dst)
        except FileExistsError:  # another compression finished first; it removes `path`
            return Outcome.SKIPPED, "already compressed", 0
        except FileNotFoundError:  # the draft was removed meanwhile (by hand, by another cleaner): compress later
            return Outcome.SKIPPED, "the draft was removed meanwhile", 0
    finally:
        discard_gzip_draft(draft)  # a no-op once renamed
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return Outcome.DONE, "", max(0, before.st_blocks * 512 - os.stat(dst).st_blocks * 512)


def gzip_file(path: str, level: int) -> tuple[Outcome, str, int]:
    """`write_gzip_draft`, then `commit_gzip_draft` (no lock: for a tree nothing else works on)."""
    draft = write_gzip_draft(path, level)
    return commit_gzip_draft(draft) if isinstance(draft, GzipDraft) else draft
