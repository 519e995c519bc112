"""Precision on shared layers, real (issue 12, bench 2): the REAL kubelet's image GC against node-janitor's prune,
on two identical beds (same images over a few shared bases, same images in use, same disk, same fill).

Run (root): sudo .venv/bin/python -m bench.bench_precision_real [--images 40] [--bases 4] [--disk 1Gi]
    [--high 85 --low 70 --fill 90] [--kubelet-periods 3]
Kubelet side: the test bed's node (tests/support/node.py) with imageGCHigh/LowThresholdPercent = --high/--low,
imageMinimumGCAge 1s and eviction thresholds out of the way (1%), so only its periodic image GC acts; it runs
every 5 minutes (ImageGCPeriod, not configurable), so each of its passes costs up to 5 minutes. The images are
imported while the kubelet is stopped, so it detects them all at its start and they are old enough at its next
GC. Node-janitor side: a plain containerd bed and one `prune` with the same thresholds, minAge 0s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta

from kubernetes import client

from bench.bench_precision import Outcome, run_kubelet
from bench.realbed import (
    REPO,
    MiB,
    bound_pod,
    shared_base_images,
    unique_content,
    versions_line,
    wait_running,
    workdir,
)
from node_janitor.api import CleanupPolicy
from node_janitor.api.units import parse_quantity
from node_janitor.devbed import ContainerdBed, ImageBuilder
from node_janitor.devbed.images import OciImage
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.collect import collect_inventory
from node_janitor.node.engine import NodeEngine
from node_janitor.node.plan import SELECTIONS, ActionKind
from node_janitor.runtime import open_runtime
from tests.support.kube import ControlPlane, find_binaries
from tests.support.node import KubeletSettings, KubeNode

OVER_HIGH = re.compile(r'"Disk usage on image filesystem is over the high threshold.*amountToFree=(\d+)')
REMOVING = re.compile(r'"Removing image to free bytes" imageID="([^"]+)" size=(\d+)')
GC_PERIOD = 300.0


@dataclass
class KubeletPassResult:
    amount_to_free: int
    picks: list[tuple[str, int]] = field(default_factory=list)
    used_before: int = 0
    used_after: int = 0
    seconds_after_start: float = 0.0


def percent(bed: ContainerdBed) -> float:
    return bed.usage().used_percent


def kubelet_usage_percent(bed: ContainerdBed) -> int:
    u = bed.usage()
    return 100 - u.available * 100 // u.size


def fill_to(bed: ContainerdBed, fill: float) -> None:
    u = bed.usage()
    bed.fill(leave_available=int(u.size * (100 - fill) / 100))


def wait_stable(bed: ContainerdBed, quiet: float = 10.0, timeout: float = 120.0) -> None:
    """Until the disk's use has not changed for `quiet` seconds (containerd's GC after the removals is done)."""
    deadline, last, since = time.monotonic() + timeout, bed.usage().used, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(1)
        now = bed.usage().used
        if now != last:
            last, since = now, time.monotonic()


def kubelet_side(
    kube: ControlPlane, images: list[OciImage], in_use: list[OciImage], builder: ImageBuilder, args: argparse.Namespace
) -> tuple[KubeNode, float, int]:
    settings = KubeletSettings(
        image_gc_high_threshold_percent=args.high,
        image_gc_low_threshold_percent=args.low,
        image_minimum_gc_age="1s",
        eviction_hard={"imagefs.available": "1%", "nodefs.available": "1%"},
    )
    node = KubeNode(kube, find_binaries(), "bench-gc", workdir("node"), builder, parse_quantity(args.disk), settings)
    node.start()
    node.stop_kubelet()
    for start in range(0, len(images), 10):
        node.bed.import_images(images[start : start + 10])
    core = client.CoreV1Api(kube.api_client)
    for i, image in enumerate(in_use):
        core.create_namespaced_pod("default", bound_pod(f"user{i}", image.name, node.name))
    offset = node.log_path.stat().st_size
    node.start_kubelet()
    started = time.monotonic()
    wait_running(core, [f"user{i}" for i in range(len(in_use))])
    fill_to(node.bed, args.fill)
    return node, started, offset


def wait_for_kubelet_passes(
    node: KubeNode, started: float, offset: int, args: argparse.Namespace
) -> list[KubeletPassResult]:
    passes: list[KubeletPassResult] = []
    seen = 0
    while len(passes) < args.kubelet_periods and kubelet_usage_percent(node.bed) >= args.high:
        # the next GC: at most one period after the last one (they run at start + k * 5 min)
        k = int((time.monotonic() - started) // GC_PERIOD) + 1
        deadline = started + k * GC_PERIOD + 60
        used_before = node.bed.usage().used
        found = None
        while found is None and time.monotonic() < deadline:
            time.sleep(2)
            text = node.log_path.read_bytes()[offset:].decode(errors="replace")
            matches = list(OVER_HIGH.finditer(text))
            if len(matches) > seen:
                found = matches[seen]
        if found is None:
            print(f"  no image GC by the kubelet within period {k} (usage {kubelet_usage_percent(node.bed)}%)")
            break
        seen += 1
        wait_stable(node.bed)
        text = node.log_path.read_bytes()[offset:].decode(errors="replace")
        matches = list(OVER_HIGH.finditer(text))
        end = matches[seen].start() if len(matches) > seen else len(text)
        picks = [(m[1], int(m[2])) for m in REMOVING.finditer(text, found.end(), end)]
        r = KubeletPassResult(int(found[1]), picks, used_before, node.bed.usage().used, time.monotonic() - started)
        passes.append(r)
        print(
            f"  kubelet pass {len(passes)} at +{r.seconds_after_start:.0f}s: amountToFree {r.amount_to_free / MiB:.1f}"
            f" MiB, removed {len(picks)} images counting {sum(s for _, s in picks) / MiB:.1f} MiB, freed"
            f" {(used_before - r.used_after) / MiB:.1f} MiB, now {percent(node.bed):.1f}%"
        )
    return passes


@dataclass
class JanitorResult:
    images: int
    after_percent: float
    replay: Outcome | None = None  # the kubelet's rule replayed to the low watermark on the same store


async def janitor_side(
    images: list[OciImage], in_use: list[OciImage], builder: ImageBuilder, args: argparse.Namespace, selection: str
) -> JanitorResult:
    """One prune on a bed like the kubelet's, with `images.selection`; with the kubelet's rule replayed on the
    store it started from (its CRI sizes, passes forced until the low watermark)."""
    policy = CleanupPolicy.from_yaml(
        "apiVersion: nodejanitor.io/v1alpha1\nkind: CleanupPolicy\nmetadata: {name: bench}\n"
        f"spec:\n  thresholds: {{highPercent: {args.high}, lowPercent: {args.low}}}\n"
        f"  images: {{minAge: 0s, selection: {selection}}}\n"
    )
    with ContainerdBed(workdir("janitor"), disk_size=parse_quantity(args.disk), builder=builder) as bed:
        for start in range(0, len(images), 10):
            bed.import_images(images[start : start + 10])
        async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
            p = await run_pod(cri, bed.pod_log_dir, "users")
            for i, image in enumerate(in_use):
                c = await start_container(cri, p, f"user{i}", image.name, "sleep 3600")
                await wait_for_state(cri, c.id, "RUNNING")
            fill_to(bed, args.fill)
            before = bed.usage()
            need = before.used - int(before.size * args.low / 100)
            inventory = await collect_inventory(cri, containerd)
            replay = run_kubelet(inventory, {}, replay_args(args), inventory.taken_at)
            engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
            report = await engine.run_once(policy.spec)
            await asyncio.to_thread(wait_stable, bed, 5.0)
            after = bed.usage()
            freed = before.used - after.used
            removed = [a for a in report.plan.actions if a.kind is ActionKind.REMOVE_IMAGE]
            pause = builder.pause_image(bed.sandbox_image).id
            in_use_removed = sum(a.id in {pause, *(i.id for i in in_use)} for a in removed)
            engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
            again = await engine.run_once(policy.spec, dry_run=True)
            print(
                f"node-janitor {selection}: {before.used_percent:.1f}% -> {after.used_percent:.1f}%,"
                f" need {need / MiB:.1f} MiB;"
                f" one pass removed {len(removed)} images, counted {report.plan.planned_bytes / MiB:.1f} MiB, freed"
                f" {freed / MiB:.1f} MiB (beyond need {(freed - need) / MiB:.1f}"
                f" MiB); pause or in-use images removed: {in_use_removed}; second plan: {len(again.plan.actions)}"
                f" actions; errors {report.errors}"
            )
            print(
                f"  the kubelet's rule replayed on this store until low: {replay.images} images in {replay.passes}"
                f" passes ({replay.own_passes} by itself, stopping at {replay.own_final_percent:.1f}%), counted"
                f" {replay.counted / MiB:.1f} MiB, freed {replay.freed / MiB:.1f} MiB, to {replay.final_percent:.1f}%"
            )
            await remove_all_pods(cri)
            return JanitorResult(len(removed), after.used_percent, replay)


def replay_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(high=args.high, low=args.low, min_age=timedelta(0), max_passes=50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--bases", type=int, default=4, help="0: every image has a base of its own")
    parser.add_argument("--base-mib", type=int, default=40)
    parser.add_argument("--app-mib", default="1,6")
    parser.add_argument("--disk", default="1Gi")
    parser.add_argument("--high", type=int, default=85)
    parser.add_argument("--low", type=int, default=70)
    parser.add_argument("--fill", type=float, default=90.0)
    parser.add_argument("--kubelet-periods", type=int, default=3)
    parser.add_argument("--selections", default=",".join(SELECTIONS), help="node-janitor's images.selection values")
    args = parser.parse_args()
    lo, hi = (int(x) for x in args.app_mib.split(","))
    builder = ImageBuilder()
    print(versions_line(), flush=True)
    t0 = time.monotonic()
    images = shared_base_images(builder, args.images, args.bases, args.base_mib, (lo, hi))
    in_use = images[:: max(1, args.bases)][:3]  # on the first base: the other bases can go
    content = unique_content(images)
    print(
        f"{args.images} images over {args.bases or args.images} bases of {args.base_mib} MiB"
        f" (+ app layers {lo}-{hi} MiB),"
        f" {len(in_use)} in use; {content / MiB:.0f} MiB of content; disk {args.disk} filled to {args.fill}%;"
        f" high {args.high}% low {args.low}% (built in {time.monotonic() - t0:.0f}s)"
    )
    with ControlPlane(workdir("kube"), find_binaries(), manifests=[REPO / "crds"]) as kube:
        node, started, offset = kubelet_side(kube, images, in_use, builder, args)
        try:
            before = node.bed.usage()
            need = before.used - int(before.size * args.low / 100)
            print(f"kubelet: filled to {before.used_percent:.1f}% (its usage {kubelet_usage_percent(node.bed)}%),"
                  f" need {need / MiB:.1f} MiB; waiting for its image GC (every 5 min)")  # fmt: skip
            janitor = {
                sel: asyncio.run(janitor_side(images, in_use, builder, args, sel)) for sel in args.selections.split(",")
            }
            passes = wait_for_kubelet_passes(node, started, offset, args)
            after = node.bed.usage()
            picks = sum(len(p.picks) for p in passes)
            counted = sum(s for p in passes for _, s in p.picks)
            freed = before.used - after.used
            pause = builder.pause_image(node.bed.sandbox_image).id
            picked = {i for p in passes for i, _ in p.picks}
            print(
                f"kubelet removed the pause image: {pause in picked}; an in-use image: "
                f"{bool(picked & {i.id for i in in_use})}"
            )
            state = "below high: the kubelet does nothing more" if kubelet_usage_percent(node.bed) < args.high else ""
            print(
                f"kubelet: {before.used_percent:.1f}% -> {after.used_percent:.1f}% in {len(passes)} passes ({state}),"
                f" removed {picks} images, counted {counted / MiB:.1f} MiB, freed {freed / MiB:.1f} MiB"
                f" (beyond need {(freed - need) / MiB:.1f} MiB), reached low: {after.used_percent <= args.low}"
            )
            for sel, j in janitor.items():
                replayed = j.replay.images if j.replay else 0
                print(
                    f"ratios, {sel}: images removed node-janitor/kubelet {j.images}/{picks}"
                    f" = {j.images / picks if picks else float('nan'):.2f}; against the kubelet's rule replayed to low"
                    f" {j.images}/{replayed} = {j.images / replayed if replayed else float('nan'):.2f};"
                    f" passes 1 vs {len(passes)}; node-janitor reached low in one pass: {j.after_percent <= args.low}"
                )
        finally:
            node.close()
            left = node.leftovers()
            if left:
                print(f"left behind: {left}")


if __name__ == "__main__":
    main()
