"""Inventory time of a second run, with and without the snapshot-usage cache (issue 14).

Run (root): .venv/bin/python -m bench.bench_inventory_cache [--images 20] [--layers 4] [--files 1500] [--repeat 3]
A private containerd on a loop-mounted ext4 disk holding images of many small files (containerd's Usage walks
every file of a snapshot, as `du` does). One NodeEngine takes a first inventory (cold), then second ones with
its cache (committed snapshots are immutable: only new or active ones are measured) and, for comparison, second
ones with a fresh cache each time (what a loop without the cache would pay on every run).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.node.collect import SnapshotUsageCache
from node_janitor.node.engine import NodeEngine
from node_janitor.runtime import open_runtime

MiB = 1 << 20


async def run(bed: ContainerdBed, repeat: int) -> None:
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        started = time.perf_counter()
        first = await engine.take_inventory()
        cold = time.perf_counter() - started
        files = sum(s.inodes for s in first.snapshots)
        print(f"snapshots={len(first.snapshots)} blobs={len(first.blobs)} files in snapshots={files}")
        print(f"first inventory (cold): {cold * 1000:.0f} ms")

        cached, uncached = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            await engine.take_inventory()
            cached.append(time.perf_counter() - started)
            engine.usage_cache = SnapshotUsageCache()  # what every run would cost without the cache
            started = time.perf_counter()
            await engine.take_inventory()
            uncached.append(time.perf_counter() - started)
        c, u = statistics.median(cached), statistics.median(uncached)
        print(f"second inventory with the cache: median {c * 1000:.0f} ms, max {max(cached) * 1000:.0f} ms")
        print(f"second inventory without the cache: median {u * 1000:.0f} ms, max {max(uncached) * 1000:.0f} ms")
        print(f"speed-up: {u / c:.1f}x over {repeat} runs each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--files", type=int, default=1500, help="files per layer")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    inodes = args.images * args.layers * args.files * 2 + 20000
    with ContainerdBed(disk_size=2048 * MiB, disk_inodes=inodes) as bed:
        b = bed.builder
        started = time.perf_counter()
        for i in range(args.images):
            layers = [
                Layer.from_files({f"d{i}/{j}/{n}": b"x" * (n % 300) for n in range(args.files)})
                for j in range(args.layers)
            ]
            bed.import_images([b.build(f"bench.local/many{i}:v1", [b.busybox_layer(), *layers])])
        print(
            f"imported {args.images} images x {args.layers} layers x {args.files} files in "
            f"{time.perf_counter() - started:.1f}s"
        )
        asyncio.run(run(bed, args.repeat))


if __name__ == "__main__":
    main()
