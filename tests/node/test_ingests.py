"""In-flight pulls (`node.ingests`): the bytes still to come, counted in the image target as headroom; an expired
lease holding an ingest still being written is never deleted. Pure tests; the engine on the fake runtime:
tests/node/test_engine_fake.py; containerd's own ingests: tests/node/test_ingests_real.py."""

from __future__ import annotations

from datetime import timedelta

from node_janitor.node.ingests import STALLED_AFTER, IngestEntry, lease_ingests, pending_bytes
from node_janitor.node.inventory import FileSystemEntry, Inventory, LeaseEntry
from node_janitor.node.plan import ActionKind, PlanSettings, plan_cleanup, plan_target
from support.fakeruntime import T0

MiB = 1 << 20
FS_SIZE = 100 * MiB


def image_fs(used: int) -> FileSystemEntry:
    return FileSystemEntry("imagefs", "/var/lib/containerd", FS_SIZE, used, FS_SIZE - used)


def test_the_bytes_still_to_come_are_summed_over_the_ingests_in_flight() -> None:
    ingests = [
        IngestEntry("layer-1", 3 * MiB, 10 * MiB, T0),
        IngestEntry("layer-2", 0, 4 * MiB, T0 - timedelta(seconds=5)),
        IngestEntry("done-writing", 2 * MiB, 2 * MiB, T0),
    ]
    pending = pending_bytes(ingests, T0)
    assert pending.bytes == 7 * MiB + 4 * MiB and pending.ingests == 3
    assert pending.unknown == 0 and pending.stalled == 0


def test_an_unknown_total_counts_as_unknown_not_as_zero() -> None:
    pending = pending_bytes([IngestEntry("no-size", 5 * MiB, 0, T0), IngestEntry("sized", 0, MiB, T0)], T0)
    assert pending.bytes == MiB  # only what is known is summed ...
    assert pending.unknown == 1 and pending.ingests == 2  # ... and the unknown one is said, not taken for nothing


def test_a_stalled_ingest_brings_nothing_soon() -> None:
    old = IngestEntry("interrupted", MiB, 50 * MiB, T0 - STALLED_AFTER - timedelta(seconds=1))
    pending = pending_bytes([old, IngestEntry("no-time", 0, 2 * MiB)], T0)
    assert pending.bytes == 2 * MiB and pending.stalled == 1 and pending.ingests == 1


def test_the_target_leaves_room_for_what_is_still_to_come() -> None:
    """At 70% with 20 MiB in flight, the projected use is 90%: above highPercent 85, the target brings it to 75%."""
    settings = PlanSettings(high_percent=85, low_percent=75)
    quiet = Inventory(taken_at=T0, file_systems=(image_fs(70 * MiB),))
    assert not plan_target(quiet, settings).under_pressure
    pulling = Inventory(
        taken_at=T0, file_systems=(image_fs(70 * MiB),), ingests=(IngestEntry("big-layer", 5 * MiB, 25 * MiB, T0),)
    )
    target = plan_target(pulling, settings)
    assert target.bytes == 70 * MiB + 20 * MiB - int(FS_SIZE * 0.75) and target.pending_bytes == 20 * MiB


def test_the_benchmark_baseline_leaves_no_room_for_what_is_still_to_come() -> None:
    """`count_pulls_in_flight=False` (the fill-rate sweep's baseline, the agent before issue 22): the same 70% with
    20 MiB in flight is below highPercent 85, and at 90% on disk the target brings what is there to 75%."""
    settings = PlanSettings(high_percent=85, low_percent=75, count_pulls_in_flight=False)
    ingest = IngestEntry("big-layer", 5 * MiB, 25 * MiB, T0)
    pulling = Inventory(taken_at=T0, file_systems=(image_fs(70 * MiB),), ingests=(ingest,))
    assert not plan_target(pulling, settings).under_pressure
    full = Inventory(taken_at=T0, file_systems=(image_fs(90 * MiB),), ingests=(ingest,))
    target = plan_target(full, settings)
    assert target.bytes == 90 * MiB - int(FS_SIZE * 0.75) and target.pending_bytes == 0


def test_the_headroom_the_fill_rate_projects_is_counted_as_the_ingests_are() -> None:
    inventory = Inventory(taken_at=T0, file_systems=(image_fs(80 * MiB),))
    target = plan_target(inventory, PlanSettings(high_percent=85, low_percent=75, headroom_bytes=10 * MiB))
    assert target.bytes == 90 * MiB - int(FS_SIZE * 0.75) and target.pending_bytes == 10 * MiB
    assert plan_target(inventory, PlanSettings(headroom_bytes=10 * MiB), "logs") == plan_target(
        inventory, PlanSettings(), "logs"
    )  # no log file system measured: nothing, headroom or not


def test_an_expired_lease_holding_an_ingest_being_written_is_never_deleted() -> None:
    """A slow pull whose lease ran out: deleting the lease would let containerd's collector take the pull's data.
    The lease of an ingest no longer written (interrupted) is garbage like any expired lease."""
    expired = T0 - timedelta(hours=1)
    leases = (
        LeaseEntry("slow-pull", expires_at=expired, resources=(("ingests", "layer-1"), ("content", "sha256:aa"))),
        LeaseEntry("interrupted-pull", expires_at=expired, resources=(("ingests", "layer-2"),)),
        LeaseEntry("plain", expires_at=expired),
    )
    ingests = (
        IngestEntry("layer-1", MiB, 10 * MiB, T0 - timedelta(seconds=1)),
        IngestEntry("layer-2", MiB, 10 * MiB, T0 - STALLED_AFTER * 2),
    )
    inventory = Inventory(taken_at=T0, leases=leases, ingests=ingests, file_systems=(image_fs(10 * MiB),))
    plan = plan_cleanup(inventory, PlanSettings(), T0)
    deleted = [a.id for a in plan.actions if a.kind is ActionKind.DELETE_LEASE]
    assert deleted == ["interrupted-pull", "plain"]


def test_lease_ingests_names_only_the_ingest_resources() -> None:
    resources = [("ingests", "a"), ("content", "sha256:b"), ("snapshots/overlayfs", "c")]
    assert lease_ingests(resources) == frozenset({"a"})
