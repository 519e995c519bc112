"""Clients of the node's container runtime: CRI `runtime.v1` and containerd's own gRPC API.

Our own subset of the upstream `.proto` files lives in `protos/`, the stubs generated from them by
`hack/gen-protos.py` in `gen/`; only this package sees generated types. Everything public is re-exported
here: `CriClient`, `ContainerdClient`, the records they return and the errors they raise.
"""

from node_janitor.runtime.cri import DEFAULT_CRI_ADDRESS, CriClient
from node_janitor.runtime.errors import (
    AlreadyExistsError,
    NotFoundError,
    RuntimeClientError,
    RuntimeTimeoutError,
    RuntimeUnavailableError,
    RuntimeVersionError,
)
from node_janitor.runtime.records import (
    ContainerSpec,
    ContainerState,
    ContainerStats,
    CriContainer,
    CriContainerStatus,
    CriImage,
    CriSandbox,
    CriStatus,
    CriVersion,
    FilesystemUsage,
    ImageFsInfo,
    PodSandboxSpec,
    RuntimeCondition,
    SandboxState,
)

__all__ = [
    "DEFAULT_CRI_ADDRESS",
    "AlreadyExistsError",
    "ContainerSpec",
    "ContainerState",
    "ContainerStats",
    "CriClient",
    "CriContainer",
    "CriContainerStatus",
    "CriImage",
    "CriSandbox",
    "CriStatus",
    "CriVersion",
    "FilesystemUsage",
    "ImageFsInfo",
    "NotFoundError",
    "PodSandboxSpec",
    "RuntimeClientError",
    "RuntimeCondition",
    "RuntimeTimeoutError",
    "RuntimeUnavailableError",
    "RuntimeVersionError",
    "SandboxState",
]
