"""Clients of the node's container runtime: CRI `runtime.v1` and containerd's own gRPC API.

Our own subset of the upstream `.proto` files lives in `protos/`, the stubs generated from them by
`hack/gen-protos.py` in `gen/`; only this package sees generated types. Everything public is re-exported
here: `CriClient`, `ContainerdClient`, `open_runtime` (both clients on one socket), `discover_runtime` (which
runtime it is, its root, its configuration and the images that pins), the records they return and the errors
they raise.
"""

from node_janitor.defaults import DEFAULT_CONTAINERD_ADDRESS, DEFAULT_NAMESPACE, DEFAULT_SNAPSHOTTER
from node_janitor.runtime.containerd import ContainerdClient
from node_janitor.runtime.cri import DEFAULT_CRI_ADDRESS, CriClient
from node_janitor.runtime.discovery import RuntimeDiscovery, discover_runtime
from node_janitor.runtime.errors import (
    AlreadyExistsError,
    NotContainerdError,
    NotFoundError,
    RuntimeClientError,
    RuntimeTimeoutError,
    RuntimeUnavailableError,
    RuntimeVersionError,
)
from node_janitor.runtime.open import open_runtime, require_containerd
from node_janitor.runtime.records import (
    BlobInfo,
    ContainerdVersion,
    ContainerRecord,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    CriContainer,
    CriContainerStatus,
    CriImage,
    CriSandbox,
    CriStatus,
    CriVersion,
    Descriptor,
    FilesystemUsage,
    ImageFsInfo,
    ImageRecord,
    IngestStatus,
    Lease,
    LeaseResource,
    Mount,
    Namespace,
    PodSandboxSpec,
    RuntimeCondition,
    SandboxState,
    SnapshotInfo,
    SnapshotKind,
    SnapshotUsage,
)

__all__ = [
    "DEFAULT_CONTAINERD_ADDRESS",
    "DEFAULT_CRI_ADDRESS",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SNAPSHOTTER",
    "AlreadyExistsError",
    "BlobInfo",
    "ContainerRecord",
    "ContainerSpec",
    "ContainerState",
    "ContainerStats",
    "ContainerdClient",
    "ContainerdVersion",
    "CriClient",
    "CriContainer",
    "CriContainerStatus",
    "CriImage",
    "CriSandbox",
    "CriStatus",
    "CriVersion",
    "Descriptor",
    "FilesystemUsage",
    "ImageFsInfo",
    "ImageRecord",
    "IngestStatus",
    "Lease",
    "LeaseResource",
    "Mount",
    "Namespace",
    "NotContainerdError",
    "NotFoundError",
    "PodSandboxSpec",
    "RuntimeClientError",
    "RuntimeCondition",
    "RuntimeDiscovery",
    "RuntimeTimeoutError",
    "RuntimeUnavailableError",
    "RuntimeVersionError",
    "SandboxState",
    "SnapshotInfo",
    "SnapshotKind",
    "SnapshotUsage",
    "discover_runtime",
    "open_runtime",
    "require_containerd",
]
