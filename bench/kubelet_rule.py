"""The kubelet's image GC rule (k8s.io/kubernetes v1.32.4, pkg/kubelet/images/image_gc_manager.go), re-implemented
to compare with node-janitor's plan on the same inventory, and the store after a set of removals.

The rule, as `GarbageCollect` / `imagesInEvictionOrder` / `freeSpace` run it:
- usage = 100 - int(available * 100 / capacity); nothing happens unless usage >= imageGCHighThresholdPercent;
- bytesToFree = capacity * (100 - imageGCLowThresholdPercent) / 100 - available;
- candidates: every image not used by a container and not pinned, sorted by lastUsed (the zero time for an
  image no container used while the kubelet watched), then by firstDetected;
- skipped: images whose lastUsed is not before freeTime, and images detected less than imageMinimumGCAge ago;
- each removed image counts its CRI `size` (containerd 1.6: its content, i.e. the compressed layers, config
  and manifest, shared layers included) until the count reaches bytesToFree.
Go's sort is not stable; equal keys are ordered by image ID here, so runs are reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from node_janitor.node.inventory import Inventory, ReferenceCounts, all_roots, content_node, image_node, snapshot_node

ZERO_TIME = datetime.min  # Go's zero time.Time: before every real time


@dataclass(frozen=True)
class KubeletImage:
    id: str
    size: int  # CRI's size
    first_detected: datetime
    last_used: datetime | None = None  # None: never seen in use (Go's zero time)
    pinned: bool = False
    in_use: bool = False


@dataclass(frozen=True)
class KubeletPass:
    triggered: bool  # usage >= high
    usage_percent: int
    bytes_to_free: int
    picks: tuple[str, ...]  # image IDs, in removal order
    counted: int  # the sum of the picks' CRI sizes (what the kubelet believes it freed)


def kubelet_gc_pass(
    images: Sequence[KubeletImage],
    capacity: int,
    available: int,
    high_percent: int,
    low_percent: int,
    min_age: timedelta,
    free_time: datetime,
) -> KubeletPass:
    """One `GarbageCollect`: what the kubelet removes from `images` on a disk of `capacity` with `available`."""
    available = min(available, capacity)
    usage = 100 - available * 100 // capacity
    if usage < high_percent:
        return KubeletPass(False, usage, 0, (), 0)
    bytes_to_free = capacity * (100 - low_percent) // 100 - available
    naive = free_time.replace(tzinfo=None)

    def key(image: KubeletImage) -> tuple[datetime, datetime, str]:
        used = image.last_used.replace(tzinfo=None) if image.last_used else ZERO_TIME
        return used, image.first_detected.replace(tzinfo=None), image.id

    picks: list[str] = []
    counted = 0
    for image in sorted((i for i in images if not i.in_use and not i.pinned), key=key):
        if image.last_used is not None and image.last_used.replace(tzinfo=None) >= naive:
            continue
        if naive - image.first_detected.replace(tzinfo=None) < min_age:
            continue
        picks.append(image.id)
        counted += image.size
        if counted >= bytes_to_free:
            break
    return KubeletPass(True, usage, bytes_to_free, tuple(picks), counted)


def kubelet_view(inventory: Inventory, last_used: Mapping[str, datetime], now: datetime) -> list[KubeletImage]:
    """The kubelet's records of `inventory`'s images: firstDetected = arrival, lastUsed = what was remembered."""
    users = inventory.image_users
    return [
        KubeletImage(
            id=image.id,
            size=image.cri_size,
            first_detected=image.created_at or now,
            last_used=last_used.get(image.id),
            pinned=image.pinned,
            in_use=bool(users.get(image.id)),
        )
        for image in inventory.images
    ]


def remove_images(inventory: Inventory, image_ids: Iterable[str], now: datetime) -> tuple[Inventory, int]:
    """The store once `image_ids` are removed and containerd's GC has run: what no remaining root reaches goes,
    and the image file system gains its bytes. Returns the new inventory and the bytes freed."""
    ids = set(image_ids)
    counts = ReferenceCounts(inventory.graph, all_roots(inventory, now))
    freed_nodes: set[str] = set()
    for image_id in ids:
        freed_nodes |= counts.remove(image_node(image_id))
    freed = inventory.graph.bytes_of(freed_nodes)
    file_systems = tuple(
        dataclasses.replace(fs, used=fs.used - freed, available=fs.available + freed) if fs.name == "imagefs" else fs
        for fs in inventory.file_systems
    )
    after = dataclasses.replace(
        inventory,
        images=tuple(i for i in inventory.images if i.id not in ids),
        blobs=tuple(b for b in inventory.blobs if content_node(b.digest) not in freed_nodes),
        snapshots=tuple(s for s in inventory.snapshots if snapshot_node(s.key) not in freed_nodes),
        file_systems=file_systems,
    )
    return after, freed
