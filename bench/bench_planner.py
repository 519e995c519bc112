"""Planning speed: 2,000 images over shared bases (the issue's target: < 1 s), and the df report.

Run: .venv/bin/python bench/bench_planner.py [--images 2000] [--repeat 5]
Pure CPU (no runtime): a synthetic inventory shaped like containerd's GC label graph.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from node_janitor.inventory import BlobEntry, ContainerEntry, FileSystemEntry, ImageEntry, Inventory, SnapshotEntry
from node_janitor.planner import PlanSettings, plan_cleanup
from node_janitor.usage import build_disk_report

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SNAP = "containerd.io/gc.ref.snapshot.overlayfs"


def build_inventory(n_images: int, n_bases: int = 40, seed: int = 1) -> Inventory:
    rng = random.Random(seed)
    blobs: dict[str, BlobEntry] = {}
    snaps: dict[str, SnapshotEntry] = {}
    images = []
    containers = []

    def layer(name: str, parent: str, size: int) -> str:
        digest = f"sha256:{name}"
        blobs.setdefault(digest, BlobEntry(digest, size, labels={"containerd.io/uncompressed": "sha256:u" + name}))
        key = f"{parent}|{name}"
        snaps.setdefault(key, SnapshotEntry(key, parent, size=2 * size, inodes=size // 4096 + 1))
        return key

    bases = []
    for b in range(n_bases):
        top = layer(f"os{b % 5}", "", 30 << 20)
        top = layer(f"rt{b}", top, 60 << 20)
        bases.append((top, [f"sha256:os{b % 5}", f"sha256:rt{b}"]))
    for i in range(n_images):
        top, chain = bases[rng.randrange(n_bases)]
        layers = list(chain)
        for k in range(rng.randint(1, 3)):
            top = layer(f"app{i}-{k}", top, rng.randint(1 << 20, 40 << 20))
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
                created_at=NOW - timedelta(hours=rng.randint(1, 2000)),
            )
        )
        if rng.random() < 0.25:
            containers.append(ContainerEntry(f"c{i}", image=config.digest, snapshot_key="", state="RUNNING"))
    total = sum(b.size for b in blobs.values()) + sum(s.size for s in snaps.values())
    capacity = int(total / 0.92)
    fs = FileSystemEntry("imagefs", "/var/lib/containerd", capacity, total, capacity - total, 10**7, 10**5)
    return Inventory(
        taken_at=NOW,
        images=tuple(images),
        blobs=tuple(blobs.values()),
        snapshots=tuple(snaps.values()),
        containers=tuple(containers),
        file_systems=(fs,),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    settings = PlanSettings(min_age=timedelta(minutes=2))
    plan_times, report_times = [], []
    plan = None
    for r in range(args.repeat):
        inventory = build_inventory(args.images, seed=r + 1)  # fresh: no cached graph
        t0 = time.perf_counter()
        plan = plan_cleanup(inventory, settings, NOW)
        plan_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        build_disk_report(inventory, NOW)
        report_times.append(time.perf_counter() - t0)
    assert plan is not None
    inventory = build_inventory(args.images, seed=99)
    tracemalloc.start()
    plan_cleanup(inventory, settings, NOW)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    median = statistics.median(plan_times)
    print(f"images={args.images} blobs={len(inventory.blobs)} snapshots={len(inventory.snapshots)}")
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
