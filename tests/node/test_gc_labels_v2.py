"""The reference graph follows what containerd 2.2/2.3's collector added (core/metadata/gc.go): conditional snapshot
references (`gc.cond.snapshot.*` against `gc.cond.value-usedat`), `gc.expire` on images, and back references on
image records (only an expired image's count), labelled as containerd 2.3 labels them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.node.collect import group_images
from node_janitor.node.inventory import (
    BlobEntry,
    ImageEntry,
    Inventory,
    ReferenceCounts,
    SnapshotEntry,
    all_roots,
    content_node,
    image_node,
    parse_go_duration,
    snapshot_node,
)
from node_janitor.runtime.records import CriImage, Descriptor, ImageRecord

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
M, C, L, X, Y = ("sha256:" + d * 64 for d in "12345")
COND = "containerd.io/gc.cond.snapshot.overlayfs"
USED = "containerd.io/gc.cond.value-usedat"
EXPIRE = "containerd.io/gc.expire"
BREF_IMAGE = "containerd.io/gc.bref.image"


def _stamp(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def _inventory(*, blobs=(), snapshots=(), images=()) -> Inventory:  # type: ignore[no-untyped-def]
    return Inventory(taken_at=NOW, blobs=tuple(blobs), snapshots=tuple(snapshots), images=tuple(images))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("1h30m", 5400), ("1.5h", 5400), ("90s", 90), ("500ms", 0.5), ("-2m", -120), ("0", 0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "1x", "h", "m10", "1h 2m", "--1m"])
def test_not_go_durations(text: str) -> None:
    assert parse_go_duration(text) is None


def test_a_conditional_reference_holds_while_its_condition_does() -> None:
    snapshots = [
        SnapshotEntry("recent", labels={USED: _stamp(timedelta(minutes=5))}),
        SnapshotEntry("stale", labels={USED: _stamp(timedelta(minutes=20))}),
        SnapshotEntry("never-used"),
        SnapshotEntry("old", labels={USED: _stamp(timedelta(hours=2))}),
        SnapshotEntry("unsupported-op", labels={USED: _stamp(timedelta(minutes=1))}),
        SnapshotEntry("other-snapshotter", labels={USED: _stamp(timedelta(minutes=1))}),
        SnapshotEntry("from-image", labels={USED: _stamp(timedelta(minutes=1))}),
    ]
    blob_labels = {
        COND: "usedat<10m|recent",
        COND + "/b": "usedat<10m|stale",
        COND + "/c": "usedat<10m|never-used",
        COND + "/d": "usedat<1m,usedat>1h|old",  # several conditions: any one is enough
        COND + "/e": "usedat<=10m|unsupported-op",  # containerd knows only < and >
        "containerd.io/gc.cond.snapshot.native": "usedat<10m|other-snapshotter",
        COND + "/f": "usedat<10m",  # no key: ignored
    }
    image = ImageEntry(id=C, names=("a:1",), targets=(M,), labels={COND: "usedat<1h|from-image"})
    inventory = _inventory(blobs=[BlobEntry(M, 1, labels=blob_labels)], snapshots=snapshots, images=[image])
    assert set(inventory.graph.orphans(NOW)) == {
        snapshot_node(k) for k in ("stale", "never-used", "unsupported-op", "other-snapshotter")
    }
    # Seen later, the five-minute-old use is past ten minutes: the reference no longer holds.
    later = Inventory(
        taken_at=NOW + timedelta(minutes=6), blobs=inventory.blobs, snapshots=inventory.snapshots, images=(image,)
    )
    assert snapshot_node("recent") in later.graph.orphans(later.taken_at)


def _pulled(image_id: str, manifest: str, layer: str, **labels: str) -> tuple[ImageEntry, list[BlobEntry]]:
    entry = ImageEntry(id=image_id, names=(image_id,), targets=(manifest,), labels=labels)
    blobs = [
        BlobEntry(manifest, 1, labels={"containerd.io/gc.ref.content.config": image_id,
                                       "containerd.io/gc.ref.content.l.0": layer}),
        BlobEntry(image_id, 1),
        BlobEntry(layer, 100),
    ]  # fmt: skip
    return entry, blobs


def test_an_expired_image_lives_only_through_the_image_it_is_attached_to() -> None:
    main = ImageEntry(id=C, names=("example.com/app:1",), targets=(M,))
    main_blobs = [BlobEntry(M, 1, labels={"containerd.io/gc.ref.content.config": C}), BlobEntry(C, 1)]
    past = _stamp(timedelta(seconds=1))
    extra, extra_blobs = _pulled(X, L, "sha256:" + "6" * 64, **{BREF_IMAGE: "example.com/app:1", EXPIRE: past})
    extra = ImageEntry(id=X, names=("sha256:x",), targets=(L,), labels=extra.labels, expires_at=NOW - timedelta(1))
    inventory = _inventory(blobs=[*main_blobs, *extra_blobs], images=[main, extra])
    graph = inventory.graph

    assert set(graph.orphans(NOW)) == set()  # kept: the main image reaches it
    roots = all_roots(inventory, NOW)
    assert image_node(X) not in roots  # expired: no root of its own
    counts = ReferenceCounts(graph, roots)
    freed = counts.remove(image_node(C))
    assert content_node("sha256:" + "6" * 64) in freed  # removing the main image frees the expired one's too

    # Alone, an expired image is garbage: containerd's next collection takes it.
    alone = _inventory(blobs=extra_blobs, images=[extra])
    assert content_node("sha256:" + "6" * 64) in alone.graph.orphans(NOW)


def test_an_unexpired_image_s_back_reference_counts_for_nothing() -> None:
    main, main_blobs = _pulled(C, M, "sha256:" + "7" * 64)
    main = ImageEntry(id=C, names=("example.com/app:1",), targets=(M,))
    other, other_blobs = _pulled(Y, L, "sha256:" + "8" * 64, **{BREF_IMAGE: "example.com/app:1"})
    inventory = _inventory(blobs=[*main_blobs, *other_blobs], images=[main, other])
    counts = ReferenceCounts(inventory.graph, all_roots(inventory, NOW))
    # A root of its own (containerd ignores its bref): removing it frees its layer, the main image does not hold it.
    assert content_node("sha256:" + "8" * 64) in counts.would_free(image_node(Y))
    assert content_node("sha256:" + "8" * 64) not in inventory.graph.image_closures[C]


def test_an_image_expires_when_every_record_of_it_does() -> None:
    target = Descriptor("application/vnd.oci.image.manifest.v1+json", M, 10)  # its blob not listed: grouped by name

    def record(name: str, **labels: str) -> ImageRecord:
        return ImageRecord(name, target, labels, NOW, NOW)

    cri: list[CriImage] = []
    first, second = _stamp(timedelta(minutes=2)), _stamp(timedelta(minutes=1))
    expired = group_images(cri, [record("a:1", **{EXPIRE: first}), record("a:1@x", **{EXPIRE: second})], {})
    assert [e.expires_at for e in expired] == [NOW - timedelta(minutes=1)]
    mixed = group_images(cri, [record("b:1", **{EXPIRE: first}), record("b:2")], {})
    assert [e.expires_at for e in mixed] == [None]
    bad = group_images(cri, [record("c:1", **{EXPIRE: "tomorrow"})], {})
    assert [e.expires_at for e in bad] == [None]  # containerd ignores what it cannot parse: a root
