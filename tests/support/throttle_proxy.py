"""A loopback TCP proxy whose answers (target to client) flow at most `rate` bytes a second, shared by every
connection; `rate` may change while it runs (None: no limit). Put in front of the loopback registry, it makes a
pull as slow as a test needs: a pull stays in flight until the test lets it finish (`rate = None`)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

_CHUNK = 64 << 10


class ThrottlingProxy:
    def __init__(self, target_host: str, target_port: int, rate: float | None) -> None:
        self.target = (target_host, target_port)
        self._rate = rate
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._next_free = time.monotonic()  # when the shared budget allows the next byte
        self.forwarded = 0
        """Bytes sent to clients so far."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="throttle-proxy", daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def rate(self) -> float | None:
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        with self._changed:
            self._rate = value
            self._next_free = time.monotonic()
            self._changed.notify_all()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._sockets.append(client)
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._sockets.append(upstream)
        threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()
        self._pipe(client, upstream, False)

    def _wait_for_budget(self, size: int) -> None:
        """Blocks until `size` more bytes fit the rate (a rate change wakes it at once)."""
        with self._changed:
            while not self._closed.is_set() and self._rate is not None:
                now = time.monotonic()
                if self._next_free <= now:
                    self._next_free = max(self._next_free, now - 0.1) + size / self._rate
                    return
                self._changed.wait(self._next_free - now)

    def _pipe(self, source: socket.socket, sink: socket.socket, throttled: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                size = _CHUNK
                if throttled and (rate := self._rate) is not None:
                    size = max(1024, min(_CHUNK, int(rate / 20)))
                data = source.recv(size)
                if not data:
                    break
                if throttled:
                    self._wait_for_budget(len(data))
                    self.forwarded += len(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        self._listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> ThrottlingProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
