"""Planning speed: 2,000 images over shared bases (the issue's target: < 1 s), and the df report.

Run: .venv/bin/python -m bench.bench_planner [--images 2000] [--repeat 5]
Pure CPU (no runtime): a synthetic inventory shaped like containerd's GC label graph.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from node_janitor.node.inventory import BlobEntry, ContainerEntry, FileSystemEntry, ImageEntry, Inventory, SnapshotEntry
from node_janitor.node.plan import LEAST_RECENTLY_USED, SELECTIONS, Plan, PlanSettings, plan_cleanup
from node_janitor.node.usage import build_disk_report

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SNAP = "containerd.io/gc.ref.snapshot.overlayfs"


def build_inventory(
    n_images: int,
    n_bases: int = 40,
    seed: int = 1,
    *,
    n_os: int = 5,
    base_mib: tuple[int, int] = (30, 60),
    app_mib: tuple[int, int] = (1, 40),
    app_layers: tuple[int, int] = (1, 3),
    unpack_ratio: float = 2.0,
    fill: float = 0.92,
    in_use: float = 0.25,
) -> Inventory:
    """Images over shared bases: base b = os layer (b % n_os) + runtime layer b; each image adds its own app
    layers. `n_bases=0`: every image has a base of its own (nothing shared). Snapshots take `unpack_ratio`
    times their compressed layer; CRI's size is the image's content (manifest, config, compressed layers),
    as containerd 1.6 reports it. The disk is `fill` full."""
    rng = random.Random(seed)
    blobs: dict[str, BlobEntry] = {}
    snaps: dict[str, SnapshotEntry] = {}
    images = []
    containers = []

    def layer(name: str, parent: str, size: int) -> str:
        digest = f"sha256:{name}"
        blobs.setdefault(digest, BlobEntry(digest, size, labels={"containerd.io/uncompressed": "sha256:u" + name}))
        key = f"{parent}|{name}"
        usize = int(unpack_ratio * size)
        snaps.setdefault(key, SnapshotEntry(key, parent, size=usize, inodes=usize // 4096 + 1))
        return key

    def base(b: int) -> tuple[str, list[str]]:
        top = layer(f"os{b % n_os}", "", base_mib[0] << 20)
        top = layer(f"rt{b}", top, base_mib[1] << 20)
        return top, [f"sha256:os{b % n_os}", f"sha256:rt{b}"]

    bases = [base(b) for b in range(n_bases)]
    for i in range(n_images):
        top, chain = bases[rng.randrange(n_bases)] if n_bases else base(i)
        layers = list(chain)
        for k in range(rng.randint(*app_layers)):
            top = layer(f"app{i}-{k}", top, rng.randint(app_mib[0] << 20, app_mib[1] << 20))
            layers.append(f"sha256:app{i}-{k}")
        config = BlobEntry(f"sha256:cfg{i}", 2000, labels={SNAP: top})
        labels = {"containerd.io/gc.ref.content.config": config.digest}
        labels.update({f"containerd.io/gc.ref.content.l.{j}": d for j, d in enumerate(layers)})
        manifest = BlobEntry(f"sha256:man{i}", 900, labels=labels)
        blobs[config.digest], blobs[manifest.digest] = config, manifest
        tag = f"registry.example/team{i % 50}/app{i}:v{rng.randint(1, 9)}"
        images.append(
            ImageEntry(
                id=config.digest,
                names=(tag, config.digest),
                targets=(manifest.digest,),
                repo_tags=(tag,) if rng.random() > 0.1 else (),
                cri_size=config.size + manifest.size + sum(blobs[d].size for d in layers),
                created_at=NOW - timedelta(hours=rng.randint(1, 2000)),
            )
        )
        if rng.random() < in_use:
            containers.append(ContainerEntry(f"c{i}", image=config.digest, snapshot_key="", state="RUNNING"))
    total = sum(b.size for b in blobs.values()) + sum(s.size for s in snaps.values())
    capacity = int(total / fill)
    fs = FileSystemEntry("imagefs", "/var/lib/containerd", capacity, total, capacity - total, 10**7, 10**5)
    return Inventory(
        taken_at=NOW,
        images=tuple(images),
        blobs=tuple(blobs.values()),
        snapshots=tuple(snaps.values()),
        containers=tuple(containers),
        file_systems=(fs,),
    )


def time_planning(
    n_images: int, repeat: int, settings: PlanSettings, **shape: Any
) -> tuple[Plan, Inventory, list[float], list[float]]:
    """Plans and df reports of `repeat` fresh inventories (no cached graph): the last plan and inventory, the
    plan times and the report times in seconds."""
    plan_times, report_times = [], []
    for r in range(repeat):
        inventory = build_inventory(n_images, seed=r + 1, **shape)
        t0 = time.perf_counter()
        plan = plan_cleanup(inventory, settings, NOW)
        plan_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        build_disk_report(inventory, NOW)
        report_times.append(time.perf_counter() - t0)
    return plan, inventory, plan_times, report_times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--selection", choices=SELECTIONS, default=LEAST_RECENTLY_USED, help="images.selection")
    args = parser.parse_args()
    settings = PlanSettings(min_age=timedelta(minutes=2), selection=args.selection)
    plan, _, plan_times, report_times = time_planning(args.images, args.repeat, settings)
    inventory = build_inventory(args.images, seed=99)
    tracemalloc.start()
    plan_cleanup(inventory, settings, NOW)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    median = statistics.median(plan_times)
    print(
        f"images={args.images} selection={args.selection}"
        f" blobs={len(inventory.blobs)} snapshots={len(inventory.snapshots)}"
    )
    print(f"plan: median {median * 1000:.0f} ms, max {max(plan_times) * 1000:.0f} ms over {args.repeat} runs")
    print(
        f"plan: {len(plan.actions)} actions, target {plan.target.bytes >> 20} MiB, "
        f"planned {plan.planned_bytes >> 20} MiB, reaches target in one pass: {plan.reaches_target}"
    )
    print(f"df report: median {statistics.median(report_times) * 1000:.0f} ms")
    print(f"plan peak traced memory: {peak / 2**20:.1f} MiB")
    print(f"ratio to the 1 s budget: {median / 1.0:.2f}")


if __name__ == "__main__":
    main()
