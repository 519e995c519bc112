"""gzip of rotated files, beside the original until the copy is complete."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat

from node_janitor.executor import Outcome
from node_janitor.logs.names import COMPRESS_SUFFIX, TMP_SUFFIX
from node_janitor.logs.rotation import _rename_noreplace


def _gzip_file(path: str, level: int) -> tuple[Outcome, str, int]:
    """gzip `path` to `path.tmp`, fsync, rename to `path.gz`, remove `path`. Skipped (nothing changed) if the
    file grows while it is read: its writer has not finished with it."""
    tmp = path + TMP_SUFFIX
    dst = path + COMPRESS_SUFFIX
    try:
        src = open(path, "rb")  # noqa: SIM115 (closed below, before the rename)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    try:
        before = os.fstat(src.fileno())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, stat.S_IMODE(before.st_mode) or 0o640)
        try:
            with os.fdopen(fd, "wb") as raw:
                with gzip.GzipFile(
                    os.path.basename(path), "wb", compresslevel=level, fileobj=raw, mtime=int(before.st_mtime)
                ) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
            after = os.stat(path)
            if (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
                os.unlink(tmp)
                return Outcome.SKIPPED, "still being written", 0
            os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
            _rename_noreplace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        src.close()
    os.unlink(path)
    return Outcome.DONE, "", max(0, before.st_blocks * 512 - os.stat(dst).st_blocks * 512)
