"""`ContainerdClient`: an async client of containerd's own gRPC API (images, content, snapshots, leases...).

    async with ContainerdClient("/run/containerd/containerd.sock", namespace="k8s.io") as ctrd:
        blobs = await ctrd.list_content()

Every call is scoped to one containerd namespace (the `containerd-namespace` header, set in
`_metadata`, the only place); `with_namespace()` gives a view on another one over the same channel.
Calls made through `with_lease(id)` (or inside `async with ctrd.temporary_lease() as leased:`) carry
the `containerd-lease` header, so what they create is held by that lease until it is deleted.

Filters are containerd's filter syntax, e.g. `name~="^docker.io/"`, `labels."containerd.io/gc.root"`;
several filters are ORed. Only `node_janitor.runtime` records go in and out.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from node_janitor.defaults import DEFAULT_CONTAINERD_ADDRESS, DEFAULT_NAMESPACE, DEFAULT_SNAPSHOTTER
from node_janitor.runtime._convert import EPOCH, from_timestamp
from node_janitor.runtime._rpc import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TIMEOUT,
    EMPTY,
    Message,
    Metadata,
    NoResponse,
    RpcChannel,
    SocketClient,
)
from node_janitor.runtime.errors import AlreadyExistsError
from node_janitor.runtime.gen.containerd.services.containers.v1 import containers_pb2
from node_janitor.runtime.gen.containerd.services.content.v1 import content_pb2
from node_janitor.runtime.gen.containerd.services.images.v1 import images_pb2
from node_janitor.runtime.gen.containerd.services.leases.v1 import leases_pb2
from node_janitor.runtime.gen.containerd.services.namespaces.v1 import namespace_pb2
from node_janitor.runtime.gen.containerd.services.snapshots.v1 import snapshots_pb2
from node_janitor.runtime.gen.containerd.services.version.v1 import version_pb2
from node_janitor.runtime.gen.containerd.types import descriptor_pb2, mount_pb2
from node_janitor.runtime.records import (
    BlobInfo,
    ContainerdVersion,
    ContainerRecord,
    Descriptor,
    ImageRecord,
    IngestStatus,
    Lease,
    LeaseResource,
    Mount,
    Namespace,
    SnapshotInfo,
    SnapshotKind,
    SnapshotUsage,
)

DEFAULT_RUNTIME = "io.containerd.runc.v2"

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
# A lease with this label is removed by containerd's GC once the time (RFC 3339) has passed.
LEASE_EXPIRE_LABEL = "containerd.io/gc.expire"
# containerd's type URL for an OCI runtime spec stored in a container record.
OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

WRITE_CHUNK = 1 << 20  # containerd's gRPC server takes 16 MiB messages by default; stay well below


def _service(file_descriptor: Any, name: str) -> str:
    """`/containerd.services.images.v1.Images/`: the prefix of the service's method paths."""
    return "/" + str(file_descriptor.services_by_name[name].full_name) + "/"


_VERSION = _service(version_pb2.DESCRIPTOR, "Version")
_NAMESPACES = _service(namespace_pb2.DESCRIPTOR, "Namespaces")
_IMAGES = _service(images_pb2.DESCRIPTOR, "Images")
_CONTENT = _service(content_pb2.DESCRIPTOR, "Content")
_SNAPSHOTS = _service(snapshots_pb2.DESCRIPTOR, "Snapshots")
_LEASES = _service(leases_pb2.DESCRIPTOR, "Leases")
_CONTAINERS = _service(containers_pb2.DESCRIPTOR, "Containers")

_SNAPSHOT_KINDS: dict[int, SnapshotKind] = {
    snapshots_pb2.UNKNOWN: "UNKNOWN",
    snapshots_pb2.VIEW: "VIEW",
    snapshots_pb2.ACTIVE: "ACTIVE",
    snapshots_pb2.COMMITTED: "COMMITTED",
}

R = TypeVar("R")
_GO_ZERO_TIME = -62135596800  # 0001-01-01T00:00:00Z in seconds since the epoch


class ContainerdClient(SocketClient):
    """Async containerd client over a unix socket, scoped to one namespace (and optionally one lease)."""

    def __init__(
        self,
        address: str = DEFAULT_CONTAINERD_ADDRESS,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = DEFAULT_TIMEOUT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        lease: str | None = None,
    ) -> None:
        self._rpc = RpcChannel(
            address,
            peer="containerd",
            api="this containerd API",
            timeout=timeout,
            max_message_bytes=max_message_bytes,
        )
        self._owns_channel = True
        self.namespace = namespace
        self.lease = lease

    def _view(self, *, namespace: str | None = None, lease: str | None = None) -> ContainerdClient:
        view = ContainerdClient.__new__(ContainerdClient)
        view._rpc = self._rpc
        view._owns_channel = False
        view.namespace = self.namespace if namespace is None else namespace
        view.lease = lease
        return view

    def with_namespace(self, namespace: str) -> ContainerdClient:
        """A client for another namespace sharing this one's channel (closing it is a no-op)."""
        return self._view(namespace=namespace, lease=self.lease)

    def with_lease(self, lease_id: str | None) -> ContainerdClient:
        """A client whose calls carry `lease_id` (None: no lease), sharing this one's channel."""
        return self._view(lease=lease_id)

    # ---- plumbing ----

    def _metadata(self) -> Metadata:
        """The one place the namespace (and lease) headers are set."""
        headers = [(NAMESPACE_HEADER, self.namespace)]
        if self.lease:
            headers.append((LEASE_HEADER, self.lease))
        return headers

    async def _call(self, method: str, request: Message, response_type: type[R], deadline: float | None = None) -> R:
        return await self._rpc.unary(method, request, response_type, metadata=self._metadata(), deadline=deadline)

    def _stream(self, method: str, request: Message, response_type: type[R]) -> AsyncIterator[R]:
        return self._rpc.server_stream(method, request, response_type, metadata=self._metadata())

    # ---- version, namespaces ----

    async def version(self) -> ContainerdVersion:
        resp = await self._call(_VERSION + "Version", EMPTY, version_pb2.VersionResponse)
        return ContainerdVersion(version=resp.version, revision=resp.revision)

    async def list_namespaces(self) -> list[Namespace]:
        """All namespaces (not scoped by this client's namespace)."""
        resp = await self._call(
            _NAMESPACES + "List", namespace_pb2.ListNamespacesRequest(), namespace_pb2.ListNamespacesResponse
        )
        return [Namespace(name=n.name, labels=dict(n.labels)) for n in resp.namespaces]

    # ---- images ----

    async def list_images(self, filters: Iterable[str] = ()) -> list[ImageRecord]:
        resp = await self._call(
            _IMAGES + "List", images_pb2.ListImagesRequest(filters=list(filters)), images_pb2.ListImagesResponse
        )
        return [_image(i) for i in resp.images]

    async def get_image(self, name: str) -> ImageRecord:
        """The image record `name`; NotFoundError if there is none."""
        resp = await self._call(_IMAGES + "Get", images_pb2.GetImageRequest(name=name), images_pb2.GetImageResponse)
        return _image(resp.image)

    async def create_image(self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None) -> ImageRecord:
        """Create an image record pointing at `target` (which must be in the content store to be useful)."""
        resp = await self._call(
            _IMAGES + "Create",
            images_pb2.CreateImageRequest(
                image=images_pb2.Image(name=name, target=_descriptor_pb(target), labels=dict(labels or {}))
            ),
            images_pb2.CreateImageResponse,
        )
        return _image(resp.image)

    async def update_image(
        self,
        name: str,
        *,
        target: Descriptor | None = None,
        labels: Mapping[str, str] | None = None,
        fieldpaths: Sequence[str] | None = None,
    ) -> ImageRecord:
        """Update an image record. Without `fieldpaths`, replace what is given (`target`, all `labels`);
        with them (e.g. `["labels.example.com/x"]`), change only those fields (absent labels are removed)."""
        if fieldpaths is None:
            fieldpaths = [p for p, v in (("target", target), ("labels", labels)) if v is not None]
        image = images_pb2.Image(name=name, labels=dict(labels or {}))
        if target is not None:
            image.target.CopyFrom(_descriptor_pb(target))
        else:
            # Always present, if empty (the mask keeps it from being applied): containerd 2.3.7's images service
            # dereferences it whatever the mask, and a request without one crashes the whole daemon.
            image.target.SetInParent()
        resp = await self._call(
            _IMAGES + "Update",
            images_pb2.UpdateImageRequest(image=image, update_mask={"paths": list(fieldpaths)}),
            images_pb2.UpdateImageResponse,
        )
        return _image(resp.image)

    async def delete_image(self, name: str, *, sync: bool = False, missing_ok: bool = False) -> None:
        """Delete an image record. With `sync`, return only after the garbage collection it triggers
        (which frees the blobs and snapshots nothing else references)."""
        await self._missing_ok(
            self._call(
                _IMAGES + "Delete",
                images_pb2.DeleteImageRequest(name=name, sync=sync),
                NoResponse,
                deadline=self._gc_deadline(sync),
            ),
            missing_ok,
        )

    # ---- content ----

    async def list_content(self, filters: Iterable[str] = ()) -> list[BlobInfo]:
        blobs: list[BlobInfo] = []
        async for resp in self._stream(
            _CONTENT + "List", content_pb2.ListContentRequest(filters=list(filters)), content_pb2.ListContentResponse
        ):
            blobs.extend(_blob(i) for i in resp.info)
        return blobs

    async def content_info(self, digest: str) -> BlobInfo:
        resp = await self._call(_CONTENT + "Info", content_pb2.InfoRequest(digest=digest), content_pb2.InfoResponse)
        return _blob(resp.info)

    async def update_content_labels(
        self, digest: str, labels: Mapping[str, str], fieldpaths: Sequence[str] | None = None
    ) -> BlobInfo:
        """Set a blob's labels. Without `fieldpaths`, `labels` replaces them all; with fieldpaths like
        `["labels.containerd.io/gc.root"]` only those change (a label named but absent is removed)."""
        paths = list(fieldpaths) if fieldpaths is not None else ["labels"]
        resp = await self._call(
            _CONTENT + "Update",
            content_pb2.UpdateRequest(
                info=content_pb2.Info(digest=digest, labels=dict(labels)), update_mask={"paths": paths}
            ),
            content_pb2.UpdateResponse,
        )
        return _blob(resp.info)

    async def delete_content(self, digest: str, *, missing_ok: bool = False) -> None:
        await self._missing_ok(
            self._call(_CONTENT + "Delete", content_pb2.DeleteContentRequest(digest=digest), NoResponse), missing_ok
        )

    async def read_content(self, digest: str, *, offset: int = 0, size: int = 0) -> bytes:
        """A blob's bytes (from `offset`, `size` bytes; 0: to the end)."""
        chunks: list[bytes] = []
        async for resp in self._stream(
            _CONTENT + "Read",
            content_pb2.ReadContentRequest(digest=digest, offset=offset, size=size),
            content_pb2.ReadContentResponse,
        ):
            chunks.append(resp.data)
        return b"".join(chunks)

    async def write_content(
        self,
        ref: str,
        data: bytes,
        *,
        expected_digest: str | None = None,
        labels: Mapping[str, str] | None = None,
        commit: bool = True,
        total: int | None = None,
    ) -> BlobInfo | None:
        """Write `data` as a blob through the Write stream (stat, write, commit) under ingest `ref`.

        Returns the committed blob's info; if a blob with that digest exists already, nothing is
        written and the existing blob's info is returned. With `commit=False` the data is left as an
        uncommitted ingest (as an interrupted download leaves it) and None is returned; `total` then declares
        the size the blob will have (default: `len(data)`; more: a download part-way, 0: an unknown size).
        """
        expected = expected_digest or "sha256:" + hashlib.sha256(data).hexdigest()
        declared = len(data) if total is None or commit else total
        call = self._rpc.stream_stream(_CONTENT + "Write", content_pb2.WriteContentResponse, metadata=self._metadata())
        try:
            await call.write(content_pb2.WriteContentRequest(action="STAT", ref=ref, total=declared, expected=expected))
            await call.read()
            for start in range(0, len(data), WRITE_CHUNK):
                chunk = data[start : start + WRITE_CHUNK]
                await call.write(content_pb2.WriteContentRequest(action="WRITE", ref=ref, offset=start, data=chunk))
                await call.read()
            if not commit:
                await call.finish()  # the server closes its writer: the ingest is left, unlocked
                return None
            await call.write(
                content_pb2.WriteContentRequest(
                    action="COMMIT",
                    ref=ref,
                    total=len(data),
                    offset=len(data),
                    expected=expected,
                    labels=dict(labels or {}),
                )
            )
            await call.read()
        except AlreadyExistsError:
            pass
        finally:
            call.cancel()
        return await self.content_info(expected)

    async def list_ingests(self, filters: Iterable[str] = ()) -> list[IngestStatus]:
        """Uncommitted writes (partial downloads) in the content store."""
        resp = await self._call(
            _CONTENT + "ListStatuses",
            content_pb2.ListStatusesRequest(filters=list(filters)),
            content_pb2.ListStatusesResponse,
        )
        return [
            IngestStatus(
                ref=s.ref,
                offset=s.offset,
                total=s.total,
                expected=s.expected,
                started_at=from_timestamp(s.started_at),
                updated_at=from_timestamp(s.updated_at),
            )
            for s in resp.statuses
        ]

    async def abort_ingest(self, ref: str, *, missing_ok: bool = False) -> None:
        """Drop an uncommitted write and the disk space it holds."""
        await self._missing_ok(
            self._call(_CONTENT + "Abort", content_pb2.AbortRequest(ref=ref), NoResponse), missing_ok
        )

    # ---- snapshots ----

    async def list_snapshots(
        self, snapshotter: str = DEFAULT_SNAPSHOTTER, filters: Iterable[str] = ()
    ) -> list[SnapshotInfo]:
        snapshots: list[SnapshotInfo] = []
        async for resp in self._stream(
            _SNAPSHOTS + "List",
            snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter, filters=list(filters)),
            snapshots_pb2.ListSnapshotsResponse,
        ):
            snapshots.extend(_snapshot(i, snapshotter) for i in resp.info)
        return snapshots

    async def stat_snapshot(self, key: str, snapshotter: str = DEFAULT_SNAPSHOTTER) -> SnapshotInfo:
        resp = await self._call(
            _SNAPSHOTS + "Stat",
            snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key),
            snapshots_pb2.StatSnapshotResponse,
        )
        return _snapshot(resp.info, snapshotter)

    async def snapshot_usage(self, key: str, snapshotter: str = DEFAULT_SNAPSHOTTER) -> SnapshotUsage:
        """Disk used by the snapshot's own layer. Committed layers never change: cache by key."""
        resp = await self._call(
            _SNAPSHOTS + "Usage",
            snapshots_pb2.UsageRequest(snapshotter=snapshotter, key=key),
            snapshots_pb2.UsageResponse,
        )
        return SnapshotUsage(size=resp.size, inodes=resp.inodes)

    async def prepare_snapshot(
        self,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
    ) -> list[Mount]:
        """Create an active (writable) snapshot on top of `parent`; returns how to mount it."""
        resp = await self._call(
            _SNAPSHOTS + "Prepare",
            snapshots_pb2.PrepareSnapshotRequest(
                snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
            ),
            snapshots_pb2.PrepareSnapshotResponse,
        )
        return [_mount(m) for m in resp.mounts]

    async def view_snapshot(
        self,
        key: str,
        parent: str,
        *,
        labels: Mapping[str, str] | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
    ) -> list[Mount]:
        """Create a read-only view of `parent`; returns how to mount it."""
        resp = await self._call(
            _SNAPSHOTS + "View",
            snapshots_pb2.ViewSnapshotRequest(
                snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
            ),
            snapshots_pb2.ViewSnapshotResponse,
        )
        return [_mount(m) for m in resp.mounts]

    async def snapshot_mounts(self, key: str, snapshotter: str = DEFAULT_SNAPSHOTTER) -> list[Mount]:
        resp = await self._call(
            _SNAPSHOTS + "Mounts",
            snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key),
            snapshots_pb2.MountsResponse,
        )
        return [_mount(m) for m in resp.mounts]

    async def commit_snapshot(
        self,
        name: str,
        key: str,
        *,
        labels: Mapping[str, str] | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
    ) -> None:
        """Turn active snapshot `key` into committed snapshot `name`."""
        await self._call(
            _SNAPSHOTS + "Commit",
            snapshots_pb2.CommitSnapshotRequest(snapshotter=snapshotter, name=name, key=key, labels=dict(labels or {})),
            NoResponse,
        )

    async def remove_snapshot(
        self, key: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER, missing_ok: bool = False
    ) -> None:
        """Remove a snapshot (it must have no children)."""
        await self._missing_ok(
            self._call(
                _SNAPSHOTS + "Remove", snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key), NoResponse
            ),
            missing_ok,
        )

    # ---- leases ----

    async def list_leases(self, filters: Iterable[str] = ()) -> list[Lease]:
        resp = await self._call(
            _LEASES + "List", leases_pb2.ListRequest(filters=list(filters)), leases_pb2.ListResponse
        )
        return [_lease(lease) for lease in resp.leases]

    async def create_lease(
        self,
        lease_id: str = "",
        labels: Mapping[str, str] | None = None,
        *,
        expire: timedelta | None = None,
    ) -> Lease:
        """Create a lease (a random id if none is given); with `expire`, containerd's GC drops it then."""
        all_labels = dict(labels or {})
        if expire is not None:
            when = datetime.now(UTC) + expire
            all_labels[LEASE_EXPIRE_LABEL] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        resp = await self._call(
            _LEASES + "Create",
            leases_pb2.CreateRequest(id=lease_id or f"node-janitor-{uuid.uuid4().hex}", labels=all_labels),
            leases_pb2.CreateResponse,
        )
        return _lease(resp.lease)

    async def delete_lease(self, lease_id: str, *, sync: bool = False, missing_ok: bool = False) -> None:
        """Delete a lease; what only it held becomes garbage. With `sync`, return after that GC ran."""
        await self._missing_ok(
            self._call(
                _LEASES + "Delete",
                leases_pb2.DeleteRequest(id=lease_id, sync=sync),
                NoResponse,
                deadline=self._gc_deadline(sync),
            ),
            missing_ok,
        )

    async def list_lease_resources(self, lease_id: str) -> list[LeaseResource]:
        resp = await self._call(
            _LEASES + "ListResources", leases_pb2.ListResourcesRequest(id=lease_id), leases_pb2.ListResourcesResponse
        )
        return [LeaseResource(id=r.id, type=r.type) for r in resp.resources]

    async def add_lease_resource(self, lease_id: str, resource: LeaseResource) -> None:
        await self._call(
            _LEASES + "AddResource",
            leases_pb2.AddResourceRequest(
                id=lease_id, resource=leases_pb2.Resource(id=resource.id, type=resource.type)
            ),
            NoResponse,
        )

    async def delete_lease_resource(self, lease_id: str, resource: LeaseResource, *, missing_ok: bool = False) -> None:
        await self._missing_ok(
            self._call(
                _LEASES + "DeleteResource",
                leases_pb2.DeleteResourceRequest(
                    id=lease_id, resource=leases_pb2.Resource(id=resource.id, type=resource.type)
                ),
                NoResponse,
            ),
            missing_ok,
        )

    @asynccontextmanager
    async def temporary_lease(
        self,
        labels: Mapping[str, str] | None = None,
        *,
        expire: timedelta = timedelta(hours=1),
        sync_delete: bool = False,
    ) -> AsyncIterator[ContainerdClient]:
        """Create a lease, yield a client whose calls carry it, delete it on exit.

        `expire` bounds its life if this process dies before the exit; `sync_delete` waits for the GC.
        """
        lease = await self.create_lease(labels=labels, expire=expire)
        try:
            yield self.with_lease(lease.id)
        finally:
            await self.delete_lease(lease.id, sync=sync_delete, missing_ok=True)

    async def wait_for_gc(self) -> None:
        """Run containerd's garbage collection now and wait for it to finish.

        containerd has no "collect" RPC; deleting a lease with `sync` schedules a collection and
        waits for it, so a scratch lease (holding nothing) does the job.
        """
        lease = await self.create_lease(labels={"node-janitor/purpose": "gc"}, expire=timedelta(minutes=5))
        await self.delete_lease(lease.id, sync=True, missing_ok=True)

    def _gc_deadline(self, sync: bool) -> float | None:
        # A synchronous GC walks the whole metadata store: give it more than an ordinary call.
        return max(self._rpc.timeout, 120.0) if sync else None

    # ---- containers ----

    async def list_containers(self, filters: Iterable[str] = ()) -> list[ContainerRecord]:
        resp = await self._call(
            _CONTAINERS + "List",
            containers_pb2.ListContainersRequest(filters=list(filters)),
            containers_pb2.ListContainersResponse,
        )
        return [_container(c) for c in resp.containers]

    async def get_container(self, container_id: str) -> ContainerRecord:
        resp = await self._call(
            _CONTAINERS + "Get",
            containers_pb2.GetContainerRequest(id=container_id),
            containers_pb2.GetContainerResponse,
        )
        return _container(resp.container)

    async def create_container(
        self,
        container_id: str,
        image: str,
        *,
        snapshot_key: str = "",
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        runtime_name: str = DEFAULT_RUNTIME,
        labels: Mapping[str, str] | None = None,
        spec_json: bytes = b'{"ociVersion":"1.0.2"}',
    ) -> ContainerRecord:
        """Create a plain container record, as a non-CRI client (ctr, nerdctl) would: it has no task, CRI
        does not list it, and it keeps snapshot `snapshot_key` from the GC until it is deleted."""
        container = containers_pb2.Container(
            id=container_id,
            image=image,
            labels=dict(labels or {}),
            runtime=containers_pb2.Container.Runtime(name=runtime_name),
            spec={"type_url": OCI_SPEC_TYPE_URL, "value": spec_json},
            snapshotter=snapshotter if snapshot_key else "",
            snapshot_key=snapshot_key,
        )
        resp = await self._call(
            _CONTAINERS + "Create",
            containers_pb2.CreateContainerRequest(container=container),
            containers_pb2.CreateContainerResponse,
        )
        return _container(resp.container)

    async def delete_container(self, container_id: str, *, missing_ok: bool = False) -> None:
        """Delete a container record (its task, if any, must be gone). Its snapshot is left to the GC."""
        await self._missing_ok(
            self._call(_CONTAINERS + "Delete", containers_pb2.DeleteContainerRequest(id=container_id), NoResponse),
            missing_ok,
        )


# ---- conversions ----


def _descriptor(d: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations))


def _descriptor_pb(d: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations)
    )


def _image(i: images_pb2.Image) -> ImageRecord:
    return ImageRecord(
        name=i.name,
        target=_descriptor(i.target),
        labels=dict(i.labels),
        created_at=from_timestamp(i.created_at),
        updated_at=from_timestamp(i.updated_at),
    )


def _blob(i: content_pb2.Info) -> BlobInfo:
    created_at = from_timestamp(i.created_at)
    # A blob whose labels were never updated has Go's zero time (year 1) as updated_at.
    updated_at = from_timestamp(i.updated_at) if i.updated_at.seconds > _GO_ZERO_TIME else created_at
    return BlobInfo(digest=i.digest, size=i.size, created_at=created_at, updated_at=updated_at, labels=dict(i.labels))


def _snapshot(i: snapshots_pb2.Info, snapshotter: str) -> SnapshotInfo:
    return SnapshotInfo(
        name=i.name,
        parent=i.parent,
        kind=_SNAPSHOT_KINDS.get(i.kind, "UNKNOWN"),
        created_at=from_timestamp(i.created_at),
        updated_at=from_timestamp(i.updated_at),
        labels=dict(i.labels),
        snapshotter=snapshotter,
    )


def _mount(m: mount_pb2.Mount) -> Mount:
    return Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options))


def _lease(lease: leases_pb2.Lease) -> Lease:
    return Lease(
        id=lease.id,
        created_at=from_timestamp(lease.created_at) if lease.HasField("created_at") else EPOCH,
        labels=dict(lease.labels),
    )


def _container(c: containers_pb2.Container) -> ContainerRecord:
    return ContainerRecord(
        id=c.id,
        image=c.image,
        runtime_name=c.runtime.name,
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        created_at=from_timestamp(c.created_at),
        updated_at=from_timestamp(c.updated_at),
        labels=dict(c.labels),
    )
