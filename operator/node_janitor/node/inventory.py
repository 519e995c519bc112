"""One consistent snapshot of a node's disk use, and exact dedup-aware accounting over it.

containerd keeps an image twice: compressed blobs in its content store and unpacked snapshots. What refers to
what is written in containerd's own garbage-collection labels, and the accounting follows every label its
collector knows (containerd 1.6's metadata/gc.go, and the 1.7/2.x additions):

* roots: image records (their target and their own `gc.ref.*` labels), containers (their snapshot and labels),
  unexpired leases (their content and snapshots; with `containerd.io/gc.flat`, not what those reference),
  objects labelled `containerd.io/gc.root`, blobs and snapshots whose `containerd.io/gc.expire` is still ahead;
* references: `containerd.io/gc.ref.content` (alone, or followed by `.` or `/` and a name) to a blob,
  `containerd.io/gc.ref.snapshot.<snapshotter>[/name]` to a snapshot, `containerd.io/gc.ref.image[.name]` to an
  image record, a snapshot's parent;
* back references (`containerd.io/gc.bref.content`, `.snapshot.<snapshotter>`, `.image`, `.container`): the
  labelled object lives as long as the object the label names (on an image record, only once it has expired:
  an unexpired image is a root of its own, containerd 2.x `scanRoots`);
* conditional references (containerd 2.2+, `containerd.io/gc.cond.snapshot.<snapshotter>[/name]` on a blob or an
  image record, `usedat<DURATION|<key>` or `usedat>...`, several conditions `,`-separated, any one enough): the
  object references snapshot `<key>` while that snapshot's `containerd.io/gc.cond.value-usedat` time satisfies
  the condition at the inventory's time;
* expiring images (containerd 2.x): an image whose every record carries a `containerd.io/gc.expire` now past is
  no root (the collector takes it unless something references it; e.g. the extra names the transfer service
  writes with `gc.bref.image` to their image's main name and an immediate `gc.expire`).

Every blob and snapshot is a node with its on-disk size; an image's SIZE is the sum over the nodes it reaches,
each counted once. What removing a set of roots frees is the set of nodes that no remaining root reaches.
Content is shared by every containerd namespace (one blob on disk, one record per namespace): blobs that another
namespace still references are a root of their own (`other-namespaces`), so nothing promises them.
This graph is for predictions only: what is really unreferenced, containerd's own collector decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import NewType

from node_janitor.api.refs import normalize_all, normalize_or_none
from node_janitor.defaults import DEFAULT_NAMESPACE, DEFAULT_SNAPSHOTTER
from node_janitor.node.ingests import IngestEntry, Pending, pending_bytes

GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
GC_REF_IMAGE = "containerd.io/gc.ref.image"
GC_BREF_CONTENT = "containerd.io/gc.bref.content"
GC_BREF_SNAPSHOT = "containerd.io/gc.bref.snapshot."
GC_BREF_IMAGE = "containerd.io/gc.bref.image"
GC_BREF_CONTAINER = "containerd.io/gc.bref.container"
GC_ROOT = "containerd.io/gc.root"
GC_EXPIRE = "containerd.io/gc.expire"
GC_FLAT = "containerd.io/gc.flat"
GC_COND_SNAPSHOT = "containerd.io/gc.cond.snapshot"
GC_COND_VALUE_USED_AT = "containerd.io/gc.cond.value-usedat"


class NodeKind(StrEnum):
    """What a node of the reference graph (or a root of `ReferenceCounts`) stands for."""

    CONTENT = "content"  # a blob, by digest
    SNAPSHOT = "snapshot"  # a snapshot, by key
    IMAGE = "image"  # an image record, by image ID (a node of 0 bytes; a root)
    CONTAINER = "container"  # a container, by ID (no node of its own; a root)
    LEASE = "lease"  # a lease, by ID (a root)


Node = NewType("Node", str)
"""A node of the reference graph or a root, `<kind>:<id>`: made by `graph_node` (and the `*_node` helpers), read
by `node_kind`/`node_id`; no other code spells it."""

GC_ROOTS = Node("gc-roots")
"""The root of everything a `containerd.io/gc.root` label or an unexpired `gc.expire` keeps."""
OTHER_NAMESPACES = Node("other-namespaces")
"""The root of the blobs another containerd namespace keeps."""


def graph_node(kind: NodeKind, ident: str) -> Node:
    return Node(f"{kind.value}:{ident}")


def node_kind(node: Node) -> NodeKind | None:
    """The node's kind (None for the two special roots)."""
    kind, sep, _ = node.partition(":")
    return NodeKind(kind) if sep and kind in NodeKind._value2member_map_ else None


def is_node_of(node: Node, kind: NodeKind) -> bool:
    return node.startswith(kind.value + ":")


def node_id(node: Node) -> str:
    """The digest, key or ID a node names."""
    return node.partition(":")[2]


def _named(key: str, prefix: str) -> bool:
    """`key` is `prefix` itself or `prefix` followed by `.` or `/` and a name (containerd's rule)."""
    return key == prefix or (key.startswith(prefix) and key[len(prefix)] in "./")


def _snapshot_label(key: str, prefix: str, snapshotter: str) -> bool:
    """`key` is `prefix<snapshotter>` or `prefix<snapshotter>/<name>`."""
    return key.startswith(prefix) and key[len(prefix) :].split("/", 1)[0] == snapshotter


def _is_bref(key: str) -> bool:
    return key.startswith("containerd.io/gc.bref.")


_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> timedelta | None:
    """Go's `time.ParseDuration` (`90s`, `1h30m`, `-2.5m`, `0`), or None when it is not one."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if body == "0":
        return timedelta(0)
    parts = _GO_DURATION.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        return None
    return sign * timedelta(seconds=sum(float(n) * _GO_DURATION_UNITS[u] for n, u in parts))


def _used_at_holds(condition: str, since_used: timedelta) -> bool:
    """One containerd `usedat` condition (`usedat<10m`, `usedat>1h`) against the time since the snapshot's use:
    only `<` and `>` are supported, anything else never holds (containerd skips it)."""
    match = re.fullmatch(r"([^!<>=]*)(!=|<=|>=|==|[!<>=])(.*)", condition)
    if match is None or match.group(1) != "usedat":
        return False
    limit = parse_go_duration(match.group(3))
    if limit is None:
        return False
    if match.group(2) == "<":
        return since_used < limit
    if match.group(2) == ">":
        return since_used > limit
    return False


def on_disk(length: int, block_size: int) -> int:
    """What a file of `length` bytes takes on disk: whole blocks (as snapshot usage counts, st_blocks)."""
    return -(-length // block_size) * block_size if block_size > 0 else length


def parse_rfc3339(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def content_node(digest: str) -> Node:
    return graph_node(NodeKind.CONTENT, digest)


def snapshot_node(key: str) -> Node:
    return graph_node(NodeKind.SNAPSHOT, key)


def image_node(image_id: str) -> Node:
    return graph_node(NodeKind.IMAGE, image_id)


def container_node(container_id: str) -> Node:
    return graph_node(NodeKind.CONTAINER, container_id)


def lease_node(lease_id: str) -> Node:
    return graph_node(NodeKind.LEASE, lease_id)


@dataclass(frozen=True, slots=True)
class BlobEntry:
    digest: str
    size: int  # what it takes on disk: its length in whole blocks of the image file system (snapshots' unit)
    created_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    length: int = 0  # its length in bytes (what containerd reports)


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
    labels: Mapping[str, str] = field(default_factory=dict)  # its records' labels (their gc.ref.* are roots too)
    # When containerd's collector may take it: every record of it carries a valid `gc.expire` (the latest of
    # them); None when one record has none (an image record without it is a root that never expires).
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

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
    image_mounts: tuple[str, ...] = ()  # images it mounts as volumes (KEP-4639): IDs or digests, as CRI names them

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
    block_size: int = 4096  # its fundamental block size (statvfs f_frsize)

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


@dataclass(frozen=True, slots=True)
class NamespaceUsage:
    """Another containerd namespace, as far as it shares this node's content store."""

    name: str
    blobs: int  # blobs it has records of
    size: int  # their bytes (on disk)
    shared: int  # bytes of those that this namespace has too
    referenced: int  # bytes of those that it keeps (some root of its own reaches them)


@dataclass(frozen=True)
class Inventory:
    taken_at: datetime
    namespace: str = DEFAULT_NAMESPACE
    snapshotter: str = DEFAULT_SNAPSHOTTER
    images: tuple[ImageEntry, ...] = ()
    blobs: tuple[BlobEntry, ...] = ()
    snapshots: tuple[SnapshotEntry, ...] = ()
    containers: tuple[ContainerEntry, ...] = ()
    leases: tuple[LeaseEntry, ...] = ()
    file_systems: tuple[FileSystemEntry, ...] = ()
    logs: tuple[LogFileEntry, ...] = ()
    sandbox_image: str = ""
    configured_images: tuple[str, ...] = ()
    """Images the runtime's configuration pins (its sandbox image, `pinned_images`), as discovery found them
    (`runtime.discovery`): protected like CRI-pinned ones, for runtimes that do not flag them pinned (1.6)."""
    warnings: tuple[str, ...] = ()
    # Blobs of this namespace that other namespaces still reference (content is shared): digest -> namespaces.
    held_elsewhere: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    other_namespaces: tuple[NamespaceUsage, ...] = ()
    ingests: tuple[IngestEntry, ...] = ()
    """The content store's uncommitted writes (pulls in progress, interrupted ones): `node.ingests`."""

    @cached_property
    def pending(self) -> Pending:
        """What the ingests in flight will still add to the image file system (`node.ingests.pending_bytes`)."""
        return pending_bytes(self.ingests, self.taken_at)

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
        """Image ID -> the containers (any state, CRI or not) created from it or mounting it as a volume."""
        by_name = self.image_id_by_name
        users: dict[str, list[ContainerEntry]] = {}
        for container in self.containers:
            ids = (by_name.get(normalize_or_none(name) or name) for name in (container.image, *container.image_mounts))
            for image_id in dict.fromkeys(i for i in ids if i is not None):
                users.setdefault(image_id, []).append(container)
        return {k: tuple(v) for k, v in users.items()}

    def always_protected(self, image: ImageEntry) -> str | None:
        """Why no cleanup may remove `image` whatever the policy (CRI-pinned, the sandbox image), or None.
        Judged over all of the image's names: removing it removes every one of them."""
        if image.pinned:
            return "pinned by the runtime"
        if self.sandbox_image and (normalize_or_none(self.sandbox_image) or self.sandbox_image) in image.all_names:
            return "sandbox (pause) image"
        if self.configured_images and not normalize_all(self.configured_images).isdisjoint(image.all_names):
            return "pinned in the runtime's configuration"
        return None

    def last_used(self, image_id: str, remembered: Mapping[str, datetime]) -> datetime | None:
        """When a container last used the image: its containers' creation or what was remembered, the latest;
        never after the inventory was taken (a skewed clock's time in the future is clamped to it)."""
        seen = [c.created_at for c in self.image_users.get(image_id, ()) if c.created_at]
        if image_id in remembered:
            seen.append(remembered[image_id])
        return min(max(seen), self.taken_at) if seen else None

    def file_system(self, name: str) -> FileSystemEntry | None:
        """The watched file system called `name` ("imagefs", "logs"), if it was measured."""
        return next((f for f in self.file_systems if f.name == name), None)


class ReferenceGraph:
    """containerd's reference graph over blobs and snapshots (and image records), with each root's closure."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.snapshotter = inventory.snapshotter
        now = inventory.taken_at
        self.size: dict[Node, int] = {}
        edges: dict[Node, list[Node]] = {}
        back: dict[Node, list[Node]] = {}  # parent -> objects that attach themselves to it (gc.bref.*)
        self.gc_roots: set[Node] = set()
        self._image_by_name = {
            name: image.id for image in inventory.images for name in (*image.names, *image.all_names)
        }
        self._used_at = {
            snap.key: used
            for snap in inventory.snapshots
            if (used := parse_rfc3339(snap.labels.get(GC_COND_VALUE_USED_AT, ""))) is not None
        }
        for blob in inventory.blobs:
            node = self._add(content_node(blob.digest), blob.size, blob.labels, edges, back, now)
            edges[node] += self.conditional_refs(blob.labels, now)
        for snap in inventory.snapshots:
            node = self._add(snapshot_node(snap.key), snap.size, snap.labels, edges, back, now)
            if snap.parent:
                edges[node].append(snapshot_node(snap.parent))
        self.expired_images = frozenset(image.id for image in inventory.images if image.expired(now))
        for image in inventory.images:
            # An unexpired image is a root: containerd ignores its back references (they matter only to a
            # collectible object).
            expired = image.id in self.expired_images
            labels = image.labels if expired else {k: v for k, v in image.labels.items() if not _is_bref(k)}
            node = self._add(image_node(image.id), 0, labels, edges, back, now, root_labels=False)
            edges[node] += [content_node(t) for t in image.targets]
            edges[node] += self.conditional_refs(image.labels, now)
        self._edges = {n: tuple(e) for n, e in edges.items()}
        self._back = {n: tuple(e) for n, e in back.items()}

    def _add(
        self,
        node: Node,
        size: int,
        labels: Mapping[str, str],
        edges: dict[Node, list[Node]],
        back: dict[Node, list[Node]],
        now: datetime,
        *,
        root_labels: bool = True,
    ) -> Node:
        self.size[node] = size
        edges[node] = list(self.label_refs(labels))
        for parent in self.label_brefs(labels):
            back.setdefault(parent, []).append(node)
        if root_labels:
            expire = parse_rfc3339(labels[GC_EXPIRE]) if GC_EXPIRE in labels else None
            if GC_ROOT in labels or (expire is not None and expire > now):
                self.gc_roots.add(node)
        return node

    def _image_named(self, name: str) -> Node:
        image_id = self._image_by_name.get(name) or self._image_by_name.get(normalize_or_none(name) or name)
        return image_node(image_id or name)

    def label_refs(self, labels: Mapping[str, str]) -> Iterable[Node]:
        """The nodes an object's `gc.ref.*` labels point at."""
        return self._labelled(labels, GC_REF_CONTENT, GC_REF_SNAPSHOT, GC_REF_IMAGE, None)

    def label_brefs(self, labels: Mapping[str, str]) -> Iterable[Node]:
        """The nodes an object's `gc.bref.*` labels attach it to."""
        return self._labelled(labels, GC_BREF_CONTENT, GC_BREF_SNAPSHOT, GC_BREF_IMAGE, GC_BREF_CONTAINER)

    def conditional_refs(self, labels: Mapping[str, str], now: datetime) -> list[Node]:
        """The snapshots an object's `gc.cond.snapshot.*` labels reference at `now` (containerd 2.2+ `usedat`
        conditions, against each snapshot's `gc.cond.value-usedat`; an unknown or malformed condition is
        ignored, as containerd does)."""
        out = []
        for key, value in labels.items():
            if not key.startswith(GC_COND_SNAPSHOT):
                continue
            if key[len(GC_COND_SNAPSHOT) :].lstrip("./").split("/", 1)[0] != self.snapshotter:
                continue
            conditions, sep, snapshot = value.partition("|")
            used = self._used_at.get(snapshot)
            if not sep or used is None:
                continue
            if any(_used_at_holds(c, now - used) for c in conditions.split(",")):
                out.append(snapshot_node(snapshot))
        return out

    def _labelled(
        self, labels: Mapping[str, str], content: str, snapshot: str, image: str, container: str | None
    ) -> Iterable[Node]:
        for key, value in labels.items():
            if _named(key, content):
                yield content_node(value)
            elif _snapshot_label(key, snapshot, self.snapshotter):
                yield snapshot_node(value)
            elif _named(key, image):
                yield self._image_named(value)
            elif container is not None and _named(key, container):
                yield container_node(value)

    def closure(self, starts: Iterable[Node]) -> frozenset[Node]:
        """Every existing node reachable from `starts` (missing nodes are skipped, as the GC does)."""
        seen: set[Node] = set()
        stack = [n for n in starts if n in self.size]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            for n in (*self._edges.get(node, ()), *self._back.get(node, ())):
                if n in self.size and n not in seen:
                    stack.append(n)
        return frozenset(seen)

    def bytes_of(self, nodes: Iterable[Node]) -> int:
        return sum(self.size.get(n, 0) for n in nodes)

    # -- closures of the roots --------------------------------------------------------------------------
    @cached_property
    def image_closures(self) -> dict[str, frozenset[Node]]:
        return {image.id: self.closure([image_node(image.id)]) for image in self.inventory.images}

    @cached_property
    def container_closures(self) -> dict[str, frozenset[Node]]:
        out = {}
        for container in self.inventory.containers:
            starts = list(self.label_refs(container.labels))
            starts += self._back.get(container_node(container.id), ())
            if container.snapshot_key:
                starts.append(snapshot_node(container.snapshot_key))
            out[container.id] = self.closure(starts)
        return out

    def lease_closure(self, lease: LeaseEntry) -> frozenset[Node]:
        """What a lease holds: its resources and, unless it is flat (`gc.flat`), everything they reference."""
        starts: list[Node] = []
        for kind, ident in lease.resources:
            if kind == "content":
                starts.append(content_node(ident))
            elif kind == "snapshots/" + self.snapshotter:
                starts.append(snapshot_node(ident))
        if GC_FLAT in lease.labels:
            return frozenset(n for n in starts if n in self.size)
        return self.closure(starts)

    def lease_closures(self, now: datetime, *, expired: bool) -> dict[str, frozenset[Node]]:
        return {lease.id: self.lease_closure(lease) for lease in self.inventory.leases if lease.expired(now) == expired}

    @cached_property
    def live_image_closures(self) -> dict[str, frozenset[Node]]:
        """The closures of the images that are roots (not expired); an expired one is kept only by what
        references it (a live image's closure then holds it)."""
        return {k: v for k, v in self.image_closures.items() if k not in self.expired_images}

    @cached_property
    def gc_root_closure(self) -> frozenset[Node]:
        return self.closure(self.gc_roots)

    @cached_property
    def held_elsewhere(self) -> frozenset[Node]:
        """This namespace's blobs that other namespaces keep: the blobs only, as each namespace has its own
        labels (another namespace's copy of a config does not keep this namespace's snapshots)."""
        return frozenset(n for n in map(content_node, self.inventory.held_elsewhere) if n in self.size)

    def referenced(self, now: datetime) -> frozenset[Node]:
        """Nodes some image, container, unexpired lease, gc.root label or other namespace keeps: everything not
        orphaned."""
        nodes: set[Node] = set(self.gc_root_closure) | self.held_elsewhere
        for closures in (self.live_image_closures, self.container_closures, self.lease_closures(now, expired=False)):
            for closure in closures.values():
                nodes |= closure
        return frozenset(nodes)

    def orphans(self, now: datetime) -> frozenset[Node]:
        """Blobs and snapshots nothing keeps."""
        return frozenset(n for n in self.size if not is_node_of(n, NodeKind.IMAGE)) - self.referenced(now)


class ReferenceCounts:
    """How many roots reach each node, so that removing roots one by one yields exactly what each frees.

    Removing a root frees the nodes of its closure that no other root reaches; `remove()` returns them and
    updates the counts, so a planner predicts each step given every step before it.
    """

    def __init__(self, graph: ReferenceGraph, roots: Mapping[Node, frozenset[Node]]) -> None:
        self.graph = graph
        self.roots = dict(roots)
        self.count: dict[Node, int] = {}
        for closure in self.roots.values():
            for node in closure:
                self.count[node] = self.count.get(node, 0) + 1

    def copy(self) -> ReferenceCounts:
        other = ReferenceCounts(self.graph, {})
        other.roots, other.count = dict(self.roots), dict(self.count)
        return other

    def would_free(self, root: Node) -> frozenset[Node]:
        return frozenset(n for n in self.roots.get(root, ()) if self.count[n] == 1)

    def remove(self, root: Node) -> frozenset[Node]:
        closure = self.roots.pop(root, frozenset())
        freed = []
        for node in closure:
            self.count[node] -= 1
            if self.count[node] == 0:
                freed.append(node)
                del self.count[node]
        return frozenset(freed)


def all_roots(inventory: Inventory, now: datetime) -> dict[Node, frozenset[Node]]:
    """Every root of the store: each image, container and lease (by its node), `GC_ROOTS` and `OTHER_NAMESPACES`."""
    graph = inventory.graph
    roots: dict[Node, frozenset[Node]] = {image_node(k): v for k, v in graph.live_image_closures.items()}
    roots.update({container_node(k): v for k, v in graph.container_closures.items()})
    roots.update({lease_node(k): v for k, v in graph.lease_closures(now, expired=False).items()})
    roots.update({lease_node(k): v for k, v in graph.lease_closures(now, expired=True).items()})
    roots[GC_ROOTS] = graph.gc_root_closure
    roots[OTHER_NAMESPACES] = graph.held_elsewhere
    return roots
