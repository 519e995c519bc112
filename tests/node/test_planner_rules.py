"""The planner's individual rules, one small store each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from node_janitor.node.inventory import BlobEntry, ContainerEntry, ImageEntry, Inventory, LeaseEntry, SnapshotEntry
from node_janitor.node.plan import ActionKind, PlanSettings, Reason, Target, plan_cleanup

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SNAP = "containerd.io/gc.ref.snapshot.overlayfs"
UNCOMPRESSED = "containerd.io/uncompressed"


def image(name: str, size: int, *, age: timedelta = timedelta(days=30), unpacked: bool = True):  # type: ignore[no-untyped-def]
    layer = BlobEntry(f"sha256:l-{name}", size, labels={UNCOMPRESSED: f"sha256:u-{name}"})
    snap = SnapshotEntry(f"s-{name}", size=2 * size)
    config = BlobEntry(f"sha256:c-{name}", 10, labels={SNAP: snap.key} if unpacked else {})
    manifest = BlobEntry(
        f"sha256:m-{name}",
        10,
        labels={"containerd.io/gc.ref.content.config": config.digest, "containerd.io/gc.ref.content.l.0": layer.digest},
    )
    entry = ImageEntry(
        config.digest, (f"r/{name}:1",), (manifest.digest,), repo_tags=(f"r/{name}:1",), created_at=NOW - age
    )
    return entry, [layer, config, manifest], [snap] if unpacked else []


def store(*parts, containers=(), leases=()) -> Inventory:  # type: ignore[no-untyped-def]
    return Inventory(
        taken_at=NOW,
        images=tuple(p[0] for p in parts),
        blobs=tuple(b for p in parts for b in p[1]),
        snapshots=tuple(s for p in parts for s in p[2]),
        containers=tuple(containers),
        leases=tuple(leases),
    )


def kinds(plan):  # type: ignore[no-untyped-def]
    return [(a.kind, a.id) for a in plan.actions]


def test_max_unused_age_removes_without_pressure_but_spares_recently_used() -> None:
    stale, fresh = image("stale", 100, age=timedelta(days=40)), image("fresh", 100, age=timedelta(days=40))
    inv = store(stale, fresh)
    settings = PlanSettings(max_unused_age=timedelta(days=14))
    plan = plan_cleanup(inv, settings, NOW, last_used={fresh[0].id: NOW - timedelta(days=1)})
    assert kinds(plan) == [(ActionKind.REMOVE_IMAGE, stale[0].id)]
    assert plan.actions[0].reason is Reason.MAX_UNUSED_AGE and plan.actions[0].bytes == 100 + 200 + 20


def test_exited_container_past_its_grace_goes_and_frees_its_image_under_pressure() -> None:
    job = image("job", 100)
    done = ContainerEntry(
        "c-old", image=job[0].id, snapshot_key="", state="EXITED", finished_at=NOW - timedelta(hours=3)
    )
    recent = ContainerEntry("c-new", image="other", state="EXITED", finished_at=NOW - timedelta(minutes=5))
    running = ContainerEntry("c-run", image="other", state="RUNNING", created_at=NOW - timedelta(days=3))
    plain = ContainerEntry("c-ctr", image="other", state="UNKNOWN", cri=False, created_at=NOW - timedelta(days=3))
    inv = store(job, containers=[done, recent, running, plain])
    settings = PlanSettings(remove_exited_after=timedelta(hours=1))
    plan = plan_cleanup(inv, settings, NOW, target=Target(bytes=1))
    assert kinds(plan) == [(ActionKind.REMOVE_CONTAINER, "c-old"), (ActionKind.REMOVE_IMAGE, job[0].id)]
    # Without the container rule the image stays: an exited container still uses it.
    assert kinds(plan_cleanup(inv, PlanSettings(), NOW, target=Target(bytes=1))) == []


def test_max_deletions_per_run_caps_image_removals() -> None:
    parts = [image(f"i{n}", 100, age=timedelta(days=10 + n)) for n in range(5)]
    plan = plan_cleanup(store(*parts), PlanSettings(max_deletions_per_run=2), NOW, target=Target(bytes=10**9))
    assert [a.id for a in plan.actions] == [parts[4][0].id, parts[3][0].id]  # oldest first
    assert not plan.reaches_target
    assert sum("maxDeletionsPerRun" in why for why in plan.skipped.values()) == 3


def test_discard_keeps_layers_of_packed_images_and_of_live_pulls() -> None:
    unpacked, packed, pulling = image("u", 100), image("p", 200, unpacked=False), image("pull", 300)
    lease = LeaseEntry("pull", expires_at=NOW + timedelta(hours=1), resources=(("content", "sha256:l-pull"),))
    plan = plan_cleanup(
        store(unpacked, packed, pulling, leases=[lease]), PlanSettings(discard_unpacked_layers=True), NOW
    )
    assert kinds(plan) == [(ActionKind.DISCARD_LAYER, "sha256:l-u")]
    assert plan.actions[0].bytes == 100


def test_images_disabled_plans_no_image_but_still_collects_garbage() -> None:
    old = image("old", 100)
    lease = LeaseEntry("gone", expires_at=NOW - timedelta(hours=1), resources=(("snapshots/overlayfs", "s-x"),))
    inv = store(old, leases=[lease])
    inv = Inventory(
        taken_at=NOW,
        images=inv.images,
        blobs=inv.blobs,
        snapshots=(*inv.snapshots, SnapshotEntry("s-x", size=7)),
        leases=inv.leases,
    )
    plan = plan_cleanup(inv, PlanSettings(images_enabled=False), NOW, target=Target(bytes=10**9))
    assert kinds(plan) == [(ActionKind.DELETE_LEASE, "gone")] and plan.actions[0].bytes == 7


def test_protected_images_from_the_operator_are_kept() -> None:
    a, b = image("a", 100), image("b", 100)
    plan = plan_cleanup(store(a, b), PlanSettings(protected_images=("r/a:1",)), NOW, target=Target(bytes=10**9))
    assert kinds(plan) == [(ActionKind.REMOVE_IMAGE, b[0].id)]
    assert plan.skipped[a[0].id] == "in use in the cluster"
