"""The agent's and the operator's HTTP endpoint (`node_janitor.http_endpoint`) on a real socket: routes, and its
bounds (connections, head size, head time). The flood from another process against the real agent is in
tests/agent/test_agent_http_flood.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from node_janitor.http_endpoint import TEXT, Endpoint, EndpointLimits


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    def boom() -> tuple[int, bytes, str]:
        raise RuntimeError("a bug")

    routes = {"/healthz": lambda: (200, b"ok\n", TEXT), "/boom": boom}
    limits = EndpointLimits(max_connections=8, max_head_bytes=1024, head_timeout=0.5, lifetime=2.0)
    server = await Endpoint.start(routes, "127.0.0.1", 0, limits)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_routes_methods_and_malformed_requests(endpoint: Endpoint) -> None:
    ok = await _exchange(endpoint.port, b"GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nok\n") and b"Content-Length: 3" in ok
    head = await _exchange(endpoint.port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert (await _exchange(endpoint.port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
    assert (await _exchange(endpoint.port, b"POST /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
    assert (await _exchange(endpoint.port, b"hello\n\n")).startswith(b"HTTP/1.1 400 ")
    assert (await _exchange(endpoint.port, b"GET /boom HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 500 ")
    assert (await _exchange(endpoint.port, b"GET /healthz HTTP/1.0\n\n")).startswith(b"HTTP/1.1 200 ")


async def test_a_head_over_the_limit_is_answered_431_and_closed(endpoint: Endpoint) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Long: " + b"a" * 600)
    await writer.drain()
    writer.write(b"a" * 600)  # never a blank line: only its size ends it
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 431 ")
    writer.close()


async def test_a_head_not_complete_in_time_is_closed(endpoint: Endpoint) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    closed = False
    for _ in range(30):  # trickling a header line every 0.1 s does not keep it open past head_timeout
        writer.write(b"X-A: b\r\n")
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.1) == b""
        except TimeoutError:
            continue
        break
    assert closed
    assert 0.4 < time.monotonic() - started < 2.5  # head_timeout is 0.5 s
    writer.close()


async def test_connections_beyond_the_cap_push_out_the_oldest_idle_ones_and_a_probe_is_still_answered(
    endpoint: Endpoint,
) -> None:
    idle = []
    for _ in range(40):
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        idle.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in idle))
    answer = await _exchange(endpoint.port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert endpoint.connections <= 8 and endpoint.evicted >= 40 - 8 + 1
    closed = 0
    for reader, writer in idle[:32]:  # the 32 oldest were pushed out (the newest 8 stay until head_timeout)
        closed += await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert closed == 32
    for _, writer in idle[32:]:
        writer.close()
