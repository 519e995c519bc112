"""images.selection: which removable images pressure takes, LeastRecentlyUsed (the kubelet's order) or
FewestImages (dedup-aware: the fewest removals that free what is needed). Small stores with shared layers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.api import CleanupPolicy
from node_janitor.node.inventory import BlobEntry, ContainerEntry, ImageEntry, Inventory, SnapshotEntry
from node_janitor.node.plan import FEWEST_IMAGES, ActionKind, PlanSettings, Reason, Target, plan_cleanup

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SNAP = "containerd.io/gc.ref.snapshot.overlayfs"
FEWEST = PlanSettings(selection=FEWEST_IMAGES)


class Store:
    """Images over named layers: a layer named twice is one blob and one snapshot, shared (sizes in bytes:
    the blob as given, its snapshot twice that)."""

    def __init__(self) -> None:
        self.blobs: dict[str, BlobEntry] = {}
        self.snaps: dict[str, SnapshotEntry] = {}
        self.images: list[ImageEntry] = []
        self.containers: list[ContainerEntry] = []

    def image(self, name: str, layers: list[tuple[str, int]], *, idle_days: int = 30, tagged: bool = True) -> str:
        parent = ""
        digests = []
        for layer, size in layers:
            digest = f"sha256:l-{layer}"
            self.blobs.setdefault(digest, BlobEntry(digest, size))
            key = f"{parent}/{layer}"
            self.snaps.setdefault(key, SnapshotEntry(key, parent, size=2 * size, inodes=1))
            parent = key
            digests.append(digest)
        config = BlobEntry(f"sha256:c-{name}", 0, labels={SNAP: parent})
        labels = {"containerd.io/gc.ref.content.config": config.digest}
        labels |= {f"containerd.io/gc.ref.content.l.{i}": d for i, d in enumerate(digests)}
        manifest = BlobEntry(f"sha256:m-{name}", 0, labels=labels)
        self.blobs[config.digest], self.blobs[manifest.digest] = config, manifest
        ref = f"r/{name}:1"
        self.images.append(
            ImageEntry(
                config.digest,
                (ref,) if tagged else (config.digest,),
                (manifest.digest,),
                repo_tags=(ref,) if tagged else (),
                created_at=NOW - timedelta(days=idle_days),
            )
        )
        return config.digest

    def use(self, image_id: str) -> None:
        self.containers.append(ContainerEntry(f"ctr-{image_id}", image=image_id, state="RUNNING"))

    def inventory(self) -> Inventory:
        return Inventory(
            taken_at=NOW,
            images=tuple(self.images),
            blobs=tuple(self.blobs.values()),
            snapshots=tuple(self.snaps.values()),
            containers=tuple(self.containers),
        )


def removed(plan):  # type: ignore[no-untyped-def]
    return [a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE]


def test_fewest_images_takes_one_large_image_where_lru_takes_the_old_small_ones() -> None:
    s = Store()
    small = [s.image(f"small{i}", [(f"s{i}", 10)], idle_days=60 + i) for i in range(4)]  # 30 bytes each
    big = s.image("big", [("b", 40)], idle_days=1)  # 120 bytes
    inv = s.inventory()
    lru = plan_cleanup(inv, PlanSettings(), NOW, target=Target(bytes=100))
    fewest = plan_cleanup(inv, FEWEST, NOW, target=Target(bytes=100))
    assert removed(lru) == [small[3], small[2], small[1], small[0]]  # 120 bytes in four removals
    assert removed(fewest) == [big] and fewest.planned_bytes == 120
    assert [a.reason for a in fewest.actions] == [Reason.FEWEST_IMAGES]


def test_the_last_pick_is_the_smallest_image_that_suffices() -> None:
    s = Store()
    ids = {size: s.image(f"i{size}", [(f"l{size}", size)]) for size in (50, 20, 12, 9)}  # frees 3 x size
    plan = plan_cleanup(s.inventory(), FEWEST, NOW, target=Target(bytes=150 + 30))
    # 150 from the largest, then 30 short: 12 (36 bytes) suffices and is the smallest that does; 20 overshoots more.
    assert removed(plan) == [ids[50], ids[12]] and plan.planned_bytes == 186


def test_a_shared_base_counts_once_its_last_remaining_user_goes() -> None:
    s = Store()
    a = s.image("a", [("base", 30), ("a", 1)], idle_days=90)
    b = s.image("b", [("base", 30), ("b", 1)], idle_days=80)
    c = s.image("c", [("c", 20)], idle_days=10)  # 60 bytes, alone the largest single gain
    inv = s.inventory()
    # a and b free 3 bytes each alone, 96 together; c frees 60. 96 needed: a and b, and c is not needed.
    plan = plan_cleanup(inv, FEWEST, NOW, target=Target(bytes=96))
    assert sorted(removed(plan)) == sorted([a, b]) and plan.planned_bytes == 96
    assert c not in removed(plan)
    # Each action's bytes are what it frees given the ones before it (the base with the second).
    assert sorted(x.bytes for x in plan.actions) == [3, 93]


def test_a_base_a_running_container_holds_is_never_counted() -> None:
    s = Store()
    running = s.image("running", [("base", 100), ("r", 1)])
    s.use(running)
    others = [s.image(f"o{i}", [("base", 100), (f"o{i}", 5 + i)]) for i in range(3)]
    plan = plan_cleanup(s.inventory(), FEWEST, NOW, target=Target(bytes=10**6))
    assert sorted(removed(plan)) == sorted(others) and running not in removed(plan)
    assert plan.planned_bytes == sum(3 * (5 + i) for i in range(3))  # app layers only: the base stays


def test_dangling_images_still_go_first() -> None:
    s = Store()
    dangling = s.image("old", [("d", 5)], tagged=False)
    big = s.image("big", [("b", 100)])
    plan = plan_cleanup(s.inventory(), FEWEST, NOW, target=Target(bytes=200))
    assert removed(plan) == [dangling, big]
    assert [a.reason for a in plan.actions] == [Reason.DANGLING, Reason.FEWEST_IMAGES]


def test_longest_unused_first_among_equal_gains_and_caps_apply() -> None:
    s = Store()
    ids = [s.image(f"i{n}", [(f"l{n}", 10)], idle_days=n) for n in (3, 9, 6)]
    plan = plan_cleanup(s.inventory(), PlanSettings(selection=FEWEST_IMAGES, max_deletions_per_run=2), NOW,
                        target=Target(bytes=10**6))  # fmt: skip
    assert removed(plan) == [ids[1], ids[2]]
    assert plan.skipped[ids[0]] == "maxDeletionsPerRun 2 reached"


def test_inodes_alone_under_pressure_pick_by_inodes() -> None:
    s = Store()
    many = s.image("many", [(f"m{k}", 1) for k in range(6)], idle_days=1)  # 6 snapshots, 8 blobs with cfg+manifest
    few = [s.image(f"f{i}", [(f"f{i}", 1000)], idle_days=50 + i) for i in range(3)]  # 3 inodes each
    plan = plan_cleanup(s.inventory(), FEWEST, NOW, target=Target(inodes=10))
    assert removed(plan) == [many] and plan.actions[0].inodes == 14
    assert not set(few) & set(removed(plan))


def test_the_policy_field_reaches_the_planner_and_rejects_other_values() -> None:
    doc = "apiVersion: nodejanitor.io/v1alpha1\nkind: CleanupPolicy\nmetadata: {name: p}\n"
    doc += "spec:\n  images: {selection: %s}\n"
    spec = CleanupPolicy.from_yaml(doc % "FewestImages").spec
    assert PlanSettings.from_rules(spec).selection == FEWEST_IMAGES
    assert PlanSettings.from_rules(CleanupPolicy.from_yaml(doc % "LeastRecentlyUsed").spec).selection != FEWEST_IMAGES
    with pytest.raises(ValueError, match="selection"):
        CleanupPolicy.from_yaml(doc % "Biggest")
    with pytest.raises(ValueError, match="selection"):
        PlanSettings(selection="Biggest")
