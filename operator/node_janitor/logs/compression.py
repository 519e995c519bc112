"""gzip of rotated files, beside the original until the copy is complete."""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import secrets
import shutil
import stat

from node_janitor.executor import Outcome
from node_janitor.logs.names import COMPRESS_SUFFIX, TMP_SUFFIX
from node_janitor.logs.rotation import _rename_noreplace


def _gzip_file(path: str, level: int) -> tuple[Outcome, str, int]:
    """gzip `path` to a temporary file of its own (unique name, O_EXCL: two compressions, in this process or
    another, never write into one file), fsync, rename to `path.gz` (never over one), remove `path`. Skipped
    (nothing changed) if the file grows while it is read: its writer has not finished with it; skipped too if
    another compression finished first. A symlink in `path`'s place is not followed."""
    tmp = f"{path}.{secrets.token_hex(8)}{TMP_SUFFIX}"
    dst = path + COMPRESS_SUFFIX
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
            try:
                after = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile (maxFiles, the budget): nothing to keep
                os.unlink(tmp)
                return Outcome.DONE, "already gone", 0
            if (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
                os.unlink(tmp)
                return Outcome.SKIPPED, "still being written", 0
            os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
            try:
                _rename_noreplace(tmp, dst)
            except FileExistsError:  # another compression finished first; it removes `path`
                os.unlink(tmp)
                return Outcome.SKIPPED, "already compressed", 0
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return Outcome.DONE, "", max(0, before.st_blocks * 512 - os.stat(dst).st_blocks * 512)
