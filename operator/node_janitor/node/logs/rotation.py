"""Renames that never overwrite: how a live log becomes a rotated file (and back, if reopening fails), and how a
compressed copy is put in place.

One `renameat2(RENAME_NOREPLACE)` (Linux 3.15+, glibc 2.28+, through ctypes: Python has no os.renameat2): atomic,
the file has one name at every instant, and a log shipper watching the directory sees one move (IN_MOVED_FROM,
IN_MOVED_TO), as after kubelet's own rename. The link-then-unlink it replaces showed a new file and a deleted one,
left two names after a crash between the two steps, and on a file system without hard links checked, then renamed
(an overwrite window). A file system that refuses the flag (EINVAL) gets a clear error and nothing renamed."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

AT_FDCWD = -100
RENAME_NOREPLACE = 1

_libc = ctypes.CDLL(None, use_errno=True)
_renameat2: Callable[[int, bytes, int, bytes, int], int] | None
try:
    _fn = _libc.renameat2
except AttributeError:  # a C library older than glibc 2.28
    _renameat2 = None
else:
    _fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _fn.restype = ctypes.c_int
    _renameat2 = _fn


def rename_noreplace(src: str, dst: str) -> None:
    """Rename `src` to `dst` in one step, never over an existing `dst` (FileExistsError instead). A writer
    holding the file open keeps writing to the same inode throughout."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is missing from the C library (glibc 2.28 or later): nothing renamed")
    if _renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), dst)
    if err in (errno.EINVAL, errno.ENOSYS):
        raise OSError(
            err,
            f"the file system of {os.path.dirname(dst) or '.'} refuses renameat2(RENAME_NOREPLACE): nothing renamed",
        )
    raise OSError(err, os.strerror(err), src, None, dst)
