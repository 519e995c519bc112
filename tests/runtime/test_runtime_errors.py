"""Runtime clients fail with one-line messages that say what is wrong; no containerd needed.

The wrong sockets are real (a missing path, a regular file, a socket nobody listens on, an HTTP/1.x
server, a server that never speaks) and so are the gRPC servers (in-process, on a unix socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from node_janitor.runtime import (
    ContainerdClient,
    CriClient,
    NotFoundError,
    RuntimeClientError,
    RuntimeTimeoutError,
    RuntimeUnavailableError,
    RuntimeVersionError,
)
from node_janitor.runtime.gen.containerd.services.content.v1 import content_pb2
from node_janitor.runtime.gen.containerd.services.leases.v1 import leases_pb2
from node_janitor.runtime.gen.runtime.v1 import api_pb2


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text == text.strip()
    assert exc.__cause__ is None, "no chained grpc traceback"
    assert exc.__context__ is None or exc.__suppress_context__, "no chained grpc traceback"
    return text


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="nj-") as d:
        yield Path(d)


@contextlib.asynccontextmanager
async def grpc_server(path: Path, handlers: dict[str, dict[str, Any]]) -> AsyncIterator[list[Any]]:
    """A real grpc.aio server on `path`; `handlers` maps service -> method -> rpc method handler.

    Yields a list to which every call's invocation metadata is appended.
    """
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, methods) for service, methods in handlers.items()]
    )
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    try:
        yield []
    finally:
        await server.stop(0)


def _unary(fn: Callable[[Any, Any], Any], request_type: Any, response_type: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString
    )


@pytest.mark.parametrize("client_type", [CriClient, ContainerdClient])
async def test_missing_socket_path(sock_dir: Path, client_type: Any) -> None:
    path = sock_dir / "absent.sock"
    with pytest.raises(RuntimeUnavailableError) as err:
        async with client_type(str(path)):
            pass
    assert _one_line(err.value).endswith(f"socket {path} does not exist")
    assert err.value.address == str(path)


async def test_missing_socket_found_on_first_call_without_open(sock_dir: Path) -> None:
    path = sock_dir / "absent.sock"
    client = ContainerdClient(f"unix://{path}")
    with pytest.raises(RuntimeUnavailableError, match="does not exist"):
        await client.version()
    await client.close()


async def test_regular_file(sock_dir: Path) -> None:
    path = sock_dir / "containerd.sock"
    path.write_text("not a socket")
    with pytest.raises(RuntimeUnavailableError) as err:
        async with ContainerdClient(str(path)) as ctrd:
            await ctrd.version()
    assert _one_line(err.value) == f"containerd socket {path} is not a unix socket (it is a regular file)"


async def test_directory(sock_dir: Path) -> None:
    with pytest.raises(RuntimeUnavailableError, match=r"is not a unix socket \(it is a directory\)"):
        async with CriClient(str(sock_dir)) as cri:
            await cri.version()


async def test_socket_nobody_listens_on(sock_dir: Path) -> None:
    path = sock_dir / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # bound, never listening: what a crashed daemon leaves behind
    with pytest.raises(RuntimeUnavailableError) as err:
        async with CriClient(str(path)) as cri:
            await cri.version()
    assert _one_line(err.value) == f"nobody is listening on CRI runtime socket {path} (connection refused)"


async def test_socket_vanishing_after_open_is_diagnosed_at_the_call(sock_dir: Path) -> None:
    path = sock_dir / "gone.sock"
    async with grpc_server(path, {}):
        client = ContainerdClient(str(path))
        client.open()
    path.unlink(missing_ok=True)  # the server's socket goes with it
    with pytest.raises(RuntimeUnavailableError, match="does not exist"):
        await client.version()
    await client.close()


async def test_http1_server(sock_dir: Path) -> None:
    path = sock_dir / "http.sock"

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(http, str(path))
    try:
        with pytest.raises(RuntimeUnavailableError) as err:
            async with ContainerdClient(str(path)) as ctrd:
                await ctrd.list_images()
    finally:
        server.close()
    assert _one_line(err.value) == f"containerd socket {path} is not a gRPC server (it answered in HTTP/1.x)"


async def test_server_that_closes_at_once(sock_dir: Path) -> None:
    path = sock_dir / "closer.sock"

    async def closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_unix_server(closer, str(path))
    try:
        with pytest.raises(RuntimeUnavailableError) as err:
            async with CriClient(str(path)) as cri:
                await cri.version()
    finally:
        server.close()
    assert _one_line(err.value).startswith(f"CRI runtime socket {path} is not a gRPC server (connection failed:")


async def test_server_that_never_speaks(sock_dir: Path) -> None:
    path = sock_dir / "silent.sock"
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, say nothing

    server = await asyncio.start_unix_server(silent, str(path))
    try:
        with pytest.raises(RuntimeUnavailableError) as err:
            async with ContainerdClient(str(path), timeout=0.5) as ctrd:
                await ctrd.version()
    finally:
        for w in held:
            w.close()
        server.close()
    assert _one_line(err.value) == (
        f"containerd socket {path} accepted the connection but no gRPC handshake completed within 0.5s "
        "(not a gRPC server, or it is hung)"
    )


async def test_grpc_server_without_cri_is_a_version_error(sock_dir: Path) -> None:
    path = sock_dir / "nocri.sock"
    async with grpc_server(path, {}), CriClient(str(path)) as cri:
        with pytest.raises(RuntimeVersionError) as err:
            await cri.version()
        with pytest.raises(RuntimeVersionError):
            await cri.list_images()
    assert _one_line(err.value).startswith(
        f"CRI runtime at {path} does not serve CRI runtime.v1 (RuntimeService/Version:"
    )
    assert err.value.code == "UNIMPLEMENTED" and err.value.method == "runtime.v1.RuntimeService/Version"


async def test_slow_grpc_server_is_a_timeout(sock_dir: Path) -> None:
    path = sock_dir / "slow.sock"

    async def slow(request: Any, context: Any) -> Any:
        await asyncio.sleep(5)
        return api_pb2.VersionResponse()

    handlers = {"runtime.v1.RuntimeService": {"Version": _unary(slow, api_pb2.VersionRequest, api_pb2.VersionResponse)}}
    async with grpc_server(path, handlers), CriClient(str(path), timeout=0.3) as cri:
        with pytest.raises(RuntimeTimeoutError) as err:
            await cri.version()
    assert _one_line(err.value) == f"CRI runtime at {path} did not answer RuntimeService/Version within 0.3s"


async def test_not_found_and_missing_ok(sock_dir: Path) -> None:
    path = sock_dir / "ctrd.sock"

    async def delete(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"lease {request.id!r}: not found")

    async def info(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "something\nspread over lines")

    handlers = {
        "containerd.services.leases.v1.Leases": {
            "Delete": _unary(delete, leases_pb2.DeleteRequest, leases_pb2.CreateResponse)
        },
        "containerd.services.content.v1.Content": {
            "Info": _unary(info, content_pb2.InfoRequest, content_pb2.InfoResponse)
        },
    }
    async with grpc_server(path, handlers), ContainerdClient(str(path)) as ctrd:
        with pytest.raises(NotFoundError) as err:
            await ctrd.delete_lease("gone")
        assert _one_line(err.value) == f"containerd at {path}: Leases/Delete: lease 'gone': not found"
        await ctrd.delete_lease("gone", missing_ok=True)
        with pytest.raises(RuntimeClientError) as other:
            await ctrd.content_info("sha256:abc")
        assert type(other.value) is RuntimeClientError and other.value.code == "FAILED_PRECONDITION"
        assert _one_line(other.value).endswith("Content/Info failed: FAILED_PRECONDITION: something spread over lines")


async def test_namespace_and_lease_headers(sock_dir: Path) -> None:
    path = sock_dir / "ctrd.sock"
    seen: list[dict[str, str]] = []

    async def create(request: Any, context: Any) -> Any:
        seen.append(dict(context.invocation_metadata()))
        return leases_pb2.CreateResponse(lease=leases_pb2.Lease(id=request.id))

    async def list_(request: Any, context: Any) -> Any:
        seen.append(dict(context.invocation_metadata()))
        return leases_pb2.ListResponse()

    async def delete(request: Any, context: Any) -> Any:
        return leases_pb2.ListResponse()  # an empty message: the same bytes as google.protobuf.Empty

    handlers = {
        "containerd.services.leases.v1.Leases": {
            "Create": _unary(create, leases_pb2.CreateRequest, leases_pb2.CreateResponse),
            "List": _unary(list_, leases_pb2.ListRequest, leases_pb2.ListResponse),
            "Delete": _unary(delete, leases_pb2.DeleteRequest, leases_pb2.ListResponse),
        }
    }
    async with grpc_server(path, handlers), ContainerdClient(str(path)) as ctrd:
        await ctrd.list_leases()
        await ctrd.with_namespace("other").list_leases()
        await ctrd.with_lease("my-lease").list_leases()
        async with ctrd.with_namespace("ns2").temporary_lease() as leased:
            assert leased.lease and leased.namespace == "ns2"
            await leased.list_leases()
        await ctrd.list_leases()  # views never close the shared channel

    namespaces = [m.get("containerd-namespace") for m in seen]
    leases = [m.get("containerd-lease") for m in seen]
    assert namespaces == ["k8s.io", "other", "k8s.io", "ns2", "ns2", "k8s.io"]
    assert leases[:3] == [None, None, "my-lease"]
    assert leases[3] is None and leases[4] is not None and leases[4].startswith("node-janitor-")
    assert leases[5] is None


def test_unix_address_forms() -> None:
    assert CriClient("unix:///run/x.sock").address == "/run/x.sock"
    assert CriClient("unix:/run/x.sock").address == "/run/x.sock"
    assert ContainerdClient("/run/x.sock").address == "/run/x.sock"


def test_no_generated_types_in_public_signatures() -> None:
    import inspect

    import node_janitor.runtime as runtime

    for name in runtime.__all__:
        obj = getattr(runtime, name)
        members = inspect.getmembers(obj, inspect.isfunction) if inspect.isclass(obj) else []
        for member_name, fn in members:
            if member_name.startswith("_"):
                continue
            text = str(inspect.signature(fn))
            assert "_pb2" not in text, f"{name}.{member_name} exposes generated types: {text}"
