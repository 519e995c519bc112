"""`docker system df -v` for a containerd node: exact, dedup-aware numbers built from an Inventory.

Definitions (all bytes are on-disk sizes measured by containerd: blob sizes and snapshot usage):

* Images: SIZE is every blob and snapshot the images reach, each counted once; an image is ACTIVE when any
  container (CRI or not, running or exited) was created from it; RECLAIMABLE is what removing every inactive,
  unprotected image would really free (nodes that active images, containers, leases or gc.root labels still
  reach are not counted).
* Containers: their read-write snapshots; RECLAIMABLE is what removing the exited ones frees.
* Snapshots / Content: every snapshot / blob; ACTIVE ones are referenced; RECLAIMABLE is the orphans: not
  reached by any image, container, unexpired lease or gc.root label (expired leases do not count).
* Other namespaces: content is shared by every containerd namespace (Docker's `moby`, buildkit...): blobs another
  namespace keeps are shared, never reclaimable here; each other namespace is listed with what it holds.
* Units: snapshot usage is what containerd measures, allocated disk blocks; blob sizes are their lengths, which
  on disk take whole blocks (under one block more per blob: within the exactness tests' slack).
* Logs: CRI log files; ACTIVE files belong to a container that has not exited; RECLAIMABLE is what the log rules
  would remove now (`logs.plan_log_rules` and the node budget): orphaned pods' directories past their grace, files
  beyond maxFiles, leftovers, and the oldest files over nodeBudget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from node_janitor.api.policy import LogsPolicy
from node_janitor.node.inventory import (
    FileSystemEntry,
    Inventory,
    NamespaceUsage,
    Node,
    ReferenceCounts,
    all_roots,
    container_node,
    content_node,
    image_node,
    snapshot_node,
)
from node_janitor.node.logs import (
    LogReason,
    LogSettings,
    LogTree,
    budget_excess,
    freed_by,
    plan_log_reclaim,
    plan_log_rules,
)
from node_janitor.node.plan import kept_by

ROW_TYPES = ("images", "containers", "snapshots", "content", "logs")


@dataclass(frozen=True, slots=True)
class UsageRow:
    total: int
    active: int
    size: int
    reclaimable: int

    def to_dict(self) -> dict[str, int]:
        return {"total": self.total, "active": self.active, "size": self.size, "reclaimable": self.reclaimable}


@dataclass(frozen=True, slots=True)
class ImageUsage:
    id: str
    refs: tuple[str, ...]
    size: int  # blobs + unpacked snapshots it reaches
    shared_size: int  # of that, what other images also reach
    cri_size: int  # what CRI reports (compressed layers)
    containers: int
    created_at: datetime | None
    last_used: datetime | None
    pinned: bool

    @property
    def unique_size(self) -> int:
        return self.size - self.shared_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "refs": list(self.refs),
            "size": self.size,
            "shared_size": self.shared_size,
            "unique_size": self.unique_size,
            "cri_size": self.cri_size,
            "containers": self.containers,
            "created": self.created_at.isoformat() if self.created_at else None,
            "last_used": self.last_used.isoformat() if self.last_used else None,
            "pinned": self.pinned,
        }


@dataclass(frozen=True)
class DiskReport:
    rows: Mapping[str, UsageRow]
    images: tuple[ImageUsage, ...]
    file_systems: tuple[FileSystemEntry, ...]
    warnings: tuple[str, ...] = ()
    other_namespaces: tuple[NamespaceUsage, ...] = ()

    def to_json(self, *, verbose: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {name: self.rows[name].to_dict() for name in ROW_TYPES}
        doc["file_systems"] = [
            {
                "name": fs.name,
                "path": fs.path,
                "size": fs.size,
                "used": fs.used,
                "available": fs.available,
                "used_percent": round(fs.used_percent, 2),
                "inodes_used_percent": round(fs.inodes_used_percent, 2),
            }
            for fs in self.file_systems
        ]
        doc["other_namespaces"] = [
            {"name": n.name, "blobs": n.blobs, "size": n.size, "shared": n.shared, "referenced": n.referenced}
            for n in self.other_namespaces
        ]
        if verbose:
            doc["image_details"] = [image.to_dict() for image in self.images]
        if self.warnings:
            doc["warnings"] = list(self.warnings)
        return doc


def build_disk_report(
    inventory: Inventory,
    now: datetime,
    last_used: Mapping[str, datetime] | None = None,
    logs_policy: LogsPolicy | None = None,
    keep: Sequence[str] = (),
) -> DiskReport:
    """The df numbers. `keep`: the policy's `images.keep` patterns (kept images are not reclaimable).

    One row per kind, each by its own function: `image_usages` and `image_row`, `container_row`, `orphan_rows`
    (snapshots and content), `logs_row`; the image details sorted largest first."""
    roots = all_roots(inventory, now)
    images = image_usages(inventory, last_used or {})
    snapshot_row, content_row = orphan_rows(inventory, now)
    rows = {
        "images": image_row(inventory, images, roots, keep),
        "containers": container_row(inventory, roots),
        "snapshots": snapshot_row,
        "content": content_row,
        "logs": logs_row(inventory, now, logs_policy or LogsPolicy()),
    }
    return DiskReport(
        rows=rows,
        images=tuple(sorted(images, key=lambda i: (-i.size, i.id))),
        file_systems=inventory.file_systems,
        warnings=inventory.warnings,
        other_namespaces=inventory.other_namespaces,
    )


def image_usages(inventory: Inventory, last_used: Mapping[str, datetime]) -> list[ImageUsage]:
    """Each image's size (every node it reaches, once) and shared size (the nodes another image or another
    namespace reaches too), in the inventory's order."""
    graph = inventory.graph
    users = inventory.image_users
    closures = graph.image_closures
    reach_count = ReferenceCounts(graph, {image_node(k): v for k, v in closures.items()}).count  # images per node
    elsewhere = graph.held_elsewhere  # what other namespaces keep is shared too
    return [
        ImageUsage(
            id=image.id,
            refs=image.refs,
            size=graph.bytes_of(closures[image.id]),
            shared_size=graph.bytes_of(n for n in closures[image.id] if reach_count[n] > 1 or n in elsewhere),
            cri_size=image.cri_size,
            containers=len(users.get(image.id, ())),
            created_at=image.created_at,
            last_used=inventory.last_used(image.id, last_used),
            pinned=inventory.always_protected(image) is not None,
        )
        for image in inventory.images
    ]


def image_row(
    inventory: Inventory, images: Sequence[ImageUsage], roots: Mapping[Node, frozenset[Node]], keep: Sequence[str]
) -> UsageRow:
    """Images: reclaimable is what removing every unused, unpinned, unkept image frees, one after the other
    (layers an active image shares are not counted)."""
    graph = inventory.graph
    closures = graph.image_closures
    all_image_nodes: frozenset[Node] = frozenset().union(*closures.values()) if closures else frozenset()
    counts = ReferenceCounts(graph, roots)
    kept = {image.id for image in inventory.images if kept_by(image, keep)}
    freed = 0
    for usage in images:
        if usage.containers == 0 and not usage.pinned and usage.id not in kept:
            freed += graph.bytes_of(counts.remove(image_node(usage.id)))
    return UsageRow(
        total=len(images),
        active=sum(1 for i in images if i.containers),
        size=graph.bytes_of(all_image_nodes),
        reclaimable=freed,
    )


def container_row(inventory: Inventory, roots: Mapping[Node, frozenset[Node]]) -> UsageRow:
    """Containers: their read-write layers; reclaimable is what removing the exited ones frees."""
    graph = inventory.graph
    rw = {c.id: graph.size.get(snapshot_node(c.snapshot_key), 0) if c.snapshot_key else 0 for c in inventory.containers}
    counts = ReferenceCounts(graph, roots)
    freed = 0
    for c in inventory.containers:
        if c.state == "EXITED":
            freed += graph.bytes_of(counts.remove(container_node(c.id)))
    return UsageRow(
        total=len(inventory.containers),
        active=sum(1 for c in inventory.containers if c.running),
        size=sum(rw.values()),
        reclaimable=freed,
    )


def orphan_rows(inventory: Inventory, now: datetime) -> tuple[UsageRow, UsageRow]:
    """Snapshots and content: what nothing references (orphans) is reclaimable."""
    graph = inventory.graph
    orphans = graph.orphans(now)

    def row(nodes: Sequence[Node]) -> UsageRow:
        return UsageRow(
            total=len(nodes),
            active=sum(1 for n in nodes if n not in orphans),
            size=graph.bytes_of(nodes),
            reclaimable=graph.bytes_of(n for n in nodes if n in orphans),
        )

    snapshots = row([snapshot_node(s.key) for s in inventory.snapshots])
    return snapshots, row([content_node(b.digest) for b in inventory.blobs])


def logs_row(inventory: Inventory, now: datetime, policy: LogsPolicy) -> UsageRow:
    """CRI log files: active are the live ones; reclaimable is what the log rules would free now."""
    return UsageRow(
        total=len(inventory.logs),
        active=sum(1 for f in inventory.logs if f.live),
        size=sum(f.size for f in inventory.logs),
        reclaimable=logs_reclaimable(inventory, now, policy),
    )


def logs_reclaimable(inventory: Inventory, now: datetime, policy: LogsPolicy) -> int:
    """Bytes the log rules would free now: orphans past their grace, beyond maxFiles, leftovers, over budget."""
    if not policy.enabled:
        return 0
    settings = LogSettings.from_policy(policy)
    tree = LogTree.from_files("", inventory.logs)
    planned = plan_log_rules(tree, settings, now)
    planned += plan_log_reclaim(
        tree, budget_excess(tree, planned, settings.node_budget), LogReason.NODE_BUDGET, now, planned=planned
    )
    return freed_by(planned)
