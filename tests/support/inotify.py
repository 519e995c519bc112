"""Acting the instant a file goes: an inotify watch (Linux, through libc) read by a thread that runs the action
itself, so that no polling interval or log write stands between the event and the action."""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

IN_MOVED_FROM = 0x40
IN_DELETE = 0x200
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
_libc = ctypes.CDLL(None, use_errno=True)


class OnDelete:
    """Calls `action()` (once, from a thread) as soon as a file named one of `names` is deleted from, or moved
    out of, `directory`. `fired` says whether it did. A context manager: the watch ends on exit."""

    def __init__(self, directory: Path, names: Iterable[str], action: Callable[[], None]) -> None:
        self.names = frozenset(names)
        self.action = action
        self.fired = threading.Event()
        self._fd = _libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        if _libc.inotify_add_watch(self._fd, os.fsencode(directory), IN_DELETE | IN_MOVED_FROM) < 0:
            errno = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(errno, f"inotify_add_watch {directory}: {os.strerror(errno)}")
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._watch, name="on-delete", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                continue
            offset = 0
            while offset < len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                name = data[start : start + length].rstrip(b"\0").decode(errors="replace")
                offset = start + length
                if name in self.names:
                    self.action()
                    self.fired.set()
                    return

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._stop_r, self._stop_w):
            os.close(fd)

    def __enter__(self) -> OnDelete:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


IN_MOVED_TO = 0x80
IN_CREATE = 0x100
EVENT_NAMES = {IN_MOVED_FROM: "moved_from", IN_MOVED_TO: "moved_to", IN_CREATE: "create", IN_DELETE: "delete"}


class DirectoryEvents:
    """What a log shipper tailing `directory` sees: the names created, deleted and moved in it, in order (read
    with `read()` after the fact; no thread). A context manager: the watch ends on exit."""

    def __init__(self, directory: Path) -> None:
        self._fd = _libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        if _libc.inotify_add_watch(self._fd, os.fsencode(directory), sum(EVENT_NAMES)) < 0:
            errno = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(errno, f"inotify_add_watch {directory}: {os.strerror(errno)}")

    def read(self) -> list[tuple[str, str]]:
        """(event, name) pairs queued so far."""
        out: list[tuple[str, str]] = []
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return out
            offset = 0
            while offset < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                name = data[start : start + length].rstrip(b"\0").decode(errors="replace")
                offset = start + length
                out += [(label, name) for bit, label in EVENT_NAMES.items() if mask & bit]

    def __enter__(self) -> DirectoryEvents:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        os.close(self._fd)
