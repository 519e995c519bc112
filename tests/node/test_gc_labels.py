"""The reference graph follows every label containerd's collector knows (1.6 metadata/gc.go and later)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from node_janitor.node.inventory import (
    BlobEntry,
    ContainerEntry,
    ImageEntry,
    Inventory,
    LeaseEntry,
    SnapshotEntry,
    content_node,
    snapshot_node,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
M, C, L = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64


def _orphans(*, blobs=(), snapshots=(), images=(), containers=(), leases=()) -> set[str]:  # type: ignore[no-untyped-def]
    inventory = Inventory(
        taken_at=NOW, blobs=tuple(blobs), snapshots=tuple(snapshots), images=tuple(images),
        containers=tuple(containers), leases=tuple(leases),
    )  # fmt: skip
    return set(inventory.graph.orphans(NOW))


def test_content_ref_names_need_a_separator() -> None:
    blobs = [
        BlobEntry(M, 10, labels={"containerd.io/gc.ref.content.config": C, "containerd.io/gc.ref.contentx": L}),
        BlobEntry(C, 10),
        BlobEntry(L, 10),
    ]
    image = ImageEntry(id=C, names=("a",), targets=(M,))
    assert _orphans(blobs=blobs, images=[image]) == {content_node(L)}


def test_image_record_labels_are_roots() -> None:
    image = ImageEntry(id=C, names=("a",), targets=(M,), labels={"containerd.io/gc.ref.content/extra": L})
    assert _orphans(blobs=[BlobEntry(M, 1), BlobEntry(L, 1)], images=[image]) == set()


def test_back_references_keep_what_attaches_to_a_live_object() -> None:
    snaps = [
        SnapshotEntry("rw", labels={}),
        SnapshotEntry("side", labels={"containerd.io/gc.bref.snapshot.overlayfs": "rw"}),
        SnapshotEntry("lost", labels={"containerd.io/gc.bref.snapshot.overlayfs": "gone"}),
    ]
    blobs = [BlobEntry(L, 1, labels={"containerd.io/gc.bref.container": "c1"})]
    container = ContainerEntry(id="c1", image="x", snapshot_key="rw")
    assert _orphans(blobs=blobs, snapshots=snaps, containers=[container]) == {snapshot_node("lost")}


def test_expire_on_an_object_keeps_it_until_then() -> None:
    later, earlier = (NOW + timedelta(hours=1)).isoformat(), (NOW - timedelta(hours=1)).isoformat()
    blobs = [
        BlobEntry(M, 1, labels={"containerd.io/gc.expire": later}),
        BlobEntry(C, 1, labels={"containerd.io/gc.expire": earlier}),
    ]
    assert _orphans(blobs=blobs) == {content_node(C)}


def test_a_flat_lease_holds_only_what_it_names() -> None:
    blobs = [BlobEntry(M, 1, labels={"containerd.io/gc.ref.content.l.0": L}), BlobEntry(L, 1)]
    flat = LeaseEntry("p", labels={"containerd.io/gc.flat": "1"}, resources=(("content", M),))
    assert _orphans(blobs=blobs, leases=[flat]) == {content_node(L)}
    deep = LeaseEntry("p", resources=(("content", M),))
    assert _orphans(blobs=blobs, leases=[deep]) == set()


def test_an_object_attached_to_an_image_by_name_lives_with_it() -> None:
    image = ImageEntry(id=C, names=("docker.io/library/app:1",), targets=(M,))
    blobs = [
        BlobEntry(M, 1),
        BlobEntry(L, 1, labels={"containerd.io/gc.bref.image": "app:1"}),  # the familiar name of the record
        BlobEntry(C, 1, labels={"containerd.io/gc.bref.image": "other:1"}),
    ]
    assert _orphans(blobs=blobs, images=[image]) == {content_node(C)}
