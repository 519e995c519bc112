"""Errors raised by the runtime clients.

Every error is a `RuntimeClientError` whose `str()` is one line saying what is wrong and where, meant
to be shown to a person as is (no traceback needed). gRPC status codes are mapped once, in
`node_janitor.runtime._rpc`; callers never see `grpc` exceptions.
"""

from __future__ import annotations


class RuntimeClientError(Exception):
    """Base of all runtime client errors.

    `address` is the socket path, `method` the RPC (`Service/Method`) when one was being called, and
    `code` the gRPC status code name (`"FAILED_PRECONDITION"`...) when the runtime answered with one.
    """

    def __init__(
        self,
        message: str,
        *,
        address: str = "",
        method: str = "",
        code: str = "",
    ) -> None:
        super().__init__(" ".join(message.split()))  # always one line
        self.address = address
        self.method = method
        self.code = code

    @property
    def message(self) -> str:
        return str(self)


class RuntimeUnavailableError(RuntimeClientError):
    """The runtime cannot be reached: no socket, nobody listening, or not a gRPC server."""


class RuntimeTimeoutError(RuntimeClientError):
    """The runtime did not answer within the call's deadline."""


class RuntimeVersionError(RuntimeClientError):
    """The server does not serve the API (or the method) we speak, e.g. no CRI `runtime.v1`."""


class NotContainerdError(RuntimeVersionError):
    """The socket's CRI runtime is not containerd (e.g. CRI-O): node-janitor reads containerd's own API (content
    store, snapshots, leases) on the same socket, so nothing would work; one line says which runtime it is."""


class NotFoundError(RuntimeClientError):
    """The object does not exist (any more). Removals take `missing_ok=True` to treat this as done."""


class AlreadyExistsError(RuntimeClientError):
    """The object to create exists already."""
