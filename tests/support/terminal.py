"""A command on a real terminal (a pty): what it shows there, and answers typed to it."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
import time
from collections.abc import Sequence

__all__ = ["Terminal"]

DEADLINE = 120.0


class Terminal:
    """A pty as the command's stdin and stderr: what it shows is read continuously (it never blocks on a full
    buffer); `type` answers it."""

    def __init__(self, args: Sequence[str], *, stdin_tty: bool = True) -> None:
        self.master, slave = pty.openpty()
        self.shown = b""
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            args, stdin=slave if stdin_tty else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
            env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
        )  # fmt: skip
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: the command exited and closed its side
                return
            if not data:
                return
            with self._lock:
                self.shown += data

    def wait_for(self, text: bytes) -> None:
        deadline = time.monotonic() + DEADLINE
        while text not in self.shown:
            assert self.process.poll() is None, f"exited {self.process.returncode} without showing {text!r}: " + (
                self.shown.decode(errors="replace")
            )
            assert time.monotonic() < deadline, self.shown.decode(errors="replace")
            time.sleep(0.05)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self) -> tuple[int, str, str]:
        out, _ = self.process.communicate(timeout=DEADLINE)
        self._reader.join(10)
        os.close(self.master)
        return self.process.returncode, out.decode(), self.shown.decode(errors="replace")
