"""In-flight pulls on a real containerd: an ingest opened through the content Write API is seen with its offset and
total, the run's target grows by the bytes still to come, and an expired lease holding it is never planned for
deletion."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.node.engine import NodeEngine
from node_janitor.node.plan import ActionKind
from node_janitor.runtime import LeaseResource, open_runtime
from support.enginebed import rules

pytestmark = pytest.mark.containerd
MiB = 1 << 20


async def test_an_ingest_in_flight_is_seen_and_the_target_leaves_room_for_it(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        quiet = await engine.run_once(rules({}), dry_run=True)
        fs = quiet.image_fs
        assert fs is not None
        capacity = fs.used + fs.available
        high = int(fs.used_percent) + 10  # the disk stays below it; what is still to come takes it above
        spec = {"thresholds": {"highPercent": high, "lowPercent": high - 5}}
        before = await engine.run_once(rules(spec), dry_run=True)
        assert before.plan.target.bytes == 0 and before.plan.target.pending_bytes == 0

        written, declared = MiB, capacity // 5  # a layer of a fifth of the disk, 1 MiB of it downloaded
        await containerd.write_content("pull-layer", os.urandom(written), commit=False, total=declared)
        unknown = await containerd.write_content("no-size", os.urandom(4096), commit=False, total=0)
        assert unknown is None
        ingests = {i.ref: i for i in await containerd.list_ingests()}
        assert (ingests["pull-layer"].offset, ingests["pull-layer"].total) == (written, declared)

        report = await engine.run_once(rules(spec), dry_run=True)
        pending = report.inventory.pending
        assert pending.bytes == declared - written and pending.unknown == 1 and pending.ingests == 2
        measured = report.image_fs
        assert measured is not None
        assert report.plan.target.pending_bytes == declared - written
        low_bytes = int((measured.used + measured.available) * (high - 5) / 100)
        assert report.plan.target.bytes == measured.used + declared - written - low_bytes > 0


async def test_an_expired_lease_holding_an_ingest_being_written_is_not_planned_for_deletion(
    containerd_bed: ContainerdBed,
) -> None:
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        pulling = await containerd.create_lease("slow-pull", expire=timedelta(seconds=5))
        idle = await containerd.create_lease("idle", expire=timedelta(seconds=5))
        await containerd.with_lease(pulling.id).write_content(
            "slow-layer", os.urandom(64 * 1024), commit=False, total=MiB
        )
        resources = await containerd.list_lease_resources(pulling.id)
        assert LeaseResource(id="slow-layer", type="ingests") in resources
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        later = datetime.now(UTC) + timedelta(seconds=10)  # both leases expired then; the ingest written 10 s before
        report = await engine.run_once(rules({}), later, dry_run=True)
        deleted = [a.id for a in report.plan.actions if a.kind is ActionKind.DELETE_LEASE]
        assert deleted == [idle.id]
