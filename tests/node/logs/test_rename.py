"""`rename_noreplace`: one renameat2(RENAME_NOREPLACE), on real files (issue 18 §5)."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from node_janitor.node.logs import rotation
from node_janitor.node.logs.rotation import rename_noreplace
from support.inotify import DirectoryEvents


def test_a_rotation_is_one_move_as_a_log_shipper_sees_it(tmp_path: Path) -> None:
    """The old link-then-unlink showed a tailing shipper a new file and a deleted one (and two names at once)."""
    live = tmp_path / "0.log"
    live.write_bytes(b"line\n")
    with live.open("ab") as writer, DirectoryEvents(tmp_path) as events:
        inode = os.fstat(writer.fileno()).st_ino
        rename_noreplace(str(live), str(tmp_path / "0.log.20260301-100000.000000"))
        writer.write(b"more\n")  # the runtime's writer goes on writing into the same inode
        seen = events.read()
    assert seen == [("moved_from", "0.log"), ("moved_to", "0.log.20260301-100000.000000")]
    rotated = tmp_path / "0.log.20260301-100000.000000"
    assert os.stat(rotated).st_ino == inode and os.stat(rotated).st_nlink == 1
    assert rotated.read_bytes() == b"line\nmore\n" and not live.exists()


def test_it_never_replaces_a_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"a")
    dst.write_bytes(b"b")
    with pytest.raises(FileExistsError):
        rename_noreplace(str(src), str(dst))
    assert src.read_bytes() == b"a" and dst.read_bytes() == b"b"
    with pytest.raises(FileNotFoundError):
        rename_noreplace(str(tmp_path / "gone"), str(tmp_path / "c"))


def test_a_file_system_that_refuses_the_flag_gets_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the kernel answers on a file system without RENAME_NOREPLACE support (EINVAL), simulated: the libc
    call fails as it would there."""

    def refused(*_: object) -> int:
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(rotation, "_renameat2", refused)
    src = tmp_path / "0.log"
    src.write_bytes(b"x")
    with pytest.raises(OSError, match=r"refuses renameat2\(RENAME_NOREPLACE\): nothing renamed") as caught:
        rename_noreplace(str(src), str(tmp_path / "0.log.1"))
    assert caught.value.errno == errno.EINVAL and src.exists()
