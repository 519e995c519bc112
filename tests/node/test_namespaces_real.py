"""Content is shared by every containerd namespace: what another namespace keeps is never promised."""

from __future__ import annotations

import pytest

from node_janitor.cli.render import render_disk_report
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.node.engine import NodeEngine
from node_janitor.node.plan import ActionKind
from node_janitor.runtime import open_runtime
from support.enginebed import REMOVE_ALL_UNUSED, import_into, rules

pytestmark = pytest.mark.containerd
MiB = 1 << 20


async def test_blobs_another_namespace_keeps_are_not_promised(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    b = bed.builder
    shared = b.build("example.com/shared:v1", [b.busybox_layer(), Layer.random(8 * MiB, "shared")])
    mine = b.build("example.com/mine:v1", [b.busybox_layer(), Layer.random(4 * MiB, "mine")])
    bed.import_images([shared, mine])
    import_into(bed, "moby", [shared])  # as Docker 29 keeps its images: the same image, in another namespace

    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        report = await engine.build_disk_report()
        (moby,) = report.other_namespaces
        assert moby.name == "moby" and moby.blobs >= 4 and moby.referenced >= moby.shared >= 8 * MiB
        row = next(i for i in report.images if i.id == shared.id)
        assert row.unique_size < row.size - 8 * MiB  # its layer blob is shared with moby
        assert "moby" in render_disk_report(report, engine.clock())
        assert report.to_json()["other_namespaces"][0]["name"] == "moby"

        result = await engine.run_once(rules(REMOVE_ALL_UNUSED))
        assert not result.errors, result.errors
        planned = {a.id: a.bytes for a in result.plan.actions if a.kind is ActionKind.REMOVE_IMAGE}
        assert set(planned) == {shared.id, mine.id}
        assert planned[shared.id] < 8 * MiB + MiB  # only its unpacked snapshot: moby keeps the blobs
        assert result.execution is not None
        assert abs(result.execution.reclaimed_bytes - result.plan.planned_bytes) <= 0.05 * result.plan.planned_bytes
        moby_store = containerd.with_namespace("moby")
        assert set(shared.blobs) <= {blob.digest for blob in await moby_store.list_content()}


async def test_a_layer_another_namespace_keeps_is_not_discarded(containerd_bed: ContainerdBed) -> None:
    from datetime import UTC, datetime

    from node_janitor.node.plan import PlanSettings, plan_cleanup

    bed = containerd_bed
    b = bed.builder
    layer = Layer.random(2 * MiB, "both")
    app = b.build("example.com/both:v1", [b.busybox_layer(), layer])
    alone = Layer.random(2 * MiB, "alone")
    solo = b.build("example.com/solo:v1", [b.busybox_layer(), alone])
    bed.import_images([app, solo])
    import_into(bed, "moby", [app])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        now = datetime.now(UTC)
        inventory = await engine.take_inventory(now)
        plan = plan_cleanup(inventory, PlanSettings(discard_unpacked_layers=True), now)
        discarded = {a.id for a in plan.actions if a.kind is ActionKind.DISCARD_LAYER}
        assert alone.digest in discarded and layer.digest not in discarded
