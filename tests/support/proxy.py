"""Loopback TCP proxies for tests: bytes forwarded unchanged (TLS passes through), with one twist each.

- `DelayingProxy`: holds every connection made in its first `delay` seconds until then (an apiserver that answers,
  but late).
- `ThrottlingProxy`: answers (target to client) flow at most `rate` bytes a second, shared by every connection;
  `rate` may change while it runs (None: no limit). In front of the loopback registry it keeps a pull in flight
  until the test lets it finish."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Self

_CHUNK = 64 << 10


class LoopbackProxy:
    """Listens on 127.0.0.1 (`port`, `host`) and forwards each connection to `target`; subclasses hook in."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name=type(self).__name__, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _before_connect(self) -> None:
        """Runs in a connection's thread before it reaches the target."""

    def _chunk(self, answer: bool) -> int:
        """How much to read at once (`answer`: target to client)."""
        return _CHUNK

    def _forwarding(self, size: int, answer: bool) -> None:
        """Runs before `size` bytes are forwarded (may block)."""

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._sockets.append(client)
        self._before_connect()
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._sockets.append(upstream)
        threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()
        self._pipe(client, upstream, False)

    def _pipe(self, source: socket.socket, sink: socket.socket, answer: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(self._chunk(answer)):
                self._forwarding(len(data), answer)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DelayingProxy(LoopbackProxy):
    def __init__(self, target_host: str, target_port: int, delay: float) -> None:
        self.release_at = time.monotonic() + delay
        super().__init__(target_host, target_port)

    def _before_connect(self) -> None:
        time.sleep(max(0.0, self.release_at - time.monotonic()))


class ThrottlingProxy(LoopbackProxy):
    def __init__(self, target_host: str, target_port: int, rate: float | None) -> None:
        self._rate = rate
        self._changed = threading.Condition(threading.Lock())
        self._next_free = time.monotonic()  # when the shared budget allows the next byte
        self.forwarded = 0
        """Bytes sent to clients so far."""
        super().__init__(target_host, target_port)

    @property
    def rate(self) -> float | None:
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        with self._changed:
            self._rate = value
            self._next_free = time.monotonic()
            self._changed.notify_all()

    def _chunk(self, answer: bool) -> int:
        if answer and (rate := self._rate) is not None:
            return max(1024, min(_CHUNK, int(rate / 20)))
        return _CHUNK

    def _forwarding(self, size: int, answer: bool) -> None:
        """Blocks until `size` more answer bytes fit the rate (a rate change wakes it at once)."""
        if not answer:
            return
        with self._changed:
            while not self._closed.is_set() and self._rate is not None:
                now = time.monotonic()
                if self._next_free <= now:
                    self._next_free = max(self._next_free, now - 0.1) + size / self._rate
                    break
                self._changed.wait(self._next_free - now)
        self.forwarded += size

    def close(self) -> None:
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        super().close()
