"""Fill-rate sweep (issue 22), first version: how fast a disk may fill before node-janitor lets it reach the kubelet's
eviction threshold, with prediction on (thresholds.predict) and off (today's watermark trigger).

Run (root): sudo .venv/bin/python -m bench.bench_fill_rate [--rates 2,5,10,20] [--modes predict,watermark]
    [--source registry|import] [--kube memory|real]
Each point: a fresh containerd bed on a 512 MiB disk and `node-janitor`'s agent in a subprocess with the policy
75/60, minAge 10s, given its NodeCleanup by an in-memory apiserver (`--kube memory`, tests/support/agentbed.py's
MemoryKube: no control plane to build) or a Node object on the real apiserver (`--kube real`). No kubelet yet:
DiskPressure and evictions are not observed; crossing 85% (the kubelet's imagefs.available<15%) is what would set
DiskPressure. The disk: a ballast file to 15%, then old unused images to about 50% (the removable ones, older than
minAge when the fill starts), then a wave of new images worth 40% of the disk (--wave-percent) arriving at RATE% of
the disk a second. The wave is pulled through CRI PullImage from a loopback registry (distribution, plain HTTP on
127.0.0.1: `devbed.registry`), as the kubelet pulls, up to four pulls at once, each started at its share of the
schedule (`--source import`: `ctr images import` of the same images instead); pulls here top out at about 5-9% of
the disk a second (what each point reached is printed). A monitor samples the disk every 0.1 s.

Per point: the fill rate reached (least squares over the wave), whether and how long the disk was above 85%, the
peak, the time from the end of the wave back to the low watermark (60%, give or take an image), the bytes removed
beyond need (how far below 60% the disk ended), and the agent's runs by trigger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.realbed import MiB, workdir
from node_janitor.agent.node_agent import AgentConfig, NodeAgent
from node_janitor.devbed import ContainerdBed, ImageBuilder, Layer
from node_janitor.devbed.images import OciImage
from node_janitor.devbed.registry import Registry
from node_janitor.runtime import open_runtime
from tests.support.agentbed import Agent, AgentFactory, MemoryKube, apply_nodecleanup, create_node, fill_to_percent
from tests.support.kube import REPO, ControlPlane, find_binaries, free_ports
from tests.support.poll import wait_for

THRESHOLD = 85.0  # imagefs.available<15%
LOW = 60.0
DISK = 512 * MiB
IMAGE_MIB = 6  # one wave image: a 6 MiB random layer (about 12 MiB on disk: its blob and its snapshot)
OLD_MIB = 8


def policy(predict: bool) -> dict[str, Any]:
    return {"thresholds": {"highPercent": 75, "lowPercent": 60, "predict": predict}, "images": {"minAge": "10s"}}


@dataclass
class DiskMonitor:
    """The bed's disk every 0.1 s, in a thread."""

    bed: ContainerdBed
    t0: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, used, percent)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> DiskMonitor:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            u = self.bed.usage()
            self.samples.append((time.monotonic() - self.t0, u.used, u.used_percent))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def seconds_above(self, percent: float) -> float:
        return sum(b[0] - a[0] for a, b in zip(self.samples, self.samples[1:], strict=False) if a[2] > percent)

    def first(self, after: float, below: float) -> float | None:
        return next((t for t, _, pct in self.samples if t >= after and pct <= below), None)

    def rate(self, start: float, end: float) -> float:
        """Percent a second over [start, end]: the least-squares slope of the samples (the reclaim included)."""
        pts = [(t, pct) for t, _, pct in self.samples if start <= t <= end]
        if len(pts) < 2:
            return 0.0
        mt = sum(t for t, _ in pts) / len(pts)
        mp = sum(p for _, p in pts) / len(pts)
        var = sum((t - mt) ** 2 for t, _ in pts)
        return sum((t - mt) * (p - mp) for t, p in pts) / var if var else 0.0


def fill_wave(bed: ContainerdBed, wave: list[OciImage], rate_percent: float) -> None:
    """Import `wave` so that its disk use arrives at `rate_percent` of the disk a second: each image is due at its
    share of the schedule; up to four imports run at once when the schedule runs ahead of them."""
    per_image = 2 * IMAGE_MIB * MiB
    per_second = DISK * rate_percent / 100
    start = time.monotonic()
    slots = threading.Semaphore(4)
    threads: list[threading.Thread] = []

    def one(image: OciImage) -> None:
        try:
            bed.import_images([image])
        finally:
            slots.release()

    for n, image in enumerate(wave):
        due = start + n * per_image / per_second
        time.sleep(max(0.0, due - time.monotonic()))
        slots.acquire()
        thread = threading.Thread(target=one, args=(image,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


def pull_wave(bed: ContainerdBed, refs: list[str], rate_percent: float) -> None:
    """Pull `refs` through CRI so that their disk use arrives at `rate_percent` of the disk a second (each pull
    started at its share of the schedule, at most four at once)."""
    per_image = 2 * IMAGE_MIB * MiB
    per_second = DISK * rate_percent / 100

    async def pulls() -> None:
        async with open_runtime(bed.address, bed.namespace) as (cri, _):
            slots = asyncio.Semaphore(4)
            start = time.monotonic()

            async def one(ref: str) -> None:
                try:
                    await cri.pull_image(ref, deadline=300)
                finally:
                    slots.release()

            tasks = []
            for n, ref in enumerate(refs):
                await asyncio.sleep(max(0.0, start + n * per_image / per_second - time.monotonic()))
                await slots.acquire()
                tasks.append(asyncio.create_task(one(ref)))
            await asyncio.gather(*tasks)

    asyncio.run(pulls())


@contextmanager
def bed_for(name: str, builder: ImageBuilder) -> Iterator[ContainerdBed]:
    with ContainerdBed(workdir(name), disk_size=DISK, builder=builder) as bed:
        yield bed


def runs_of(agent: Agent) -> dict[str, int]:
    """The agent's runs by trigger (/metrics)."""
    return {
        k.split('trigger="')[1].split('"')[0]: int(v)
        for k, v in agent.metrics().items()
        if k.startswith("node_janitor_runs_total{") and v
    }


class MemoryAgent:
    """`node-janitor agent` in a subprocess (`python -m bench.bench_fill_rate agent ...`) with the in-memory apiserver
    (MemoryKube) holding its NodeCleanup: the agent's own code, monitor and engine, without a control plane."""

    def __init__(self, name: str, bed: ContainerdBed, rules: dict[str, Any]) -> None:
        self.port = free_ports(1)[0]
        self.log_path = workdir(f"{name}-agent") / "agent.log"
        state = str(self.log_path.parent / "state")
        args = [sys.executable, "-m", "bench.bench_fill_rate", "agent", name, bed.address, bed.namespace,
                str(bed.pod_log_dir), state, str(self.port), json.dumps(rules)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'operator'}:{REPO}", "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.agent = Agent(name, self.process, self.log_path, self.port, self.log_path.parent / "state")
        try:  # slow to start at a load of 20 and more
            wait_for("the agent's /healthz", lambda: self.process.poll() is None and self.agent.http("/healthz")[0]
                     == 200, 120)  # fmt: skip
        except AssertionError:
            print(self.agent.log()[-3000:])
            self.process.kill()  # never left behind (one was, after this timeout)
            self.process.wait()
            raise

    def stop(self) -> None:
        self.agent.terminate()


def run_memory_agent(argv: list[str]) -> int:
    """The subprocess of `MemoryAgent`."""
    name, socket, namespace, pod_log_dir, state_dir, port, rules = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cleanup = {"metadata": {"name": name, "generation": 1}, "spec": {"nodeName": name, "policy": json.loads(rules)}}
    kube = MemoryKube({"NodeCleanup": cleanup, "Node": {"metadata": {"name": name, "uid": "u"}, "status": {}}})
    config = AgentConfig(name, containerd_socket=socket, namespace=namespace, pod_log_dir=Path(pod_log_dir),
                         state_dir=Path(state_dir), metrics_port=int(port), metrics_host="127.0.0.1")  # fmt: skip
    return asyncio.run(NodeAgent(config, kube).run())


def point(kube: ControlPlane | None, builder: ImageBuilder, old: list[OciImage], wave: list[OciImage], rate: float,
          predict: bool, n: int, registry: Registry | None, refs: list[str]) -> dict[str, Any]:  # fmt: skip
    name = f"fill-{n}"
    with bed_for(name, builder) as bed:
        if registry is not None:
            bed.trust_plain_http_registry(registry.host)
        fill_to_percent(bed, 15)
        for start in range(0, len(old), 8):
            bed.import_images(old[start : start + 8])
        if kube is None:
            memory = MemoryAgent(name, bed, policy(predict))
            agent, stop = memory.agent, memory.stop
        else:
            create_node(kube, name)
            apply_nodecleanup(kube, name, policy(predict))
            factory = AgentFactory(kube, workdir(f"{name}-agent"))
            agent = factory.start(name, bed)
            stop = factory.stop_all
        try:
            wait_for("the startup run", lambda: "startup" in runs_of(agent), 60)
            time.sleep(10.5)  # the old images pass minAge (10s) before the wave
            start_pct = bed.usage().used_percent
            monitor = DiskMonitor(bed).start()
            if registry is not None:
                pull_wave(bed, refs, rate)
            else:
                fill_wave(bed, wave, rate)
            wave_end = time.monotonic() - monitor.t0
            settle = time.monotonic() + 40
            while time.monotonic() < settle:
                time.sleep(0.5)
                if monitor.samples[-1][2] <= LOW + 1.5 and time.monotonic() - monitor.t0 > wave_end + 5:
                    break
            monitor.stop()
            end = bed.usage()
            peak = max(pct for _, _, pct in monitor.samples)
            back = monitor.first(wave_end, LOW + 1.5)
            return {
                "source": "registry" if registry is not None else "import",
                "rate": rate,
                "predict": predict,
                "start": start_pct,
                "achieved": monitor.rate(0.0, wave_end),
                "gross": 100 * len(wave) * 2 * IMAGE_MIB * MiB / DISK / max(wave_end, 0.1),
                "wave s": wave_end,
                "peak": peak,
                "above 85 s": monitor.seconds_above(THRESHOLD),
                "back to low s": None if back is None else back - wave_end,
                "beyond low MiB": (int((end.used + end.available) * LOW / 100) - end.used) / MiB,
                "end": end.used_percent,
                "runs": runs_of(agent),
            }
        finally:
            stop()


def show(r: dict[str, Any]) -> None:
    back = "never" if r["back to low s"] is None else f"{r['back to low s']:.1f} s"
    print(
        f"{r['source']}: fill rate {r['rate']:g}%/s (reached {r['gross']:.1f}%/s over {r['wave s']:.1f} s, "
        f"{r['achieved']:.1f}%/s net of reclaim), prediction "
        f"{'on' if r['predict'] else 'off'}: from {r['start']:.1f}%, peak {r['peak']:.1f}%, above 85% for "
        f"{r['above 85 s']:.1f} s, back to <= {LOW + 1.5:g}% {back} after the wave, end {r['end']:.1f}% "
        f"({r['beyond low MiB']:.0f} MiB below 60%), runs {r['runs']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="2,5,10,20", help="percent of the disk a second, comma-separated")
    parser.add_argument("--modes", default="predict,watermark")
    parser.add_argument("--source", choices=("registry", "import"), default="registry")
    parser.add_argument("--kube", choices=("memory", "real"), default="memory")
    parser.add_argument("--wave-percent", type=float, default=40, help="the wave's size, percent of the disk")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    modes = [m == "predict" for m in args.modes.split(",")]
    builder = ImageBuilder()
    b = builder
    old_count = int(DISK * 0.35 / (2 * OLD_MIB * MiB))
    wave_count = int(DISK * args.wave_percent / 100 / (2 * IMAGE_MIB * MiB))
    old = [b.build(f"bench.local/old/o{i}:v1", [Layer.random(OLD_MIB * MiB, f"old{i}")]) for i in range(old_count)]
    wave = [b.build(f"bench.local/wave/w{i}:v1", [Layer.random(IMAGE_MIB * MiB, f"w{i}")]) for i in range(wave_count)]
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(Registry(workdir("registry"))) if args.source == "registry" else None
        refs = [registry.push(image) for image in wave] if registry is not None else []
        kube = None
        if args.kube == "real":
            kube = stack.enter_context(ControlPlane(workdir("kube"), find_binaries(), manifests=[REPO / "crds"]))
            kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/nodecleanups.nodejanitor.io")
        n = 0
        for rate in rates:
            for predict in modes:
                n += 1
                show(point(kube, builder, old, wave, rate, predict, n, registry, refs))


if __name__ == "__main__":
    if sys.argv[1:2] == ["agent"]:
        sys.exit(run_memory_agent(sys.argv[2:]))
    main()
