"""Renames that never overwrite: how a live log becomes a rotated file (and back, if reopening fails)."""

from __future__ import annotations

import errno
import os


def _rename_noreplace(src: str, dst: str) -> None:
    """rename(2) that never overwrites `dst` (FileExistsError instead): link, then unlink the old name. A
    writer holding the file open keeps writing to the same inode throughout."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(dst):  # a file system without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)
