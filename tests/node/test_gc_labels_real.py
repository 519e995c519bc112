"""containerd 2.3's own collector against the graph, with objects labelled as 2.3 labels them: conditional snapshot
references (`gc.cond.snapshot.*` / `gc.cond.value-usedat`) and an expired image record attached to another image
by `gc.bref.image` (what the transfer service writes for an image's extra names). What the graph predicts is
exactly what the collector takes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.node.engine import NodeEngine
from node_janitor.node.inventory import (
    NodeKind,
    ReferenceCounts,
    all_roots,
    content_node,
    image_node,
    is_node_of,
    snapshot_node,
)
from node_janitor.runtime import Descriptor, open_runtime

pytestmark = pytest.mark.containerd
MiB = 1 << 20
USED = "containerd.io/gc.cond.value-usedat"
COND = "containerd.io/gc.cond.snapshot.overlayfs"


@pytest.fixture
async def engine(containerd_bed: ContainerdBed) -> AsyncIterator[NodeEngine]:
    if containerd_bed.binaries.major < 2:
        pytest.skip("containerd 1.6's collector knows neither conditional references nor expiring images")
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        yield NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_conditional_snapshot_references_keep_what_the_collector_keeps(engine: NodeEngine) -> None:
    ctrd = engine.containerd
    now = datetime.now(UTC)
    setup = await ctrd.create_lease("setup", expire=timedelta(hours=1))  # nothing goes before the inventory
    leased = ctrd.with_lease(setup.id)
    used = {"recent": now - timedelta(minutes=5), "stale": now - timedelta(hours=3), "old": now - timedelta(hours=3)}
    for key, when in used.items():
        await leased.prepare_snapshot(f"{key}-active", labels={USED: _stamp(when)})
        await leased.commit_snapshot(key, f"{key}-active", labels={USED: _stamp(when)})
    await leased.prepare_snapshot("never-active")
    await leased.commit_snapshot("never", "never-active")
    holder = await leased.write_content("holder-1", Layer.random(MiB, "holder").blob)
    assert holder is not None
    await ctrd.update_content_labels(
        holder.digest,
        {
            "containerd.io/gc.root": "true",
            COND + "/a": "usedat<1h|recent",
            COND + "/b": "usedat<1h|stale",
            COND + "/c": "usedat<1m,usedat>2h|old",  # either condition: the second holds
            COND + "/d": "usedat<1h|never",  # no used-at value on it: the condition cannot hold
        },
    )

    inventory = await engine.take_inventory()
    setup_gone = replace(inventory, leases=tuple(lease for lease in inventory.leases if lease.id != setup.id))
    predicted = {n for n in setup_gone.graph.orphans(inventory.taken_at) if is_node_of(n, NodeKind.SNAPSHOT)}
    assert predicted == {snapshot_node("stale"), snapshot_node("never")}

    await ctrd.delete_lease(setup.id, sync=True)
    after = await engine.take_inventory()
    kept = {s.key for s in after.snapshots}
    assert {"recent", "old"} <= kept and not {"stale", "never"} & kept


async def test_an_expired_image_attached_to_another_goes_with_it(
    containerd_bed: ContainerdBed, engine: NodeEngine
) -> None:
    bed, b = containerd_bed, containerd_bed.builder
    main = b.build("example.com/gc-main:v1", [b.busybox_layer(), Layer.random(2 * MiB, "gc-main")])
    extra = b.build("example.com/gc-extra:v1", [b.busybox_layer(), Layer.random(3 * MiB, "gc-extra")])
    bed.import_images([main, extra])
    ctrd = engine.containerd
    # The extra image's only record: a name the transfer service would add, expired at once, attached to main's.
    target = Descriptor("application/vnd.oci.image.manifest.v1+json", extra.manifest_digest,
                        len(extra.blobs[extra.manifest_digest]))  # fmt: skip
    past = _stamp(datetime.now(UTC) - timedelta(minutes=1))
    await ctrd.create_image(
        f"example.com/gc-extra@{extra.manifest_digest}",
        target,
        {"containerd.io/gc.bref.image": main.name, "containerd.io/gc.expire": past},
    )
    await ctrd.delete_image(extra.name)
    await ctrd.delete_image(extra.id)
    await ctrd.wait_for_gc()

    inventory = await engine.take_inventory()
    entry = next(i for i in inventory.images if i.id == extra.id)
    assert entry.expires_at is not None and entry.expired(inventory.taken_at)
    assert inventory.graph.orphans(inventory.taken_at) == frozenset()  # main keeps it, and containerd agrees:
    assert extra.layers[1].digest in {blob.digest for blob in inventory.blobs}
    counts = ReferenceCounts(inventory.graph, all_roots(inventory, inventory.taken_at))
    predicted = counts.would_free(image_node(main.id))
    assert {content_node(extra.layers[1].digest), content_node(main.layers[1].digest)} <= predicted

    # Removing main's records frees what the graph said: main's and the expired image's, the extra record too.
    await ctrd.delete_image(main.name)
    await ctrd.delete_image(main.id)
    await ctrd.wait_for_gc()
    after = await engine.take_inventory()
    gone = set(inventory.graph.size) - set(after.graph.size)
    gone_nodes = {n for n in gone if not is_node_of(n, NodeKind.IMAGE)}
    assert gone_nodes == {n for n in predicted if not is_node_of(n, NodeKind.IMAGE)}
    assert extra.id not in {i.id for i in after.images}
