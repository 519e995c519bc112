"""The small HTTP endpoint of the agent and of the operator (/metrics, /healthz, /readyz): one request per
connection, GET and HEAD only, and bounded whatever the clients do, so that a flood of slow clients never stops
the kubelet's probes from being answered nor grows the process:

- at most `max_connections` open at once: a new connection evicts the oldest one still sending its request head
  (an answered one is only flushing its response); if none can be evicted, the new one is closed at once;
- a request head larger than `max_head_bytes` is answered 431 and closed;
- a request head must be complete within `head_timeout` seconds of the connection, and a connection lives at most
  `lifetime` seconds (its response included): then it is aborted.

A probe sends its whole request at once and is answered from its first read (the routes are synchronous and quick).
Connections are accepted at most ACCEPT_BATCH per turn of the event loop, and the cap is four batches, so a new
connection is read before three more batches could push it out: idle or trickling connections, however many, only
push out each other. Memory is at most about
`max_connections` x (`max_head_bytes` + a transport) plus the responses being flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge

import node_janitor

log = logging.getLogger(__name__)

Response = tuple[int, bytes, str]
"""HTTP status, body, content type."""
Route = Callable[[], Response]

TEXT = "text/plain; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


ACCEPT_BATCH = 64
"""asyncio's server accepts up to its listen backlog per turn of the loop."""


@dataclass(frozen=True)
class EndpointLimits:
    max_connections: int = 4 * ACCEPT_BATCH
    max_head_bytes: int = 8192
    head_timeout: float = 5.0
    lifetime: float = 15.0


class Endpoint:
    """The listening endpoint; `await Endpoint.start(...)`, then `close()` and `await wait_closed()`."""

    def __init__(self, routes: Mapping[str, Route], limits: EndpointLimits) -> None:
        self.routes, self.limits = dict(routes), limits
        self._open: dict[_Connection, None] = {}  # insertion order: oldest first
        self._server: asyncio.Server | None = None
        self.evicted = 0
        self.refused = 0

    @classmethod
    async def start(
        cls, routes: Mapping[str, Route], host: str, port: int, limits: EndpointLimits | None = None
    ) -> Endpoint:
        endpoint = cls(routes, limits or EndpointLimits())
        loop = asyncio.get_running_loop()
        endpoint._server = await loop.create_server(
            lambda: _Connection(endpoint), host, port, reuse_address=True, backlog=ACCEPT_BATCH
        )
        return endpoint

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._open)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._open):
            connection.abort()

    async def wait_closed(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                await self._server.wait_closed()

    def _admit(self, connection: _Connection) -> bool:
        if len(self._open) >= self.limits.max_connections:
            oldest = next((c for c in self._open if not c.answered), None)
            if oldest is None:
                self.refused += 1
                return False
            self.evicted += 1
            oldest.abort()
        self._open[connection] = None
        return True

    def _forget(self, connection: _Connection) -> None:
        self._open.pop(connection, None)

    def respond(self, method: str, path: str) -> Response:
        if method not in ("GET", "HEAD"):
            return 405, b"GET only\n", TEXT
        route = self.routes.get(path)
        if route is None:
            return 404, b"not found\n", TEXT
        try:
            return route()
        except Exception:  # a bug in a route: a 500, never a dead endpoint
            log.exception("endpoint route failed path=%s", path)
            return 500, b"internal error\n", TEXT


class _Connection(asyncio.Protocol):
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.answered = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.endpoint._admit(self):
            transport.abort()
            return
        self.timer = asyncio.get_running_loop().call_later(self.endpoint.limits.head_timeout, self.abort)

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        limit = self.endpoint.limits.max_head_bytes
        self.head += data
        del self.head[limit + 4 :]  # enough to see whether the head ends within the limit
        end = _head_end(self.head)
        if end < 0 and len(self.head) <= limit:
            return
        if end < 0 or end > limit:
            self._answer("GET", (431, b"request head too large\n", TEXT))
            return
        request_line = bytes(self.head[: self.head.find(b"\n")]).decode("latin-1").split()
        if len(request_line) != 3 or not request_line[2].startswith("HTTP/"):
            self._answer("GET", (400, b"bad request\n", TEXT))
            return
        method, target = request_line[0], request_line[1].split("?", 1)[0]
        self._answer(method, self.endpoint.respond(method, target))

    def _answer(self, method: str, response: Response) -> None:
        assert self.transport is not None
        status, body, content_type = response
        self.answered = True
        self.head = bytearray()
        self.transport.pause_reading()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        self.transport.write(head if method == "HEAD" else head + body)
        self.transport.close()  # once flushed
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.endpoint.limits.lifetime, self.abort)

    def abort(self) -> None:
        self.endpoint._forget(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._forget(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _head_end(head: bytearray) -> int:
    """Where the request head ends (its blank line), or -1."""
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else -1


def metrics_registry(component: str) -> CollectorRegistry:
    """A component's own registry, with `node_janitor_build_info{component,version,python_version} 1` in it.
    Counters of this process expose no `_created` series (prometheus_client's switch is process-wide)."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    Gauge(
        "node_janitor_build_info",
        "Always 1; its labels say the version of node-janitor and of Python a component runs.",
        ["component", "version", "python_version"],
        registry=registry,
    ).labels(component, node_janitor.__version__, platform.python_version()).set(1)
    return registry


async def serve_health(
    render_metrics: Callable[[], bytes], ready: Callable[[], tuple[bool, str]], host: str, port: int
) -> Endpoint:
    """The agent's and the operator's endpoint: /metrics (`render_metrics()`), /healthz (the process serves) and
    /readyz (`ready()`: whether, and a word why)."""

    def readyz() -> Response:
        is_ready, why = ready()
        return (200 if is_ready else 503), f"{why}\n".encode(), TEXT

    routes: dict[str, Route] = {
        "/metrics": lambda: (200, render_metrics(), CONTENT_TYPE_LATEST),
        "/healthz": lambda: (200, b"ok\n", TEXT),
        "/readyz": readyz,
    }
    return await Endpoint.start(routes, host, port)
