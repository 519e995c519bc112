"""Prune on a real containerd: does the plan's prediction match the file system's gain, in one pass?

Run (root): .venv/bin/python -m bench.bench_prune_real [--images 60] [--disk 1Gi]
A private containerd on a loop-mounted ext4 disk; images over shared bases, some in use; the disk filled above
the high watermark; then one prune. Also times inventory collection, cold and with the snapshot-usage cache.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime

from node_janitor.api import CleanupPolicy
from node_janitor.api.units import parse_quantity
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.collect import CollectOptions, SnapshotUsageCache, collect_inventory
from node_janitor.node.engine import NodeEngine
from node_janitor.node.plan import PlanSettings, plan_cleanup, plan_target
from node_janitor.runtime import open_runtime

MiB = 1 << 20
POLICY = """
apiVersion: nodejanitor.io/v1alpha1
kind: CleanupPolicy
metadata: {name: bench}
spec:
  thresholds: {highPercent: 85, lowPercent: 60}
  images: {minAge: 0s}
"""


async def run(bed: ContainerdBed, n_images: int) -> None:
    rng = random.Random(7)
    b = bed.builder
    bases = [Layer.random(8 * MiB, f"bench-base{i}") for i in range(6)]
    images = [
        b.build(
            f"bench.local/app{i}:v1", [b.busybox_layer(), bases[i % 6], Layer.random(rng.randint(1, 6) * MiB, f"a{i}")]
        )
        for i in range(n_images)
    ]
    t0 = time.perf_counter()
    for start in range(0, n_images, 20):
        bed.import_images(images[start : start + 20])
    print(f"imported {n_images} images in {time.perf_counter() - t0:.1f}s")
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        pod = await run_pod(cri, bed.pod_log_dir, "bench")
        for i in range(0, n_images, 6):
            c = await start_container(cri, pod, f"c{i}", images[i].name, "sleep 3600")
            await wait_for_state(cri, c.id, "RUNNING")
        options = CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        cache = SnapshotUsageCache()
        t0 = time.perf_counter()
        await collect_inventory(cri, containerd, options, cache=cache)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        await collect_inventory(cri, containerd, options, cache=cache)
        warm = time.perf_counter() - t0
        print(f"inventory: cold {cold * 1000:.0f} ms, with snapshot-usage cache {warm * 1000:.0f} ms")

        usage = bed.usage()
        capacity = usage.used + usage.available
        await asyncio.to_thread(bed.fill, leave_available=int(capacity * 0.10))
        print(f"disk {capacity // MiB} MiB filled to {bed.usage().used_percent:.1f}%")
        policy = CleanupPolicy.from_yaml(POLICY)
        t0 = time.perf_counter()
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        report = await engine.run_once(policy.spec)
        took = time.perf_counter() - t0
        ex = report.execution
        assert ex is not None and ex.before and ex.after
        predicted, real = report.plan.planned_bytes, ex.reclaimed_bytes
        print(
            f"prune: {len(report.plan.actions)} actions in {took:.1f}s, target {report.plan.target.bytes / MiB:.1f} MiB"
        )
        print(
            f"predicted {predicted / MiB:.1f} MiB, file system gained {real / MiB:.1f} MiB, "
            f"ratio {real / predicted:.4f} (error {abs(real - predicted) / predicted * 100:.2f}%)"
        )
        print(f"used {ex.before.used_percent:.1f}% -> {ex.after.used_percent:.1f}% (low watermark 60%)")
        inventory = await collect_inventory(cri, containerd, options, cache=cache)
        settings = PlanSettings.from_rules(policy.spec)
        again = plan_cleanup(inventory, settings, datetime.now(UTC))
        pressure = plan_target(inventory, settings).under_pressure
        print(f"one pass: second plan has {len(again.actions)} actions, pressure {pressure}")
        print(f"errors: {report.errors}")
        await remove_all_pods(cri)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--disk", default="1Gi")
    args = parser.parse_args()
    with ContainerdBed(disk_size=parse_quantity(args.disk)) as bed:
        asyncio.run(run(bed, args.images))


if __name__ == "__main__":
    main()
