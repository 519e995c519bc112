"""The one place that dials a runtime socket, calls RPCs and turns gRPC failures into our errors.

`RpcChannel` is typed against the generated `.pyi` message stubs; `grpc` itself is untyped, so the
`cast`s below are the only places where typing is taken on trust (the response deserializer is the
response type's own `FromString`).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar, cast

import grpc

from node_janitor.runtime.errors import (
    AlreadyExistsError,
    NotFoundError,
    RuntimeClientError,
    RuntimeTimeoutError,
    RuntimeUnavailableError,
    RuntimeVersionError,
)

DEFAULT_TIMEOUT = 30.0
# A gRPC server completes the HTTP/2 handshake in milliseconds, however busy it is; a socket that accepts and
# never does (containerd's .ttrpc, a hung process) is refused after this long instead of a call's full deadline.
HANDSHAKE_TIMEOUT = 2.0
_PROBE = "/node_janitor.Probe/Handshake"  # served by no one: UNIMPLEMENTED proves a gRPC server answered
# ListImages on a node with thousands of images, or a big snapshot list, exceeds gRPC's 4 MiB default.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Metadata = Sequence[tuple[str, str]]
# A generated response message class. Its `FromString` (from protobuf's untyped base class) parses the
# wire bytes; typing it as `type[ResponseT]` keeps the .pyi field types of the response.
ResponseT = TypeVar("ResponseT")


class Message(Protocol):
    """What we need of a request message (generated protobuf classes have it)."""

    def SerializeToString(self) -> bytes: ...


class _Empty:
    """google.protobuf.Empty as a request: it encodes to zero bytes."""

    def SerializeToString(self) -> bytes:
        return b""


class NoResponse:
    """google.protobuf.Empty (or any response we do not read) as a response."""

    @classmethod
    def FromString(cls, data: bytes) -> NoResponse:
        return cls()


EMPTY: Message = _Empty()


def _parser(response_type: type[ResponseT]) -> Any:
    return cast(Any, response_type).FromString


def socket_path(address: str) -> str:
    """`/run/containerd/containerd.sock`, `unix:///run/...` or `unix:/run/...` -> the path."""
    for prefix in ("unix://", "unix:"):
        if address.startswith(prefix):
            return address[len(prefix) :]
    return address


def check_socket(path: str, peer: str) -> None:
    """Fail with a precise one-line message unless `path` is a unix socket someone listens on."""
    problem = diagnose_socket(path, peer)
    if problem:
        raise RuntimeUnavailableError(problem, address=path)


def diagnose_socket(path: str, peer: str) -> str | None:
    """What is wrong with `path` as a `peer` socket, or None if a connection succeeds."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{peer} socket {path} does not exist"
    except PermissionError:
        return f"{peer} socket {path} cannot be examined: permission denied"
    except OSError as exc:
        return f"{peer} socket {path} cannot be examined: {exc.strerror}"
    if not stat.S_ISSOCK(st.st_mode):
        return f"{peer} socket {path} is not a unix socket (it is {_file_kind(st.st_mode)})"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                return f"nobody is listening on {peer} socket {path} (connection refused)"
            if exc.errno in (errno.EACCES, errno.EPERM):
                return f"{peer} socket {path}: permission denied"
            return f"{peer} socket {path}: cannot connect: {exc.strerror or exc}"
    return None


def _file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a socket"


class RpcChannel:
    """A grpc.aio channel to one unix socket, with typed calls and error mapping.

    `peer` names the server in messages ("containerd", "CRI runtime"); `api` is what a server that
    answers UNIMPLEMENTED is said not to serve (e.g. "CRI runtime.v1").
    """

    def __init__(
        self,
        address: str,
        *,
        peer: str,
        api: str,
        timeout: float = DEFAULT_TIMEOUT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.path = socket_path(address)
        self.peer = peer
        self.api = api
        self.timeout = timeout
        self._max_message_bytes = max_message_bytes
        self._channel: Any = None

    # ---- life cycle ----

    def open(self) -> None:
        """Check the socket (precise message if it is wrong), then create the channel."""
        if self._channel is not None:
            return
        check_socket(self.path, self.peer)
        self._create_channel()

    async def connect(self, handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """`open()` without blocking the event loop (the socket is probed in a thread), then wait for the gRPC
        handshake: RuntimeUnavailableError within `handshake_timeout` (or the call timeout, if shorter) when the
        socket accepts connections but is no gRPC server."""
        if self._channel is None:
            await asyncio.to_thread(check_socket, self.path, self.peer)
            if self._channel is None:
                self._create_channel()
        seconds = min(handshake_timeout, self.timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        channel = self._channel
        while True:
            state = channel.get_state(try_to_connect=True)
            if state == grpc.ChannelConnectivity.READY:
                return
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                # The connection failed: a call fails at once, with why (HTTP/1.x, closed...), mapped as usual.
                try:
                    await self.unary(_PROBE, EMPTY, NoResponse, deadline=max(0.1, deadline - loop.time()))
                except RuntimeUnavailableError:
                    raise
                except RuntimeClientError:
                    pass  # it answered (UNIMPLEMENTED): a gRPC server
                return
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                raise RuntimeUnavailableError(
                    f"{self.peer} socket {self.path} accepted the connection but no gRPC handshake completed "
                    f"within {seconds:g}s (not a gRPC server, or it is hung)",
                    address=self.path,
                ) from None

    def _create_channel(self) -> None:
        self._channel = grpc.aio.insecure_channel(
            f"unix://{self.path}",
            options=[
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.max_send_message_length", self._max_message_bytes),
            ],
        )

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    @property
    def closed(self) -> bool:
        return self._channel is None

    def _require(self) -> Any:
        if self._channel is None:
            self.open()
        return self._channel

    # ---- calls ----

    async def unary(
        self,
        method: str,
        request: Message,
        response_type: type[ResponseT],
        *,
        metadata: Metadata = (),
        deadline: float | None = None,
    ) -> ResponseT:
        """Call `/package.Service/Method` and return its response."""
        callable_ = self._require().unary_unary(
            method,
            request_serializer=_serialize,
            response_deserializer=_parser(response_type),
        )
        seconds = self.timeout if deadline is None else deadline
        try:
            response = await callable_(request, timeout=seconds, metadata=tuple(metadata))
        except grpc.aio.AioRpcError as exc:
            raise self.map_error(exc, method, seconds) from None
        return cast(ResponseT, response)

    async def server_stream(
        self,
        method: str,
        request: Message,
        response_type: type[ResponseT],
        *,
        metadata: Metadata = (),
        deadline: float | None = None,
    ) -> AsyncIterator[ResponseT]:
        """Call a server-streaming method and yield its responses."""
        callable_ = self._require().unary_stream(
            method,
            request_serializer=_serialize,
            response_deserializer=_parser(response_type),
        )
        seconds = self.timeout if deadline is None else deadline
        call = callable_(request, timeout=seconds, metadata=tuple(metadata))
        try:
            async for response in call:
                yield cast(ResponseT, response)
        except grpc.aio.AioRpcError as exc:
            raise self.map_error(exc, method, seconds) from None
        finally:
            call.cancel()

    def stream_stream(
        self,
        method: str,
        response_type: type[ResponseT],
        *,
        metadata: Metadata = (),
        deadline: float | None = None,
    ) -> BidiCall[ResponseT]:
        """Open a bidirectional stream; use `write`, `read` and `done_writing` on the result."""
        callable_ = self._require().stream_stream(
            method,
            request_serializer=_serialize,
            response_deserializer=_parser(response_type),
        )
        seconds = self.timeout if deadline is None else deadline
        return BidiCall(self, method, seconds, callable_(timeout=seconds, metadata=tuple(metadata)))

    # ---- errors ----

    def map_error(self, exc: Any, method: str, deadline: float | None) -> RuntimeClientError:
        """Turn a grpc.aio.AioRpcError into one of our errors, with a one-line message."""
        return self.map_status(exc.code(), exc.details(), method, deadline)

    def map_status(self, code: Any, details: str | None, method: str, deadline: float | None) -> RuntimeClientError:
        """Turn a gRPC status (code, details) into one of our errors, with a one-line message."""
        details = " ".join(str(details or "").split())
        name = method.rsplit(".", 1)[-1]  # "Images/List"
        where = dict(address=self.path, method=method.lstrip("/"), code=code.name)
        if code == grpc.StatusCode.UNAVAILABLE:
            return RuntimeUnavailableError(self._unavailable_message(details), **where)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            within = f"within {deadline:g}s" if deadline is not None else "in time"
            if not self._connected():
                # Connected at the socket level, but HTTP/2 never started: not (or no longer) a gRPC server.
                return RuntimeUnavailableError(
                    f"{self.peer} socket {self.path} accepted the connection but no gRPC handshake completed "
                    f"{within} (not a gRPC server, or it is hung)",
                    **where,
                )
            return RuntimeTimeoutError(f"{self.peer} at {self.path} did not answer {name} {within}", **where)
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return RuntimeVersionError(
                f"{self.peer} at {self.path} does not serve {self.api} ({name}: {details or 'unimplemented'})",
                **where,
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFoundError(f"{self.peer} at {self.path}: {name}: {details or 'not found'}", **where)
        if code == grpc.StatusCode.ALREADY_EXISTS:
            return AlreadyExistsError(f"{self.peer} at {self.path}: {name}: {details or 'already exists'}", **where)
        return RuntimeClientError(f"{self.peer} at {self.path}: {name} failed: {code.name}: {details}", **where)

    def _unavailable_message(self, details: str) -> str:
        problem = diagnose_socket(self.path, self.peer)
        if problem:
            return problem
        if "http1.x server" in details or "Failed parsing HTTP/2" in details:
            return f"{self.peer} socket {self.path} is not a gRPC server (it answered in HTTP/1.x)"
        if "failed to connect to all addresses" in details:
            reason = details.rsplit(": ", 1)[-1]
            return f"{self.peer} socket {self.path} is not a gRPC server (connection failed: {reason})"
        return f"{self.peer} at {self.path} is unavailable: {details}"

    def _connected(self) -> bool:
        if self._channel is None:
            return True  # closed meanwhile: nothing to tell
        return bool(self._channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY)


class SocketClient:
    """What both clients share: one RpcChannel on a unix socket, `async with`, and "already gone is fine".

    A client that shares another's channel (a view) sets `_owns_channel = False`: closing it is a no-op.
    """

    _rpc: RpcChannel
    _owns_channel: bool = True

    @property
    def address(self) -> str:
        """The socket path."""
        return self._rpc.path

    async def __aenter__(self) -> Self:
        try:
            await self.connect()
        except BaseException:
            await self.close()  # __aexit__ does not run when __aenter__ fails
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def open(self) -> None:
        """Check the socket and create the channel (calls do this on first use too)."""
        self._rpc.open()

    async def connect(self, handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Check the socket (in a thread), create the channel and wait for the gRPC handshake (see RpcChannel)."""
        await self._rpc.connect(handshake_timeout)

    async def close(self) -> None:
        if self._owns_channel:
            await self._rpc.close()

    @staticmethod
    async def _missing_ok(call: Awaitable[object], missing_ok: bool) -> None:
        """Await a removal; NotFound is success when `missing_ok` (something already gone is done)."""
        try:
            await call
        except NotFoundError:
            if not missing_ok:
                raise


class BidiCall(Generic[ResponseT]):
    """A bidirectional stream with errors mapped like unary calls."""

    def __init__(self, rpc: RpcChannel, method: str, deadline: float | None, call: Any) -> None:
        self._rpc = rpc
        self._method = method
        self._deadline = deadline
        self._call = call

    async def write(self, request: Message) -> None:
        try:
            await self._call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise self._rpc.map_error(exc, self._method, self._deadline) from None
        except grpc.aio.UsageError:  # the server ended the stream: its status tells why
            await self._raise_status()
            raise self._ended_early() from None

    async def read(self) -> ResponseT:
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise self._rpc.map_error(exc, self._method, self._deadline) from None
        if response is grpc.aio.EOF:
            await self._raise_status()
            raise self._ended_early()
        return cast(ResponseT, response)

    def _ended_early(self) -> RuntimeClientError:
        method = self._method.lstrip("/")
        return RuntimeClientError(
            f"{self._rpc.peer} at {self._rpc.path}: {method} ended the stream early",
            address=self._rpc.path,
            method=method,
        )

    async def done_writing(self) -> None:
        await self._call.done_writing()

    async def finish(self) -> None:
        """Half-close and wait until the server ended the stream; raise if it ended with an error.

        gRPC delivers the status only after every message was read, so the rest is read and dropped.
        """
        await self._call.done_writing()
        try:
            while await self._call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as exc:
            raise self._rpc.map_error(exc, self._method, self._deadline) from None
        await self._raise_status()

    def cancel(self) -> None:
        self._call.cancel()

    async def _raise_status(self) -> None:
        code = await self._call.code()
        if code != grpc.StatusCode.OK:
            details = await self._call.details()
            raise self._rpc.map_status(code, details, self._method, self._deadline) from None


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
