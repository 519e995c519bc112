"""An in-memory node for fast engine tests: `FakeRuntime` (CRI and containerd over one store, containerd's garbage
collector) and `FakeHost` (disks whose use follows what the store and the pod log tree hold).

The kubelet's `FakeRuntime` and Eraser's `testClient` are the model: hand-written, pinned to the engine's ports by
lines mypy checks (the end of this file; `mypy` checks this file, see pyproject.toml), and only for unit tests: the
engine's integration tests run on a real containerd (tests/node/*_real.py).

What it models, as containerd 1.6+ with its CRI plugin does:
- an image is a manifest blob (`gc.ref.content.config` and `.l.<n>` labels), a config blob (its digest is the
  image ID; `gc.ref.snapshot.overlayfs` names its top snapshot) and one blob and one committed snapshot per layer
  (a layer's snapshot key is its chain: images built on the same layers share them, with parents), reached from
  records: each tag, an optional digest ref, and the ID record CRI adds. CRI lists one image per ID;
- containers and pod sandboxes: a containerd record each (the root of its own active snapshot, on its image's top)
  and their CRI view (state, image, log path, when it finished); a sandbox's record uses the sandbox image;
- image volumes (KEP-4639) as containerd 2.x mounts them: a container's image mounts are in its ContainerStatus
  (`image_mounts`, the image IDs), each one an active snapshot on that image's top held by a lease named after the
  pod sandbox (no container record of that image); `status_failures` makes a container's ContainerStatus fail;
- leases with resources and `containerd.io/gc.expire`, blobs and snapshots with any labels;
- the collector: every deletion through CRI or containerd collects at once (mark from image records that have not
  expired, containers, unexpired leases and `containerd.io/gc.root`; follow `gc.ref.content*`,
  `gc.ref.snapshot.<snapshotter>*` and snapshot parents; an expired image record lives while the record its
  `gc.bref.image` names does, as containerd 2.x's extra names (`add_extra_name`); sweep the rest). Not
  modelled: other back references, `gc.cond.*`, `gc.flat`, other namespaces' records;
- disk use: an image disk holds the base use plus every blob (in whole blocks) and snapshot; a log disk holds the
  base use plus the real files under the pod log directory (the log tree is real files in a temp directory).

`calls` records each mutating call in order ("RemoveImage <id>", "RemoveContainer <id>", "DeleteLease <id>",
"DeleteImage <name>", "DeleteContent <digest>", "GC", "ReopenContainerLog <id>"); `before_call` is called with
the call's name first (a test changes the node there, as a kubelet would meanwhile).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from node_janitor.api.refs import normalize_or_none
from node_janitor.node.inventory import FileSystemEntry
from node_janitor.node.ports import ContainerdRuntime, CriRuntime, HostFileSystems, NodeRuntime
from node_janitor.runtime.errors import NotFoundError, RuntimeClientError
from node_janitor.runtime.records import (
    BlobInfo,
    ContainerRecord,
    ContainerState,
    CriContainer,
    CriContainerStatus,
    CriImage,
    CriSandbox,
    CriStatus,
    Descriptor,
    FilesystemUsage,
    ImageFsInfo,
    ImageRecord,
    IngestStatus,
    Lease,
    LeaseResource,
    Namespace,
    SnapshotInfo,
    SnapshotUsage,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MiB = 1 << 20
BLOCK = 4096
SNAPSHOTTER = "overlayfs"
NAMESPACE = "k8s.io"
ROOT = "/fake/containerd"  # containerd's root as the fake runtime reports it
IMAGE_FS = f"{ROOT}/io.containerd.snapshotter.v1.{SNAPSHOTTER}"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT = f"containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"
GC_ROOT = "containerd.io/gc.root"
GC_EXPIRE = "containerd.io/gc.expire"
GC_BREF_IMAGE = "containerd.io/gc.bref.image"


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _blocks(length: int) -> int:
    return -(-length // BLOCK) * BLOCK


@dataclass(frozen=True)
class FakeImage:
    id: str  # the config digest: CRI's image ID
    ref: str
    manifest: str
    layers: tuple[str, ...]  # blob digests
    top: str  # the top snapshot's key


@dataclass
class FakeContainer:
    record: ContainerRecord
    sandbox_id: str
    name: str
    image_id: str
    state: ContainerState
    log_path: str
    created_at: datetime
    finished_at: datetime | None = None
    image_mounts: tuple[str, ...] = ()  # image IDs it mounts as volumes


class FakeRuntime:
    """One node's containerd (namespace `k8s.io`) and its CRI plugin, in memory (`ports.NodeRuntime`)."""

    def __init__(self, *, clock: Callable[[], datetime] = lambda: T0, sandbox_image: str = SANDBOX_IMAGE) -> None:
        self.clock = clock
        self.sandbox_image_ref = sandbox_image
        self.records: dict[str, ImageRecord] = {}  # image records by name
        self.blobs: dict[str, BlobInfo] = {}
        self.snapshots: dict[str, SnapshotInfo] = {}
        self.usage: dict[str, int] = {}  # snapshot key -> bytes
        self.leases: dict[str, tuple[Lease, list[LeaseResource]]] = {}
        self.ingests: dict[str, IngestStatus] = {}  # uncommitted writes by ref (pulls in progress)
        self.containers: dict[str, FakeContainer] = {}  # CRI containers and sandboxes' records alike
        self.sandboxes: dict[str, CriSandbox] = {}
        self.pinned: set[str] = set()  # image IDs CRI reports pinned
        self.calls: list[str] = []
        self.reads = 0  # calls that only read
        self.before_call: Callable[[str], None] | None = None
        self.status_failures: set[str] = set()
        """Containers whose ContainerStatus fails (a runtime error, not NotFound)."""
        self.gc_failures = 0
        """How many collections fail next (as containerd's does when its metadata store cannot grow on a full disk:
        the records a RemoveImage deleted stay deleted, nothing is freed, the call answers "gc failed")."""
        self.cri = FakeCri(self)
        self.containerd = FakeContainerd(self)

    # ---- building the node ----

    def add_image(
        self,
        ref: str,
        layers: Sequence[tuple[str, int]],
        *,
        pinned: bool = False,
        created_at: datetime = T0,
        digest_ref: bool = False,
    ) -> FakeImage:
        """An image pulled and unpacked: `layers` are (seed, unpacked bytes), bottom first; a layer's blob is half
        its unpacked size. The same seeds in the same order are the same blobs and snapshots (shared layers)."""
        layer_digests: list[str] = []
        parent = ""
        for seed, size in layers:
            layer = digest(f"layer:{seed}")
            layer_digests.append(layer)
            self.blobs.setdefault(layer, self._blob(layer, size // 2, {}, created_at))
            key = digest(f"chain:{parent}:{layer}")
            if key not in self.snapshots:
                self.snapshots[key] = SnapshotInfo(key, parent, "COMMITTED", created_at, created_at, {}, SNAPSHOTTER)
                self.usage[key] = size
            parent = key
        config = digest(f"config:{ref}:{layer_digests}")
        self.blobs[config] = self._blob(config, 1500, {GC_REF_SNAPSHOT: parent}, created_at)
        labels = {f"{GC_REF_CONTENT}.config": config}
        labels |= {f"{GC_REF_CONTENT}.l.{i}": d for i, d in enumerate(layer_digests)}
        manifest = digest(f"manifest:{config}")
        self.blobs[manifest] = self._blob(manifest, 800, labels, created_at)
        target = Descriptor(MANIFEST, manifest, 800)
        names = [ref, config] + ([f"{ref.rsplit(':', 1)[0]}@{manifest}"] if digest_ref else [])
        for name in names:
            self.records[name] = ImageRecord(
                name, target, {"io.cri-containerd.image": "managed"}, created_at, created_at
            )
        if pinned:
            self.pinned.add(config)
        return FakeImage(config, ref, manifest, tuple(layer_digests), parent)

    def add_extra_name(self, image: FakeImage, name: str, *, of: str | None = None) -> None:
        """Another record of `image`, as containerd 2.x's transfer service writes an image's extra names: expired at
        once and attached (`gc.bref.image`) to the record named `of` (default: the image's own name), so that it
        lives exactly as long as that record does, whatever image that name points at by then."""
        labels = {GC_BREF_IMAGE: of or image.ref, GC_EXPIRE: self.clock().isoformat().replace("+00:00", "Z")}
        at = self.clock()
        self.records[name] = ImageRecord(name, Descriptor(MANIFEST, image.manifest, 800), labels, at, at)

    def add_pod(self, name: str, uid: str, *, namespace: str = "default", ready: bool = True) -> CriSandbox:
        """A pod sandbox, its record on the sandbox image (when present) with an active snapshot."""
        sandbox = CriSandbox(f"sb-{uid}", name, namespace, uid, 0, "READY" if ready else "NOTREADY", self.clock())
        self.sandboxes[sandbox.id] = sandbox
        image = self._image_of(self.sandbox_image_ref)
        self._add_record(sandbox.id, self.sandbox_image_ref, image.top if image else "")
        return sandbox

    def add_container(
        self,
        cid: str,
        image: FakeImage,
        *,
        pod: CriSandbox,
        name: str = "c",
        state: ContainerState = "RUNNING",
        log_path: str = "",
        finished_at: datetime | None = None,
        writes: int = 0,
        mounts: Sequence[FakeImage] = (),
    ) -> FakeContainer:
        """A CRI container of `pod` on `image`, with a writable layer of `writes` bytes, mounting `mounts` as image
        volumes."""
        record = self._add_record(cid, image.ref, image.top, writes)
        container = FakeContainer(record, pod.id, name, image.id, state, log_path, self.clock(), finished_at,
                                  tuple(m.id for m in mounts))  # fmt: skip
        for mounted in mounts:  # containerd 2.x: a snapshot on the image's top, held by the sandbox's lease
            key = f"image-volume-{pod.id}-{mounted.manifest}"
            now = self.clock()
            self.snapshots[key] = SnapshotInfo(key, mounted.top, "ACTIVE", now, now, {}, SNAPSHOTTER)
            self.usage[key] = 0
            lease, resources = self.leases.get(pod.id, (Lease(pod.id, now, {}), []))
            self.leases[pod.id] = (lease, [*resources, LeaseResource(id=key, type=f"snapshots/{SNAPSHOTTER}")])
        self.containers[cid] = container
        return container

    def add_lease(
        self, lease_id: str, resources: Iterable[tuple[str, str]] = (), *, expires_at: datetime | None = None
    ) -> None:
        labels = {GC_EXPIRE: expires_at.isoformat().replace("+00:00", "Z")} if expires_at else {}
        self.leases[lease_id] = (
            Lease(lease_id, self.clock(), labels),
            [LeaseResource(id=i, type=t) for t, i in resources],
        )

    def add_ingest(self, ref: str, offset: int, total: int, *, updated_at: datetime | None = None) -> None:
        """A pull in progress: `offset` bytes of a blob of `total` (0: unknown) written, last at `updated_at`."""
        at = updated_at or self.clock()
        self.ingests[ref] = IngestStatus(ref, offset, total, "", at, at)

    def add_orphan_blob(self, name: str, length: int) -> str:
        """A blob nothing references (an interrupted pull's leftover)."""
        d = digest(f"orphan:{name}")
        self.blobs[d] = self._blob(d, length, {}, self.clock())
        return d

    def _blob(self, d: str, length: int, labels: dict[str, str], at: datetime) -> BlobInfo:
        return BlobInfo(d, length, at, at, labels)

    def _add_record(self, cid: str, image_ref: str, parent: str, writes: int = 0) -> ContainerRecord:
        key = f"active-{cid}"
        now = self.clock()
        self.snapshots[key] = SnapshotInfo(key, parent, "ACTIVE", now, now, {}, SNAPSHOTTER)
        self.usage[key] = writes
        record = ContainerRecord(cid, image_ref, "io.containerd.runc.v2", SNAPSHOTTER, key, now, now, {})
        if cid in self.sandboxes:
            self.containers[cid] = FakeContainer(record, cid, "", "", "RUNNING", "", now)
        return record

    # ---- what the node holds ----

    def stored_bytes(self) -> int:
        """What the image disk holds of the store: blobs in whole blocks, snapshots, and what ingests wrote."""
        ingests = sum(_blocks(i.offset) for i in self.ingests.values())
        return sum(_blocks(b.size) for b in self.blobs.values()) + sum(self.usage.values()) + ingests

    def image_ids(self) -> set[str]:
        return {self._config_of(r) for r in self.records.values()} - {""}

    def _config_of(self, record: ImageRecord) -> str:
        manifest = self.blobs.get(record.target.digest)
        return manifest.labels.get(f"{GC_REF_CONTENT}.config", "") if manifest else ""

    def _image_of(self, name: str) -> FakeImage | None:
        wanted = normalize_or_none(name) or name
        for record in self.records.values():
            if record.name == name or (normalize_or_none(record.name) or record.name) == wanted:
                manifest = self.blobs[record.target.digest]
                config = manifest.labels[f"{GC_REF_CONTENT}.config"]
                layers = tuple(v for k, v in sorted(manifest.labels.items()) if k.startswith(f"{GC_REF_CONTENT}.l."))
                top = self.blobs[config].labels.get(GC_REF_SNAPSHOT, "")
                return FakeImage(config, record.name, record.target.digest, layers, top)
        return None

    # ---- calls and the collector ----

    def call(self, name: str) -> None:
        if self.before_call is not None:
            self.before_call(name)
        self.calls.append(name)

    def collect_garbage(self) -> None:
        """containerd's collector, as far as the fake goes (see the module docstring)."""
        self.calls.append("GC")
        if self.gc_failures > 0:
            self.gc_failures -= 1
            raise RuntimeClientError("gc failed: unknown (injected)")
        now = self.clock()
        blobs: set[str] = set()
        snapshots: set[str] = set()
        todo: list[tuple[str, str]] = []

        def refs(labels: dict[str, str] | Iterable[tuple[str, str]]) -> None:
            for key, value in labels.items() if isinstance(labels, dict) else labels:
                if key == GC_REF_CONTENT or key.startswith((GC_REF_CONTENT + ".", GC_REF_CONTENT + "/")):
                    todo.append(("content", value))
                elif key == GC_REF_SNAPSHOT or key.startswith(GC_REF_SNAPSHOT + "/"):
                    todo.append(("snapshot", value))

        def expired(labels: Mapping[str, str]) -> bool:
            expire = labels.get(GC_EXPIRE)
            return expire is not None and datetime.fromisoformat(expire.replace("Z", "+00:00")) <= now

        live = {name for name, record in self.records.items() if not expired(record.labels)}
        attached = {
            name
            for name, record in self.records.items()
            if name not in live and record.labels.get(GC_BREF_IMAGE) in live
        }
        for name in live | attached:
            record = self.records[name]
            todo.append(("content", record.target.digest))
            refs(dict(record.labels))
        self.records = {name: r for name, r in self.records.items() if name in live | attached}
        for c in self.containers.values():
            todo.append(("snapshot", c.record.snapshot_key))
        for lease, resources in self.leases.values():
            expire = lease.labels.get(GC_EXPIRE)
            if expire is None or datetime.fromisoformat(expire.replace("Z", "+00:00")) > now:
                todo += [("content" if r.type == "content" else "snapshot", r.id) for r in resources]
        todo += [("content", b.digest) for b in self.blobs.values() if GC_ROOT in b.labels]
        todo += [("snapshot", s.name) for s in self.snapshots.values() if GC_ROOT in s.labels]
        while todo:
            kind, ident = todo.pop()
            if kind == "content" and ident in self.blobs and ident not in blobs:
                blobs.add(ident)
                refs(dict(self.blobs[ident].labels))
            elif kind == "snapshot" and ident in self.snapshots and ident not in snapshots:
                snapshots.add(ident)
                info = self.snapshots[ident]
                refs(dict(info.labels))
                if info.parent:
                    todo.append(("snapshot", info.parent))
        self.blobs = {d: b for d, b in self.blobs.items() if d in blobs}
        self.snapshots = {k: s for k, s in self.snapshots.items() if k in snapshots}
        self.usage = {k: u for k, u in self.usage.items() if k in snapshots}


class FakeCri:
    """The CRI plugin's view of a `FakeRuntime` (`ports.CriRuntime`)."""

    def __init__(self, node: FakeRuntime) -> None:
        self.node = node

    async def status(self, *, verbose: bool = False) -> CriStatus:
        self.node.reads += 1
        config = {
            "containerdRootDir": ROOT,
            "rootDir": f"{ROOT}/io.containerd.grpc.v1.cri",
            "stateDir": "/fake/run/containerd/io.containerd.grpc.v1.cri",
            "sandboxImage": self.node.sandbox_image_ref,
        }
        return CriStatus(conditions=(), info={"config": json.dumps(config)} if verbose else {})

    async def sandbox_image(self) -> str:
        self.node.reads += 1
        return self.node.sandbox_image_ref

    async def list_images(self) -> list[CriImage]:
        self.node.reads += 1
        node, images = self.node, {}
        for image_id in sorted(node.image_ids()):
            names = [r.name for r in node.records.values() if node._config_of(r) == image_id]
            manifest = node.blobs[next(r.target.digest for r in node.records.values() if r.name == names[0])]
            layers = [v for k, v in manifest.labels.items() if k.startswith(f"{GC_REF_CONTENT}.l.")]
            images[image_id] = CriImage(
                id=image_id,
                repo_tags=tuple(n for n in names if n != image_id and "@" not in n),
                repo_digests=tuple(n for n in names if "@" in n),
                size=sum(node.blobs[d].size for d in layers if d in node.blobs),
                pinned=image_id in node.pinned,
            )
        return list(images.values())

    async def remove_image(self, image: str, *, missing_ok: bool = False) -> None:
        """Every record of the image (an ID or any of its names), then a collection (CRI RemoveImage)."""
        node = self.node
        found = node._image_of(image) if image not in node.image_ids() else None
        image_id = image if image in node.image_ids() else found.id if found else ""
        node.call(f"RemoveImage {image_id or image}")
        if not image_id:
            if missing_ok:
                return
            raise NotFoundError(f"image {image} not found")
        node.records = {n: r for n, r in node.records.items() if node._config_of(r) != image_id}
        node.collect_garbage()

    async def image_fs_info(self) -> ImageFsInfo:
        self.node.reads += 1
        return ImageFsInfo((FilesystemUsage(IMAGE_FS, self.node.stored_bytes(), None, self.node.clock()),))

    async def list_pod_sandboxes(self) -> list[CriSandbox]:
        self.node.reads += 1
        return list(self.node.sandboxes.values())

    async def list_containers(self) -> list[CriContainer]:
        self.node.reads += 1
        return [
            CriContainer(c.record.id, c.sandbox_id, c.name, 0, c.image_id, c.image_id, c.state, c.created_at)
            for c in self.node.containers.values()
            if c.record.id not in self.node.sandboxes
        ]

    def _container(self, container_id: str) -> FakeContainer:
        c = self.node.containers.get(container_id)
        if c is None or container_id in self.node.sandboxes:
            raise NotFoundError(f"container {container_id} not found")
        return c

    async def container_status(self, container_id: str) -> CriContainerStatus:
        self.node.reads += 1
        c = self._container(container_id)
        if container_id in self.node.status_failures:
            raise RuntimeClientError(f"failed to get container status {container_id!r}: injected")
        started = None if c.state == "CREATED" else c.created_at
        return CriContainerStatus(
            c.record.id, c.name, 0, c.state, c.image_id, c.image_id, c.created_at, started, c.finished_at,
            0, "", "", c.log_path, image_mounts=c.image_mounts,
        )  # fmt: skip

    async def remove_container(self, container_id: str, *, missing_ok: bool = False) -> None:
        self.node.call(f"RemoveContainer {container_id}")
        if container_id not in self.node.containers or container_id in self.node.sandboxes:
            if missing_ok:
                return
            raise NotFoundError(f"container {container_id} not found")
        del self.node.containers[container_id]
        self.node.collect_garbage()

    async def reopen_container_log(self, container_id: str) -> None:
        self.node.call(f"ReopenContainerLog {container_id}")
        c = self._container(container_id)
        if c.state != "RUNNING":
            raise RuntimeClientError("failed to reopen container log: container is not running")
        if c.log_path:
            os.close(os.open(c.log_path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o640))


class FakeContainerd:
    """containerd's own API over a `FakeRuntime` (`ports.ContainerdRuntime`), namespace `k8s.io` only: any other
    namespace is empty."""

    def __init__(self, node: FakeRuntime, namespace: str = NAMESPACE) -> None:
        self.node = node if namespace == NAMESPACE else FakeRuntime(clock=node.clock)
        self.namespace = namespace

    def with_namespace(self, namespace: str) -> FakeContainerd:
        return self if namespace == self.namespace else FakeContainerd(self.node, namespace)

    async def list_namespaces(self) -> list[Namespace]:
        self.node.reads += 1
        return [Namespace(NAMESPACE)]

    async def list_images(self, filters: Iterable[str] = ()) -> list[ImageRecord]:
        self.node.reads += 1
        records = list(self.node.records.values())
        for f in filters:
            key, _, value = f.partition("==")
            if key == "target.digest":
                records = [r for r in records if r.target.digest == value]
            elif key == "name":
                records = [r for r in records if r.name == value]
            else:
                raise ValueError(f"the fake containerd does not model the image filter {f!r}")
        return records

    async def get_image(self, name: str) -> ImageRecord:
        self.node.reads += 1
        if name not in self.node.records:
            raise NotFoundError(f"image {name!r} not found")
        return self.node.records[name]

    async def delete_image(self, name: str, *, sync: bool = False, missing_ok: bool = False) -> None:
        self.node.call(f"DeleteImage {name}")
        if self.node.records.pop(name, None) is None and not missing_ok:
            raise NotFoundError(f"image {name!r} not found")
        self.node.collect_garbage()

    async def list_content(self) -> list[BlobInfo]:
        self.node.reads += 1
        return list(self.node.blobs.values())

    async def content_info(self, digest: str) -> BlobInfo:
        self.node.reads += 1
        if digest not in self.node.blobs:
            raise NotFoundError(f"content {digest} not found")
        return self.node.blobs[digest]

    async def delete_content(self, digest: str, *, missing_ok: bool = False) -> None:
        self.node.call(f"DeleteContent {digest}")
        if self.node.blobs.pop(digest, None) is None and not missing_ok:
            raise NotFoundError(f"content {digest} not found")

    async def list_snapshots(self, snapshotter: str = SNAPSHOTTER) -> list[SnapshotInfo]:
        self.node.reads += 1
        return list(self.node.snapshots.values()) if snapshotter == SNAPSHOTTER else []

    async def stat_snapshot(self, key: str, snapshotter: str = SNAPSHOTTER) -> SnapshotInfo:
        self.node.reads += 1
        if key not in self.node.snapshots or snapshotter != SNAPSHOTTER:
            raise NotFoundError(f"snapshot {key} not found")
        return self.node.snapshots[key]

    async def snapshot_usage(self, key: str, snapshotter: str = SNAPSHOTTER) -> SnapshotUsage:
        await self.stat_snapshot(key, snapshotter)
        return SnapshotUsage(size=self.node.usage.get(key, 0), inodes=1)

    async def list_leases(self, filters: Iterable[str] = ()) -> list[Lease]:
        self.node.reads += 1
        if list(filters):
            raise ValueError("the fake containerd does not model lease filters")
        return [lease for lease, _ in self.node.leases.values()]

    async def list_lease_resources(self, lease_id: str) -> list[LeaseResource]:
        self.node.reads += 1
        if lease_id not in self.node.leases:
            raise NotFoundError(f"lease {lease_id} not found")
        return list(self.node.leases[lease_id][1])

    async def delete_lease(self, lease_id: str, *, sync: bool = False, missing_ok: bool = False) -> None:
        self.node.call(f"DeleteLease {lease_id}")
        if self.node.leases.pop(lease_id, None) is None and not missing_ok:
            raise NotFoundError(f"lease {lease_id} not found")
        self.node.collect_garbage()

    async def list_containers(self) -> list[ContainerRecord]:
        self.node.reads += 1
        return [c.record for c in self.node.containers.values()]

    async def list_ingests(self, filters: Iterable[str] = ()) -> list[IngestStatus]:
        self.node.reads += 1
        if list(filters):
            raise ValueError("the fake containerd does not model ingest filters")
        return list(self.node.ingests.values())

    async def wait_for_gc(self) -> None:
        self.node.collect_garbage()


@dataclass
class FakeDisk:
    """A file system: `size` bytes, `base` used by everything the tests do not model, plus what `holds` says."""

    size: int
    base: int = 0
    holds: list[Callable[[], int]] = field(default_factory=list)
    own_mount: bool = True  # mounted at its path from its own top (a disk of its own), not a bind of a directory

    @property
    def used(self) -> int:
        return self.base + sum(h() for h in self.holds)


def tree_bytes(root: Path) -> Callable[[], int]:
    """What the real files under `root` take (a log disk's use: allocated blocks, as the log tree counts them)."""

    def total() -> int:
        return sum(f.stat().st_blocks * 512 for f in root.rglob("*") if f.is_file() and not f.is_symlink())

    return total


class FakeHost:
    """The host's file systems as `ports.HostFileSystems`: disks mounted at paths (the longest mount that is a
    prefix of a path holds it). `statvfs` of a path no disk holds is an OSError, as for a missing path."""

    def __init__(self, mounts: dict[str, FakeDisk] | None = None) -> None:
        self.mounts = dict(mounts or {})
        self.fail: set[str] = set()  # paths whose statvfs fails (EIO)
        self.measured: list[str] = []  # the paths statvfs was asked about, in order

    def disk(self, path: str) -> FakeDisk | None:
        best = max((m for m in self.mounts if path == m or path.startswith(m.rstrip("/") + "/")), key=len, default=None)
        return self.mounts[best] if best is not None else None

    def statvfs(self, name: str, path: str) -> FileSystemEntry:
        self.measured.append(path)
        disk = self.disk(path)
        if disk is None or path in self.fail:
            raise OSError(5, "Input/output error", path)
        used = min(disk.used, disk.size)
        return FileSystemEntry(
            name=name,
            path=path,
            size=disk.size,
            used=used,
            available=disk.size - used,
            inodes=1_000_000,
            inodes_used=1_000,
            block_size=BLOCK,
        )

    def same_device(self, a: FileSystemEntry | None, b: FileSystemEntry | None) -> bool:
        return a is not None and b is not None and self.disk(a.path) is self.disk(b.path)

    def fills_alone(self, log_fs: FileSystemEntry) -> bool:
        disk = self.disk(log_fs.path)
        return disk is not None and disk.own_mount and log_fs.path in self.mounts


# The fake is pinned to the engine's ports: mypy checks these lines (pyproject.toml's mypy `files`).
_runtime: NodeRuntime = FakeRuntime()
_cri: CriRuntime = _runtime.cri
_containerd: ContainerdRuntime = _runtime.containerd
_host: HostFileSystems = FakeHost()
