"""Agent cost (issue 12, bench 3): resident memory and CPU of `node-janitor agent` idle and during a sweep; plan
time at 2,000 images / 10,000 snapshots and log planning over 20,000 files.

Run (root): sudo .venv/bin/python -m bench.bench_agent_cost [--idle-seconds 30] [--images 20] [--skip-agent]
Agent part: the real apiserver (a Node object, no kubelet), a containerd bed on a 512 MiB disk with --images
images and one running container, the agent subprocess as tests/support/agentbed.py starts it (monitor every 2 s,
heartbeat 60 s) with its NodeCleanup's policy; idle = after its startup run, policy held, monitor running;
sweep = a ballast file takes the disk above the high watermark, until the agent reports the watermark run.
CPU is utime + stime from /proc/<pid>/stat over wall time; RSS is VmRSS, sampled every 50 ms.
Synthetic part (pure CPU): bench_planner's generator with 4-6 app layers per image (~10,000 snapshots), the
plan and the df report; 20,000 real empty-ish log files in the pod log layout, scanned and planned.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.bench_planner import time_planning
from bench.realbed import REPO, MiB, workdir
from node_janitor.devbed import ContainerdBed, ImageBuilder, Layer
from node_janitor.node.logs import LogSettings, plan_log_rules, scan_log_tree
from node_janitor.node.plan import PlanSettings
from tests.support.agentbed import AgentFactory, apply_nodecleanup, create_node, fill_to_percent, run_container, status
from tests.support.kube import ControlPlane, find_binaries
from tests.support.procstat import cpu_seconds, rss_bytes

TICK = os.sysconf("SC_CLK_TCK")
POLICY = {"thresholds": {"highPercent": 75, "lowPercent": 60}, "images": {"minAge": "1s"}}


def sample(pid: int, until: float, done: Callable[[], bool] | None = None) -> tuple[float, float, int, float]:
    """CPU share of one core, seconds of CPU, peak RSS and wall seconds from now until `until` (monotonic) or
    `done()` is true."""
    c0, t0, peak = cpu_seconds(pid), time.monotonic(), rss_bytes(pid)
    while time.monotonic() < until and not (done and done()):
        time.sleep(0.05)
        peak = max(peak, rss_bytes(pid))
    wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - c0
    return cpu / wall, cpu, peak, wall


def agent_part(args: argparse.Namespace) -> None:
    with ControlPlane(workdir("kube"), find_binaries(), manifests=[REPO / "crds"]) as kube:
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/nodecleanups.nodejanitor.io")
        builder = ImageBuilder()
        with ContainerdBed(workdir("agent"), disk_size=512 * MiB, builder=builder) as bed:
            images = [
                builder.build(f"bench.local/cost/app{i}:v1", [builder.busybox_layer(), Layer.random(8 * MiB, f"c{i}")])
                for i in range(args.images)
            ]
            for start in range(0, len(images), 10):
                bed.import_images(images[start : start + 10])
            asyncio.run(run_container(bed, images[0]))
            node = "bench-agent"
            create_node(kube, node)
            apply_nodecleanup(kube, node, POLICY)
            factory = AgentFactory(kube, workdir("agent-run"))
            agent = factory.start(node, bed)
            try:
                deadline = time.monotonic() + 60
                while status(kube, node).get("lastRun", {}).get("trigger") != "startup":
                    if time.monotonic() > deadline:
                        raise RuntimeError("no startup run within 60 s:\n" + agent.log()[-2000:])
                    time.sleep(0.5)
                time.sleep(3)
                pid = agent.process.pid
                rss_start = rss_bytes(pid)
                share, cpu, peak, wall = sample(pid, time.monotonic() + args.idle_seconds)
                rss_end = rss_bytes(pid)
                idle_rss, idle_share = rss_end, share
                print(
                    f"idle ({wall:.0f} s, policy held, monitor every 2 s): CPU {share * 100:.2f}% of a core"
                    f" ({cpu:.2f} s), RSS {rss_start / MiB:.1f} -> {rss_end / MiB:.1f} MiB (peak {peak / MiB:.1f})"
                )
                filler = threading.Thread(target=fill_to_percent, args=(bed, 80))

                def reported() -> bool:  # the watermark's run, or the prediction's (thresholds.predict) ahead of it
                    return status(kube, node).get("lastRun", {}).get("trigger") in ("watermark", "prediction")

                filler.start()  # sampled from the start of the fill: the agent may act before it ends
                share, cpu, peak, wall = sample(pid, time.monotonic() + 90, reported)
                filler.join()
                print(
                    f"sweep (ballast to 80%, agent back to {bed.usage().used_percent:.1f}%; {wall:.1f} s from the start"
                    f" of the fill to the reported run): CPU {cpu:.2f} s ({share * 100:.0f}% of a core over that"
                    f" time), peak RSS {peak / MiB:.1f} MiB"
                )
                print(
                    f"targets: idle RSS < 80 MiB: {idle_rss < 80 * MiB} ({idle_rss / MiB:.1f} MiB, ratio"
                    f" {idle_rss / (80 * MiB):.2f}); idle CPU < 1% of a core: {idle_share < 0.01}"
                    f" ({idle_share * 100:.2f}%, ratio {idle_share / 0.01:.2f})"
                )
            finally:
                codes = factory.stop_all()
                if any(codes):
                    print(f"agent exit codes {codes}")


def planning_part(args: argparse.Namespace) -> None:
    settings = PlanSettings(min_age=timedelta(minutes=2))
    plan, inventory, times, report_times = time_planning(2000, args.repeat, settings, app_layers=(4, 6))
    print(
        f"plan: {len(inventory.images)} images, {len(inventory.snapshots)} snapshots, {len(inventory.blobs)} blobs:"
        f" median {statistics.median(times) * 1000:.0f} ms (max {max(times) * 1000:.0f}) over {args.repeat} runs,"
        f" {len(plan.actions)} actions; df report median {statistics.median(report_times) * 1000:.0f} ms"
    )
    with tempfile.TemporaryDirectory(prefix="nj-logs-") as root:
        pods, containers, files = args.log_files // 10, 2, 5
        for p in range(pods):
            for c in range(containers):
                d = Path(root, f"default_pod{p}_{p:08d}-0000-0000-0000-000000000000", f"c{c}")
                d.mkdir(parents=True)
                for f in range(files):
                    (d / f"{f}.log").write_bytes(b"x" * 100)
        log_settings = LogSettings()
        scan, plan_t = [], []
        n = 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            tree = scan_log_tree(Path(root), [], [])
            t1 = time.perf_counter()
            actions = plan_log_rules(tree, log_settings, datetime.now(UTC))
            scan.append(t1 - t0)
            plan_t.append(time.perf_counter() - t1)
            n = len(tree.files)
        print(
            f"logs: {n} files in {pods} pod dirs: scan median {statistics.median(scan) * 1000:.0f} ms,"
            f" plan median {statistics.median(plan_t) * 1000:.0f} ms ({len(actions)} actions)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--log-files", type=int, default=20000)
    parser.add_argument("--skip-agent", action="store_true")
    args = parser.parse_args()
    planning_part(args)
    if not args.skip_agent:
        agent_part(args)


if __name__ == "__main__":
    main()
