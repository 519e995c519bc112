"""Orphans on a real containerd: containerd's own collector decides what goes, the graph predicts it exactly,
following the labels containerd follows (image-record labels, flat leases), and nothing a new lease took since
the inventory is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.api.policy import PolicyRules
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.devbed.images import chain_ids
from node_janitor.node.engine import NodeEngine
from node_janitor.node.inventory import content_node, image_node, snapshot_node
from node_janitor.node.outcome import Outcome
from node_janitor.node.plan import ActionKind, PlanSettings, plan_cleanup
from node_janitor.runtime import ContainerdClient, LeaseResource, NotFoundError, open_runtime
from support.enginebed import execute

pytestmark = pytest.mark.containerd
MiB = 1 << 20


async def _blob_exists(containerd: ContainerdClient, digest: str) -> bool:
    try:
        await containerd.content_info(digest)
    except NotFoundError:
        return False
    return True


async def _snapshot_exists(containerd: ContainerdClient, key: str) -> bool:
    try:
        await containerd.stat_snapshot(key)
    except NotFoundError:
        return False
    return True


@pytest.fixture
async def engine(containerd_bed: ContainerdBed) -> AsyncIterator[NodeEngine]:
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        yield NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)


async def test_a_blob_only_an_image_records_label_keeps_is_no_orphan(
    containerd_bed: ContainerdBed, engine: NodeEngine
) -> None:
    bed = containerd_bed
    b = bed.builder
    app = b.build("example.com/labelled:v1", [b.busybox_layer(), Layer.random(1 * MiB, "labelled")])
    bed.import_images([app])
    ctrd = engine.containerd
    await ctrd.wait_for_gc()  # what `ctr import` leaves behind its lease (the archive's index) is collected
    async with ctrd.temporary_lease() as leased:
        extra = await leased.write_content("extra-1", Layer.random(2 * MiB, "extra").blob)
    assert extra is not None
    # containerd 1.6 follows an image record's own gc.ref labels (metadata/gc.go scanRoots: sendLabelRefs).
    await ctrd.update_image(
        app.name, labels={"containerd.io/gc.ref.content.extra": extra.digest}, fieldpaths=["labels"]
    )
    await ctrd.wait_for_gc()
    assert await _blob_exists(ctrd, extra.digest), "containerd keeps it"

    report = await engine.build_disk_report()
    assert report.rows["content"].reclaimable == 0
    result = await engine.run_once(PolicyRules())
    assert not result.errors
    assert extra.digest not in {a.id for a in result.plan.actions}
    assert await _blob_exists(ctrd, extra.digest)


async def test_a_flat_lease_holds_only_what_it_names_and_the_prediction_is_exact(
    containerd_bed: ContainerdBed, engine: NodeEngine
) -> None:
    """The graph's orphans, predicted before the image records go, are exactly what containerd's collector takes
    (deleting the records starts a collection at once: the prediction is made first, then compared)."""
    bed = containerd_bed
    b = bed.builder
    own = Layer.random(3 * MiB, "flat")
    app = b.build("example.com/flat:v1", [b.busybox_layer(), own])
    bed.import_images([app])
    ctrd = engine.containerd
    await ctrd.wait_for_gc()  # what `ctr import` leaves behind its lease (the archive's index) is collected
    lease = await ctrd.create_lease("flat-hold", {"containerd.io/gc.flat": "true"}, expire=timedelta(hours=1))
    await ctrd.add_lease_resource(lease.id, LeaseResource(id=app.manifest_digest, type="content"))

    now = datetime.now(UTC)
    inventory = await engine.take_inventory(now)
    without_app = replace(inventory, images=tuple(i for i in inventory.images if i.id != app.id))
    predicted = without_app.graph.orphans(now)
    top = chain_ids([layer.diff_id for layer in app.layers])[-1]
    # The manifest is held; what it references is not (flat): the config, its own layer and top snapshot. The
    # busybox layer and its snapshot stay: the pause image has them too.
    assert predicted == {content_node(app.config_digest), content_node(own.digest), snapshot_node(top)}

    await ctrd.delete_image(app.name)
    await ctrd.delete_image(app.id, missing_ok=True)  # the ID record CRI added
    await ctrd.wait_for_gc()
    after = await engine.take_inventory()
    gone = set(inventory.graph.size) - set(after.graph.size) - {image_node(app.id)}
    assert gone == predicted
    assert await _blob_exists(ctrd, app.manifest_digest)


async def test_an_orphan_a_new_lease_took_since_the_inventory_is_kept(
    containerd_bed: ContainerdBed, engine: NodeEngine
) -> None:
    """A pull that starts between inventory and execution leases what it reuses: containerd's GC sees it."""
    ctrd = engine.containerd
    # Made under a set-up lease, so that no background collection can take them before the inventory (made
    # without one, they were orphans a collection could take at any moment); the inventory is read as if that
    # lease had gone, so they are orphans in it, and a new pull leases them before the set-up lease really goes.
    setup = await ctrd.create_lease("setup", expire=timedelta(hours=1))
    blob = await ctrd.with_lease(setup.id).write_content("late-1", Layer.random(1 * MiB, "late").blob)
    await ctrd.with_lease(setup.id).prepare_snapshot("late-snapshot")
    assert blob is not None
    now = datetime.now(UTC)
    taken = await engine.take_inventory(now)
    inventory = replace(taken, leases=tuple(lease for lease in taken.leases if lease.id != setup.id))
    plan = plan_cleanup(inventory, PlanSettings(), now)
    assert {(a.kind, a.id) for a in plan.actions} >= {
        (ActionKind.DELETE_CONTENT, blob.digest),
        (ActionKind.REMOVE_SNAPSHOT, "late-snapshot"),
    }

    pull = await ctrd.create_lease("new-pull", expire=timedelta(hours=1))
    await ctrd.add_lease_resource(pull.id, LeaseResource(id=blob.digest, type="content"))
    await ctrd.add_lease_resource(pull.id, LeaseResource(id="late-snapshot", type="snapshots/overlayfs"))
    await ctrd.delete_lease(setup.id)
    result = await execute(engine.cri, ctrd, plan, inventory)
    outcomes = {r.action.id: r.outcome for r in result.results}
    assert outcomes[blob.digest] is Outcome.SKIPPED and outcomes["late-snapshot"] is Outcome.SKIPPED
    assert await _blob_exists(ctrd, blob.digest) and await _snapshot_exists(ctrd, "late-snapshot")
    assert not result.errors
