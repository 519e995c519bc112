"""One consistent snapshot of a node's disk use, and exact dedup-aware accounting over it.

containerd keeps an image twice: compressed blobs in its content store and unpacked snapshots. What refers to
what is written in containerd's own garbage-collection labels, so the accounting follows them exactly as the
collector does:

* an image record points at its target blob (index or manifest);
* a blob's `containerd.io/gc.ref.content.*` labels point at other blobs (manifest -> config and layers);
* a blob's `containerd.io/gc.ref.snapshot.<snapshotter>` label points at a snapshot (config -> top layer);
* a snapshot points at its parent; a container at its read-write snapshot; a lease at its resources.

Every blob and snapshot is a node with its on-disk size; an image's SIZE is the sum over the nodes it reaches,
each counted once. What removing a set of roots frees is the set of nodes that no remaining root reaches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from node_janitor.refs import normalize_all, normalize_or_none

GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
GC_ROOT = "containerd.io/gc.root"
GC_EXPIRE = "containerd.io/gc.expire"

Node = str  # "content:<digest>" or "snapshot:<key>"


def content_node(digest: str) -> Node:
    return "content:" + digest


def snapshot_node(key: str) -> Node:
    return "snapshot:" + key


@dataclass(frozen=True, slots=True)
class BlobEntry:
    digest: str
    size: int
    created_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    key: str
    parent: str = ""
    kind: str = "COMMITTED"  # COMMITTED | ACTIVE | VIEW
    size: int = 0
    inodes: int = 0
    created_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageEntry:
    """One image as CRI and kubelet see it, counted once whatever its refs (TESTBED.md)."""

    id: str  # the config digest, CRI's image ID
    names: tuple[str, ...]  # every containerd image record of it: tags, digest refs, the ID record
    targets: tuple[str, ...]  # the target digests of those records
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    cri_size: int = 0  # what CRI reports (compressed layers only)
    pinned: bool = False
    created_at: datetime | None = None  # when it arrived on this node (its oldest record)

    @property
    def dangling(self) -> bool:
        """No tag left (only digest refs or the ID record)."""
        return not self.repo_tags

    @property
    def refs(self) -> tuple[str, ...]:
        """How people name it: its tags and digest refs, or its ID when it has neither (dangling)."""
        return (*self.repo_tags, *self.repo_digests) or (self.id,)

    @property
    def all_names(self) -> frozenset[str]:
        """Every name of it, normalised (`refs.normalize`), and its ID: what protections are judged over."""
        return normalize_all((*self.names, *self.repo_tags, *self.repo_digests, self.id))


@dataclass(frozen=True, slots=True)
class ContainerEntry:
    id: str
    image: str  # the image name or ID the container was created from
    snapshot_key: str = ""
    state: str = "UNKNOWN"  # RUNNING | CREATED | EXITED | UNKNOWN
    name: str = ""
    created_at: datetime | None = None
    finished_at: datetime | None = None
    sandbox: bool = False  # a CRI pod sandbox (pause) container
    cri: bool = True  # known to CRI; False for plain containerd records (ctr, nerdctl, buildkit...)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


@dataclass(frozen=True, slots=True)
class LeaseEntry:
    id: str
    created_at: datetime | None = None
    expires_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: tuple[tuple[str, str], ...] = ()  # (type, id): ("content", digest), ("snapshots/overlayfs", key)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class FileSystemEntry:
    name: str  # "imagefs", "logs", ...
    path: str
    size: int
    used: int
    available: int
    inodes: int = 0
    inodes_used: int = 0

    @property
    def used_percent(self) -> float:
        return 100.0 * self.used / max(1, self.used + self.available)

    @property
    def inodes_used_percent(self) -> float:
        return 100.0 * self.inodes_used / max(1, self.inodes)


@dataclass(frozen=True, slots=True)
class LogFileEntry:
    path: str
    size: int
    pod_namespace: str
    pod_name: str
    pod_uid: str
    container: str
    modified_at: datetime | None = None
    live: bool = False  # the log of a container the runtime knows and that has not exited (it may write)
    orphaned: bool = False  # its pod is not known to the runtime any more
    length: int = 0  # st_size (`size` is what it takes on disk)
    container_id: str = ""  # the runtime container whose log this is (live or exited), if any
    container_state: str = ""  # that container's state: RUNNING | CREATED | EXITED | UNKNOWN


@dataclass(frozen=True)
class Inventory:
    taken_at: datetime
    namespace: str = "k8s.io"
    snapshotter: str = "overlayfs"
    images: tuple[ImageEntry, ...] = ()
    blobs: tuple[BlobEntry, ...] = ()
    snapshots: tuple[SnapshotEntry, ...] = ()
    containers: tuple[ContainerEntry, ...] = ()
    leases: tuple[LeaseEntry, ...] = ()
    file_systems: tuple[FileSystemEntry, ...] = ()
    logs: tuple[LogFileEntry, ...] = ()
    sandbox_image: str = ""
    warnings: tuple[str, ...] = ()

    @cached_property
    def graph(self) -> ReferenceGraph:
        return ReferenceGraph(self)

    def image_by_id(self) -> dict[str, ImageEntry]:
        return {image.id: image for image in self.images}

    @cached_property
    def image_id_by_name(self) -> dict[str, str]:
        """Every normalised name of every image (and its ID) -> its image ID."""
        by_name: dict[str, str] = {}
        for image in self.images:
            for name in image.all_names:
                by_name.setdefault(name, image.id)
        return by_name

    @cached_property
    def image_users(self) -> dict[str, tuple[ContainerEntry, ...]]:
        """Image ID -> the containers (any state, CRI or not) created from it."""
        by_name = self.image_id_by_name
        users: dict[str, list[ContainerEntry]] = {}
        for container in self.containers:
            image_id = by_name.get(normalize_or_none(container.image) or container.image)
            if image_id is not None:
                users.setdefault(image_id, []).append(container)
        return {k: tuple(v) for k, v in users.items()}

    def always_protected(self, image: ImageEntry) -> str | None:
        """Why no cleanup may remove `image` whatever the policy (CRI-pinned, the sandbox image), or None.
        Judged over all of the image's names: removing it removes every one of them."""
        if image.pinned:
            return "pinned by the runtime"
        if self.sandbox_image and (normalize_or_none(self.sandbox_image) or self.sandbox_image) in image.all_names:
            return "sandbox (pause) image"
        return None

    def last_used(self, image_id: str, remembered: Mapping[str, datetime]) -> datetime | None:
        """When a container last used the image: its containers' creation or what was remembered, the latest."""
        seen = [c.created_at for c in self.image_users.get(image_id, ()) if c.created_at]
        if image_id in remembered:
            seen.append(remembered[image_id])
        return max(seen) if seen else None

    def file_system(self, name: str) -> FileSystemEntry | None:
        """The watched file system called `name` ("imagefs", "logs"), if it was measured."""
        return next((f for f in self.file_systems if f.name == name), None)


class ReferenceGraph:
    """containerd's reference graph over blobs and snapshots, with each root's closure."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.size: dict[Node, int] = {}
        self._edges: dict[Node, tuple[Node, ...]] = {}
        snapshot_label = GC_REF_SNAPSHOT + inventory.snapshotter
        self.gc_roots: set[Node] = set()
        for blob in inventory.blobs:
            node = content_node(blob.digest)
            self.size[node] = blob.size
            self._edges[node] = tuple(self._label_refs(blob.labels, snapshot_label))
            if GC_ROOT in blob.labels:
                self.gc_roots.add(node)
        for snap in inventory.snapshots:
            node = snapshot_node(snap.key)
            self.size[node] = snap.size
            refs = list(self._label_refs(snap.labels, snapshot_label))
            if snap.parent:
                refs.append(snapshot_node(snap.parent))
            self._edges[node] = tuple(refs)
            if GC_ROOT in snap.labels:
                self.gc_roots.add(node)

    @staticmethod
    def _label_refs(labels: Mapping[str, str], snapshot_label: str) -> Iterable[Node]:
        for key, value in labels.items():
            if key.startswith(GC_REF_CONTENT):
                yield content_node(value)
            elif key == snapshot_label or key.startswith(snapshot_label + "/"):
                yield snapshot_node(value)

    def closure(self, starts: Iterable[Node]) -> frozenset[Node]:
        """Every existing node reachable from `starts` (missing nodes are skipped, as the GC does)."""
        seen: set[Node] = set()
        stack = [n for n in starts if n in self.size]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(n for n in self._edges.get(node, ()) if n in self.size and n not in seen)
        return frozenset(seen)

    def bytes_of(self, nodes: Iterable[Node]) -> int:
        return sum(self.size.get(n, 0) for n in nodes)

    # -- closures of the roots --------------------------------------------------------------------------
    @cached_property
    def image_closures(self) -> dict[str, frozenset[Node]]:
        return {image.id: self.closure(content_node(t) for t in image.targets) for image in self.inventory.images}

    @cached_property
    def container_closures(self) -> dict[str, frozenset[Node]]:
        snapshot_label = GC_REF_SNAPSHOT + self.inventory.snapshotter
        out = {}
        for container in self.inventory.containers:
            starts = list(self._label_refs(container.labels, snapshot_label))
            if container.snapshot_key:
                starts.append(snapshot_node(container.snapshot_key))
            out[container.id] = self.closure(starts)
        return out

    def lease_closure(self, lease: LeaseEntry) -> frozenset[Node]:
        starts: list[Node] = []
        for kind, ident in lease.resources:
            if kind == "content":
                starts.append(content_node(ident))
            elif kind == "snapshots/" + self.inventory.snapshotter:
                starts.append(snapshot_node(ident))
        return self.closure(starts)

    def lease_closures(self, now: datetime, *, expired: bool) -> dict[str, frozenset[Node]]:
        return {lease.id: self.lease_closure(lease) for lease in self.inventory.leases if lease.expired(now) == expired}

    @cached_property
    def gc_root_closure(self) -> frozenset[Node]:
        return self.closure(self.gc_roots)

    def referenced(self, now: datetime) -> frozenset[Node]:
        """Nodes some image, container, unexpired lease or gc.root label keeps: everything not orphaned."""
        nodes: set[Node] = set(self.gc_root_closure)
        for closures in (self.image_closures, self.container_closures, self.lease_closures(now, expired=False)):
            for closure in closures.values():
                nodes |= closure
        return frozenset(nodes)

    def orphans(self, now: datetime) -> frozenset[Node]:
        return frozenset(self.size) - self.referenced(now)


class ReferenceCounts:
    """How many roots reach each node, so that removing roots one by one yields exactly what each frees.

    Removing a root frees the nodes of its closure that no other root reaches; `remove()` returns them and
    updates the counts, so a planner predicts each step given every step before it.
    """

    def __init__(self, graph: ReferenceGraph, roots: Mapping[str, frozenset[Node]]) -> None:
        self.graph = graph
        self.roots = dict(roots)
        self.count: dict[Node, int] = {}
        for closure in self.roots.values():
            for node in closure:
                self.count[node] = self.count.get(node, 0) + 1

    def would_free(self, root: str) -> frozenset[Node]:
        return frozenset(n for n in self.roots.get(root, ()) if self.count[n] == 1)

    def remove(self, root: str) -> frozenset[Node]:
        closure = self.roots.pop(root, frozenset())
        freed = []
        for node in closure:
            self.count[node] -= 1
            if self.count[node] == 0:
                freed.append(node)
                del self.count[node]
        return frozenset(freed)


def all_roots(inventory: Inventory, now: datetime) -> dict[str, frozenset[Node]]:
    """Every root of the store, keyed `image:<id>`, `container:<id>`, `lease:<id>`, `gc-roots`."""
    graph = inventory.graph
    roots: dict[str, frozenset[Node]] = {f"image:{k}": v for k, v in graph.image_closures.items()}
    roots.update({f"container:{k}": v for k, v in graph.container_closures.items()})
    roots.update({f"lease:{k}": v for k, v in graph.lease_closures(now, expired=False).items()})
    roots.update({f"lease:{k}": v for k, v in graph.lease_closures(now, expired=True).items()})
    roots["gc-roots"] = graph.gc_root_closure
    return roots
