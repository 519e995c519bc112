"""Images pulled through CRI from a loopback registry, as a node really gets them (containerd 2.1+ pulls through
its transfer service: both the compressed and the unpacked copy of each layer stay, and the blobs carry
`containerd.io/distribution.source.*` labels): `df` is exact against the file system, `prune` frees what it
plans, `discardUnpackedLayers` gets the compressed copies back, and the labels do not confuse the graph."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.cli import main
from node_janitor.devbed import ContainerdBed, Layer, OciImage
from node_janitor.devbed.images import chain_ids
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.devbed.registry import Registry
from node_janitor.node.collect import CollectOptions, collect_inventory
from node_janitor.node.inventory import content_node, snapshot_node
from node_janitor.node.usage import build_disk_report
from node_janitor.runtime import CriClient, NotFoundError, open_runtime

pytestmark = pytest.mark.containerd
MiB = 1 << 20
SOURCE = "containerd.io/distribution.source."


async def _pull(bed: ContainerdBed, registry: Registry, cri: CriClient, images: list[OciImage]) -> list[str]:
    """Push `images` to the registry and pull each through CRI (as the kubelet does); their references."""
    bed.trust_plain_http_registry(registry.host)
    refs = [registry.push(image) for image in images]
    for ref, image in zip(refs, images, strict=True):
        assert await cri.pull_image(ref, deadline=300) == image.id
    bed.collect_garbage()  # what the pulls' leases held and nothing else keeps is gone before anything is measured
    return refs


def _within(measured: int, predicted: int, fraction: float, what: str) -> None:
    print(f"{what}: measured={measured} predicted={predicted} diff={measured - predicted}")
    assert abs(measured - predicted) <= fraction * predicted, f"{what}: file system {measured}, predicted {predicted}"


def _sandbox_id(images: Any, bed: ContainerdBed) -> str:
    return str(next(i.id for i in images if bed.sandbox_image in i.repo_tags))


async def _prune(bed: ContainerdBed, tmp_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    policy = tmp_path / "policy.yaml"
    manifest = {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": "t"}}
    policy.write_text(yaml.safe_dump({**manifest, "spec": spec}))
    out = io.StringIO()
    args = ["prune", "--containerd-socket", bed.address, "--pod-log-dir", str(bed.pod_log_dir), "-o", "json"]

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main([*args, "--policy", str(policy)])

    code = await asyncio.to_thread(run)
    report: dict[str, Any] = json.loads(out.getvalue())
    assert code == 0, report["errors"]
    return report


async def test_df_is_exact_on_pulled_images_and_their_labels_do_not_confuse_the_graph(
    containerd_bed: ContainerdBed, registry: Registry
) -> None:
    bed, b = containerd_bed, containerd_bed.builder
    base = Layer.random(6 * MiB, "pull-base")
    images = [
        b.build(f"example.com/pulled-{n}:v1", [b.busybox_layer(), base, Layer.random(size * MiB, f"pulled-{n}")])
        for n, size in (("web", 8), ("job", 5), ("solo", 3))
    ]
    before = bed.usage().used
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        refs = await _pull(bed, registry, cri, images)
        gained = bed.usage().used - before
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
    now = datetime.now(UTC)
    report = build_disk_report(inventory, now)
    details = {d.id: d for d in report.images}

    # The pull labelled the blobs it fetched with where they came from; the graph takes no label for a reference.
    pulled_blobs = {blob.digest: blob for blob in inventory.blobs if any(k.startswith(SOURCE) for k in blob.labels)}
    assert set(images[0].blobs) - {b.busybox_layer().digest} <= set(pulled_blobs)  # busybox came with pause
    assert inventory.graph.orphans(now) == frozenset()
    for ref, image in zip(refs, images, strict=True):
        entry = next(i for i in inventory.images if i.id == image.id)
        assert ref in entry.repo_tags and entry.repo_digests == (ref.rsplit(":", 1)[0] + "@" + image.manifest_digest,)
        closure = inventory.graph.image_closures[image.id]
        assert {content_node(d) for d in image.blobs} <= closure
        assert {snapshot_node(k) for k in chain_ids([layer.diff_id for layer in image.layers])} <= closure

    # SIZE counts each blob and each snapshot once, the shared base included: what the pulls wrote to the disk.
    # (less the sandbox image, there before: the busybox layer the pulled images share with it came with it)
    rows_size = report.rows["images"].size - details[_sandbox_id(inventory.images, bed)].size
    _within(gained, rows_size, 0.01, "images row against the file system's gain")
    assert details[images[0].id].shared_size >= 2 * 6 * MiB  # the shared base's blob and snapshot


async def test_prune_frees_what_it_plans_on_pulled_images(
    containerd_bed: ContainerdBed, registry: Registry, tmp_path: Path
) -> None:
    bed = containerd_bed
    images = bed.builder.random_images("pulled-prune", 4, 8 * MiB)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        await _pull(bed, registry, cri, images)
        report = await _prune(bed, tmp_path, {"images": {"minAge": "0s", "maxUnusedAge": "0s"}})
        removed = {a["id"] for a in report["actions"] if a["kind"] == "remove-image"}
        assert removed == {i.id for i in images}
        assert all(a["outcome"] == "done" for a in report["actions"])
        _within(report["reclaimed_bytes"], report["planned_bytes"], 0.01, "prune on pulled images")
        assert not removed & {i.id for i in await cri.list_images()}


async def test_discard_unpacked_layers_frees_the_compressed_copies_of_pulled_layers(
    containerd_bed: ContainerdBed, registry: Registry, tmp_path: Path
) -> None:
    bed, b = containerd_bed, containerd_bed.builder
    app = b.build("example.com/pulled-discard:v1", [b.busybox_layer(), Layer.random(12 * MiB, "pulled-discard")])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        (ref,) = await _pull(bed, registry, cri, [app])
        pod = await run_pod(cri, bed.pod_log_dir, "discard")
        first = await start_container(cri, pod, "app", ref, "sleep 3600")
        await wait_for_state(cri, first.id, "RUNNING")
        report = await _prune(bed, tmp_path, {"content": {"discardUnpackedLayers": True}})
        discarded = {a["id"] for a in report["actions"] if a["kind"] == "discard-layer"}
        assert app.layers[1].digest in discarded
        with pytest.raises(NotFoundError):
            await containerd.content_info(app.layers[1].digest)
        # The compressed copy of the 12 MiB layer is what the file system got back, as planned.
        assert report["planned_bytes"] >= len(app.layers[1].blob)
        _within(report["reclaimed_bytes"], report["planned_bytes"], 0.01, "discarded compressed layers")
        # The image still runs: a new container starts from its unpacked layers.
        again = await start_container(cri, pod, "again", ref, "sleep 3600")
        await wait_for_state(cri, again.id, "RUNNING")
        await remove_all_pods(cri)
