"""Plain, immutable records returned by (and passed to) the runtime clients.

These are the only runtime types the rest of node-janitor sees: generated protobuf messages never
leave `node_janitor.runtime`. Times are timezone-aware UTC datetimes; sizes are bytes. Mapping fields
(labels, annotations) take no part in hashing, so records can go in sets and dict keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ContainerState = Literal["CREATED", "RUNNING", "EXITED", "UNKNOWN"]
SandboxState = Literal["READY", "NOTREADY"]
SnapshotKind = Literal["UNKNOWN", "VIEW", "ACTIVE", "COMMITTED"]


# ---- CRI (runtime.v1) ----


@dataclass(frozen=True, slots=True)
class CriVersion:
    version: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


@dataclass(frozen=True, slots=True)
class RuntimeCondition:
    type: str
    status: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class CriStatus:
    conditions: tuple[RuntimeCondition, ...]
    info: Mapping[str, str] = field(default_factory=dict, hash=False)  # only from a verbose status

    def condition(self, type_: str) -> RuntimeCondition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def runtime_ready(self) -> bool:
        cond = self.condition("RuntimeReady")
        return cond is not None and cond.status


@dataclass(frozen=True, slots=True)
class CriImage:
    """An image as CRI sees it: one entry per image ID, whatever its tags and digests."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class CriSandbox:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: SandboxState
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    runtime_handler: str = ""


@dataclass(frozen=True, slots=True)
class CriContainer:
    id: str
    pod_sandbox_id: str
    name: str
    attempt: int
    image: str  # the image as the container was created with (the kubelet passes the image ID)
    image_ref: str  # the image ID the runtime resolved it to
    state: ContainerState
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class CriContainerStatus:
    id: str
    name: str
    attempt: int
    state: ContainerState
    image: str
    image_ref: str
    created_at: datetime
    started_at: datetime | None  # None: not started yet
    finished_at: datetime | None  # None: not finished (containerd may put it just before started_at)
    exit_code: int
    reason: str
    message: str
    log_path: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    image_mounts: tuple[str, ...] = ()
    """The images the container mounts as volumes (KEP-4639 image volumes: each image mount's image, as the kubelet
    gave it (the image ID it pulled), and its digest when the runtime reports one); no container runs them."""


@dataclass(frozen=True, slots=True)
class FilesystemUsage:
    """Usage of one file system (or one writable layer) as the runtime measured it at `timestamp`."""

    mountpoint: str
    used_bytes: int | None
    inodes_used: int | None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class ImageFsInfo:
    image_filesystems: tuple[FilesystemUsage, ...]
    # Only set by runtimes that keep writable layers apart from images (CRI >= 1.29).
    container_filesystems: tuple[FilesystemUsage, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerStats:
    id: str
    name: str
    attempt: int
    writable_layer_bytes: int | None
    writable_layer_inodes: int | None
    writable_layer_mountpoint: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class PodSandboxSpec:
    """What `CriClient.run_pod_sandbox` needs (a small part of CRI's PodSandboxConfig).

    `host_network=True` runs the sandbox in the node's network namespace, which needs no CNI.
    """

    name: str
    namespace: str
    uid: str
    attempt: int = 0
    log_directory: str = ""
    hostname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    host_network: bool = True
    cgroup_parent: str = ""


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What `CriClient.create_container` needs (a small part of CRI's ContainerConfig).

    `log_path` is relative to the sandbox's `log_directory`.
    """

    name: str
    image: str
    command: Sequence[str] = ()
    args: Sequence[str] = ()
    log_path: str = ""
    working_dir: str = ""
    attempt: int = 0
    envs: Mapping[str, str] = field(default_factory=dict, hash=False)
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)


# ---- containerd ----


@dataclass(frozen=True, slots=True)
class ContainerdVersion:
    version: str
    revision: str


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A containerd image record: a name pointing at a manifest (or index) descriptor."""

    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(hash=False)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A committed blob in the content store."""

    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class IngestStatus:
    """A write to the content store that has not been committed (a partial download, say)."""

    ref: str
    offset: int
    total: int
    expected: str
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    parent: str
    kind: SnapshotKind
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    snapshotter: str = ""


@dataclass(frozen=True, slots=True)
class SnapshotUsage:
    """Disk used by a snapshot's own layer (not its parents')."""

    size: int
    inodes: int


@dataclass(frozen=True, slots=True)
class Mount:
    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class LeaseResource:
    """A resource held by a lease; `type` is `content`, `ingests` or `snapshots/<snapshotter>`."""

    id: str
    type: str


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """A containerd container record (CRI's, or one made by ctr/nerdctl).

    For containerd's GC it is a root of its snapshot (and of any `containerd.io/gc.ref.*` labels), not of
    its image: the image record keeps the image.
    """

    id: str
    image: str
    runtime_name: str
    snapshotter: str
    snapshot_key: str
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
