"""Accounting over hand-built inventories shaped like containerd's GC label graph."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from node_janitor.node.inventory import (
    BlobEntry,
    ContainerEntry,
    ImageEntry,
    Inventory,
    LeaseEntry,
    SnapshotEntry,
)
from node_janitor.node.usage import build_disk_report

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SNAP = "containerd.io/gc.ref.snapshot.overlayfs"


def _image(name: str, layers: list[tuple[str, int, int]], config_size: int = 100) -> tuple[ImageEntry, list, list]:
    """An image whose layers are (name, blob size, snapshot size); snapshots chain by layer order."""
    blobs, snaps = [], []
    parent = ""
    for layer, blob_size, snap_size in layers:
        blobs.append(BlobEntry(f"sha256:blob-{layer}", blob_size))
        snaps.append(SnapshotEntry(f"chain-{parent}-{layer}" if parent else f"chain-{layer}", parent, size=snap_size))
        parent = snaps[-1].key
    config = BlobEntry(f"sha256:config-{name}", config_size, labels={SNAP: parent})
    manifest_labels = {"containerd.io/gc.ref.content.config": config.digest}
    manifest_labels.update({f"containerd.io/gc.ref.content.l.{i}": b.digest for i, b in enumerate(blobs)})
    manifest = BlobEntry(f"sha256:manifest-{name}", 10, labels=manifest_labels)
    image = ImageEntry(
        id=config.digest,
        names=(f"example.com/{name}:v1", config.digest),
        targets=(manifest.digest,),
        repo_tags=(f"example.com/{name}:v1",),
    )
    return image, [*blobs, config, manifest], snaps


def _dedupe(items):
    return tuple({getattr(i, "digest", None) or i.key: i for i in items}.values())


def test_shared_base_counted_once_and_active_image_keeps_shared_layers():
    a, a_blobs, a_snaps = _image("a", [("base", 1000, 3000), ("a", 200, 500)])
    b, b_blobs, b_snaps = _image("b", [("base", 1000, 3000), ("b", 300, 700)])
    container = ContainerEntry("c1", image="example.com/a:v1", snapshot_key="rw-c1", state="EXITED")
    inv = Inventory(
        taken_at=NOW,
        images=(a, b),
        blobs=_dedupe(a_blobs + b_blobs),
        snapshots=_dedupe([*a_snaps, *b_snaps, SnapshotEntry("rw-c1", a_snaps[-1].key, kind="ACTIVE", size=50)]),
        containers=(container,),
    )
    report = build_disk_report(inv, NOW)
    details = {i.id: i for i in report.images}
    a_size = 1000 + 3000 + 200 + 500 + 100 + 10
    b_size = 1000 + 3000 + 300 + 700 + 100 + 10
    assert details[a.id].size == a_size
    assert details[a.id].shared_size == 4000
    assert details[b.id].unique_size == b_size - 4000
    assert details[a.id].containers == 1  # exited container still makes it active
    rows = report.rows
    assert rows["images"].size == a_size + b_size - 4000  # the base once
    assert rows["images"].active == 1
    assert rows["images"].reclaimable == b_size - 4000  # b's shared base stays for a
    assert rows["containers"].size == 50 and rows["containers"].reclaimable == 50
    assert rows["snapshots"].reclaimable == 0 and rows["content"].reclaimable == 0


def test_orphans_are_what_nothing_live_references():
    a, a_blobs, a_snaps = _image("a", [("base", 1000, 3000)])
    leaked = SnapshotEntry("leaked", size=777)
    held = SnapshotEntry("held", size=111)
    pinned = BlobEntry("sha256:pinned", 222, labels={"containerd.io/gc.root": "x"})
    stray = BlobEntry("sha256:stray", 333)
    inv = Inventory(
        taken_at=NOW,
        images=(a,),
        blobs=(*a_blobs, pinned, stray),
        snapshots=(*a_snaps, leaked, held),
        leases=(
            LeaseEntry("old", expires_at=NOW - timedelta(hours=1), resources=(("snapshots/overlayfs", "leaked"),)),
            LeaseEntry("live", expires_at=NOW + timedelta(hours=1), resources=(("snapshots/overlayfs", "held"),)),
        ),
    )
    rows = build_disk_report(inv, NOW).rows
    assert rows["snapshots"].reclaimable == 777
    assert rows["snapshots"].active == 2
    assert rows["content"].reclaimable == 333
    # The only image is inactive: all of it is reclaimable, orphans are a separate matter.
    assert rows["images"].reclaimable == 1000 + 3000 + 100 + 10


def test_sandbox_and_pinned_images_are_not_reclaimable():
    pause, p_blobs, p_snaps = _image("pause", [("pause", 100, 200)])
    inv = Inventory(
        taken_at=NOW,
        images=(pause,),
        blobs=tuple(p_blobs),
        snapshots=tuple(p_snaps),
        sandbox_image="example.com/pause:v1",
    )
    report = build_disk_report(inv, NOW)
    assert report.rows["images"].reclaimable == 0
    assert report.images[0].pinned
    assert report.to_json(verbose=True)["image_details"][0]["unique_size"] == report.images[0].size
