"""Precision on shared layers (issue 12, bench 2): what the kubelet's image GC rule and node-janitor's plan remove to
bring the same disk from above its high watermark to its low one, on generated inventories.

Run: .venv/bin/python -m bench.bench_precision [--images 2000] [--seeds 3] [--high 85 --low 75 --fill 92]
Pure CPU. Each rule runs in passes on the store left by the previous pass (containerd's GC applied: what no
remaining image reaches is gone) until the disk is at or below the low watermark; the kubelet's rule runs on
its own only while usage >= high, so the passes it would never run by itself are counted apart ("forced").
The real kubelet on a real bed: bench/bench_precision_real.py.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from bench.bench_planner import NOW, build_inventory
from bench.kubelet_rule import kubelet_gc_pass, kubelet_view, remove_images
from node_janitor.node.inventory import Inventory
from node_janitor.node.plan import FEWEST_IMAGES, LEAST_RECENTLY_USED, ActionKind, PlanSettings, plan_cleanup

SHAPES: dict[str, dict[str, object]] = {
    # a few big shared bases (language runtimes), small app layers on top: the case dedup is for
    "few-bases": {"n_bases": 4, "n_os": 2, "base_mib": (30, 120), "app_mib": (1, 15)},
    # bench_planner's shape: 40 bases over 5 OS layers, app layers up to 40 MiB
    "planner": {},
    # nothing shared: every image has its own base
    "unshared": {"n_bases": 0},
}


@dataclass
class Outcome:
    passes: int = 0
    own_passes: int = 0  # passes the rule runs by itself (the kubelet's: only while usage >= high)
    images: int = 0
    counted: int = 0  # what the rule believed it freed
    freed: int = 0  # what containerd's GC frees
    final_percent: float = 0.0
    own_final_percent: float = 0.0  # where the rule leaves the disk by itself
    stalled: bool = False  # nothing eligible left before the target


def used(inventory: Inventory) -> tuple[int, int, int]:
    fs = inventory.file_system("imagefs")
    assert fs is not None
    return fs.size, fs.used, fs.available


def run_kubelet(
    inv: Inventory, last_used: dict[str, datetime], args: argparse.Namespace, now: datetime = NOW
) -> Outcome:
    out = Outcome()
    on_its_own = True
    while True:
        capacity, used_bytes, available = used(inv)
        if used_bytes <= capacity * args.low // 100 or out.passes >= args.max_passes:
            break
        view = kubelet_view(inv, last_used, now)
        p = kubelet_gc_pass(view, capacity, available, args.high, args.low, args.min_age, now)
        if not p.triggered:  # below high, above low: the kubelet waits; force the rule to go on
            if on_its_own:
                out.own_final_percent = 100 * used_bytes / capacity
            on_its_own = False
            p = kubelet_gc_pass(view, capacity, available, 0, args.low, args.min_age, now)
        if not p.picks:
            out.stalled = True
            break
        inv, freed = remove_images(inv, p.picks, now)
        out.passes += 1
        out.own_passes += on_its_own
        out.images += len(p.picks)
        out.counted += p.counted
        out.freed += freed
    capacity, used_bytes, _ = used(inv)
    out.final_percent = 100 * used_bytes / capacity
    if on_its_own:
        out.own_final_percent = out.final_percent
    return out


def run_janitor(inv: Inventory, last_used: dict[str, datetime], args: argparse.Namespace, selection: str) -> Outcome:
    settings = PlanSettings(high_percent=args.high, low_percent=args.low, min_age=args.min_age, selection=selection)
    out = Outcome()
    while True:
        capacity, used_bytes, _ = used(inv)
        if used_bytes <= capacity * args.low // 100 or out.passes >= args.max_passes:
            break
        plan = plan_cleanup(inv, settings, NOW, last_used)
        ids = [a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE]
        if not ids:
            out.stalled = True
            break
        inv, freed = remove_images(inv, ids, NOW)
        out.passes += 1
        out.own_passes += 1
        out.images += len(ids)
        out.counted += plan.planned_bytes
        out.freed += freed
    capacity, used_bytes, _ = used(inv)
    out.final_percent = out.own_final_percent = 100 * used_bytes / capacity
    return out


def remembered_use(inv: Inventory, seed: int) -> dict[str, datetime]:
    """Last use as both sides know it: running images now, half of the others some time after they arrived."""
    rng = random.Random(seed)
    users = inv.image_users
    out = {}
    for image in inv.images:
        assert image.created_at is not None
        if users.get(image.id):
            out[image.id] = NOW
        elif rng.random() < 0.5:
            out[image.id] = image.created_at + (NOW - image.created_at) * rng.random()
    return out


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--high", type=int, default=85)
    parser.add_argument("--low", type=int, default=75)
    parser.add_argument("--fill", type=float, default=92.0)
    parser.add_argument("--max-passes", type=int, default=50)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args()
    args.min_age = timedelta(minutes=2)
    print(f"images={args.images} fill={args.fill}% high={args.high}% low={args.low}% minAge=2m seeds={args.seeds}")
    print(
        "shape      seed rule        passes(own) images  counted      freed        need         beyond need"
        "  final (by itself)"
    )
    summary = []
    rules = {"lru": LEAST_RECENTLY_USED, "fewest": FEWEST_IMAGES}
    for shape in args.shapes.split(","):
        k_images, k_passes, k_own = [], [], []
        ratios: dict[str, list[float]] = {r: [] for r in rules}
        j_images: dict[str, list[int]] = {r: [] for r in rules}
        j_one_pass: dict[str, list[bool]] = {r: [] for r in rules}
        j_times: dict[str, list[float]] = {r: [] for r in rules}
        for seed in range(1, args.seeds + 1):
            inv = build_inventory(args.images, seed=seed, fill=args.fill / 100, **SHAPES[shape])  # type: ignore[arg-type]
            capacity, used_bytes, _ = used(inv)
            need = used_bytes - capacity * args.low // 100
            last_used = remembered_use(inv, seed)
            results = {"kubelet": run_kubelet(inv, last_used, args)}
            for rule, selection in rules.items():
                started = time.perf_counter()
                results[f"nj {rule}"] = run_janitor(inv, last_used, args, selection)
                j_times[rule].append(time.perf_counter() - started)
            for name, r in results.items():
                print(
                    f"{shape:10} {seed:4} {name:12} {r.passes:3}({r.own_passes:2})  {r.images:6}  {mib(r.counted):>11}"
                    f"  {mib(r.freed):>11}  {mib(need):>11}  {mib(r.freed - need):>11}"
                    f"  {r.final_percent:5.1f}% ({r.own_final_percent:4.1f}%)" + ("  stalled" if r.stalled else "")
                )
            k = results["kubelet"]
            k_images.append(k.images)
            k_passes.append(k.passes)
            k_own.append(k.own_final_percent)
            for rule in rules:
                j = results[f"nj {rule}"]
                ratios[rule].append(j.images / k.images if k.images else float("nan"))
                j_images[rule].append(j.images)
                j_one_pass[rule].append(j.passes == 1)
        summary.append(
            f"{shape:10} kubelet: median {statistics.median(k_images):.0f} images in {statistics.median(k_passes):.0f}"
            f" passes to reach low (by itself it stops at {statistics.median(k_own):.1f}%)"
        )
        for rule, selection in rules.items():
            median = statistics.median(ratios[rule])
            summary.append(
                f"{'':10} node-janitor {selection:17}: images / kubelet's median {median:.2f} "
                f"({statistics.median(j_images[rule]):.0f} vs {statistics.median(k_images):.0f};"
                f" {1 - median:.0%} fewer);"
                f" one pass: {sum(j_one_pass[rule])}/{len(j_one_pass[rule])};"
                f" plan+passes median {1000 * statistics.median(j_times[rule]):.0f} ms"
            )
    print()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
