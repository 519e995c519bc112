"""Removal throughput (issue 12, bench 4): bytes per second freed by node-janitor's executor against raw
`ctr images rm --sync` of the same images on the same disk.

Run (root): sudo .venv/bin/python -m bench.bench_removal_throughput [--images 20] [--layer-mib 12] [--rounds 3]
One containerd bed on a loop-mounted ext4 disk. Each round imports the same images (unique incompressible
layers, nothing in use) and removes them all, once with `ctr images rm --sync` (every record of every image, one
command), once with node-janitor (`prune` with images.maxUnusedAge 0s: an action per image, then one
synchronous GC), alternating which goes first. Bytes freed = the file system's gain (statvfs) once the remover
returns (the import's writeback is synced before each removal); rates are medians over the rounds, the ratio
is taken within each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from bench.realbed import MiB, workdir
from node_janitor.api import CleanupPolicy
from node_janitor.api.units import parse_quantity
from node_janitor.devbed import ContainerdBed, ImageBuilder, Layer
from node_janitor.devbed.images import OciImage
from node_janitor.node.engine import NodeEngine
from node_janitor.runtime import open_runtime

POLICY = CleanupPolicy.from_yaml(
    "apiVersion: nodejanitor.io/v1alpha1\nkind: CleanupPolicy\nmetadata: {name: bench}\n"
    "spec:\n  images: {minAge: 0s, maxUnusedAge: 0s}\n"
)


def ctr_names(bed: ContainerdBed, images: list[OciImage]) -> list[str]:
    """Every image record of `images` (tags and the ID records the CRI plugin adds)."""
    ours = {i.name for i in images} | {i.id for i in images}
    listed = bed.ctr("images", "ls", "-q").stdout.split()
    return [n for n in listed if n in ours or any(n.startswith(i.name.split(":")[0] + "@") for i in images)]


def remove_with_ctr(bed: ContainerdBed, images: list[OciImage]) -> tuple[float, float]:
    names = ctr_names(bed, images)
    t0 = time.perf_counter()
    bed.ctr("images", "rm", "--sync", *names, timeout=600)
    return time.perf_counter() - t0, time.perf_counter() - t0


async def remove_with_janitor(bed: ContainerdBed) -> tuple[float, float]:
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        t0 = time.perf_counter()
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        report = await engine.run_once(POLICY.spec)
        wall = time.perf_counter() - t0
    assert report.execution is not None and not report.errors, report.errors
    return report.execution.duration_seconds, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--layer-mib", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--disk", default="1Gi")
    args = parser.parse_args()
    builder = ImageBuilder()
    images = [
        builder.build(f"bench.local/rm/app{i}:v1", [Layer.random(args.layer_mib * MiB, f"rm{i}")])
        for i in range(args.images)
    ]
    rates: dict[str, list[float]] = {"ctr": [], "node-janitor executor": [], "node-janitor prune": []}
    ratios: list[float] = []
    print(f"{args.images} images of one {args.layer_mib} MiB incompressible layer each, disk {args.disk}")
    with ContainerdBed(workdir("rm"), disk_size=parse_quantity(args.disk), builder=builder) as bed:
        for r in range(args.rounds):
            order = ["ctr", "janitor"] if r % 2 == 0 else ["janitor", "ctr"]
            round_rates: dict[str, float] = {}
            for method in order:
                for start in range(0, len(images), 10):
                    bed.import_images(images[start : start + 10])
                os.sync()  # no writeback of the import left to race the removal
                before = bed.usage().used
                if method == "ctr":
                    seconds, wall = remove_with_ctr(bed, images)
                else:
                    seconds, wall = asyncio.run(remove_with_janitor(bed))
                freed = before - bed.usage().used
                if method == "ctr":
                    round_rates["ctr"] = freed / seconds
                else:
                    round_rates["node-janitor executor"] = freed / seconds
                    round_rates["node-janitor prune"] = freed / wall
                print(
                    f"round {r + 1} {method:8} freed {freed / MiB:6.1f} MiB in {seconds:5.2f} s"
                    + (f" (whole prune with inventory and plan {wall:5.2f} s)" if method == "janitor" else "")
                    + f": {freed / seconds / MiB:6.1f} MiB/s"
                )
            for k, rate in round_rates.items():
                rates[k].append(rate)
            ratios.append(round_rates["node-janitor executor"] / round_rates["ctr"])
    for k, v in rates.items():
        print(f"{k:24} median {statistics.median(v) / MiB:6.1f} MiB/s over {len(v)} rounds")
    prune_ratios = [j / c for j, c in zip(rates["node-janitor prune"], rates["ctr"], strict=True)]
    print(
        f"ratio executor / ctr: median {statistics.median(ratios):.2f}"
        f" (rounds: {', '.join(f'{x:.2f}' for x in ratios)});"
        f" whole prune / ctr: median {statistics.median(prune_ratios):.2f}"
    )


if __name__ == "__main__":
    main()
