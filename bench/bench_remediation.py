"""Remediation, kubelet alone vs kubelet + node-janitor (issue 12, bench 1): the same scenario on two fresh real
nodes in one invocation.

Run (root): sudo .venv/bin/python -m bench.bench_remediation [--wave 12] [--wave-mib 7] [--transition 30s]
Each node: the test bed's kubelet (tests/support/node.py) with its defaults (evictionHard imagefs.available<15%,
image GC 85/80%, imageMinimumGCAge 2m) except evictionPressureTransitionPeriod (--transition, default 5m in the
kubelet), on its own 512 MiB containerd disk; two pods running; a ballast file to 60%; then --wave new unused
images imported one a second, which take the disk past 85% (the kubelet's eviction threshold). The second node
also runs `node-janitor agent` with the policy high 75% / low 60%, minAge 1s. A monitor samples the disk every
0.2 s and the Node's DiskPressure every 0.5 s until the disk is back under the threshold and DiskPressure is
False (or --timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from bench.realbed import MiB, run_app_pods, versions_line, workdir
from node_janitor.devbed import ContainerdBed, ImageBuilder, Layer
from node_janitor.devbed.images import OciImage
from tests.support.agentbed import AgentFactory, apply_nodecleanup, fill_to_percent, image_ids
from tests.support.kube import REPO, ControlPlane, find_binaries
from tests.support.node import KubeletSettings, KubeNode

THRESHOLD = 85.0  # imagefs.available<15%
LOW = 60.5  # the policy's low watermark (60%), give or take the last import
POLICY = {"thresholds": {"highPercent": 75, "lowPercent": 60}, "images": {"minAge": "1s"}}


@dataclass
class Monitor:
    """Samples the bed's disk (every `period` s) and the Node's DiskPressure (0.5 s) in a thread (also the fill-rate
    sweep's on a kubelet node, bench_fill_rate_kubelet)."""

    kube: ControlPlane
    node: KubeNode
    period: float = 0.2
    t0: float = field(default_factory=time.monotonic)
    disk: list[tuple[float, int, float]] = field(default_factory=list)  # (t, used bytes, percent)
    pressure: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        core = client.CoreV1Api(self.kube.api_client)
        last_api = 0.0
        while not self._stop.is_set():
            t = time.monotonic() - self.t0
            u = self.node.bed.usage()
            self.disk.append((t, u.used, u.used_percent))
            if t - last_api >= 0.5:
                last_api = t
                try:
                    conditions = core.read_node(self.node.name).status.conditions or []
                    self.pressure.append((t, any(c.type == "DiskPressure" and c.status == "True" for c in conditions)))
                except client.exceptions.ApiException:
                    pass
            self._stop.wait(self.period)

    def start(self) -> Monitor:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def first(self, pred: Callable[[float], bool], after: float | None = 0.0) -> float | None:
        """When the disk's percent first met `pred` at or after `after` (None: never, or `after` is None)."""
        if after is None:
            return None
        return next((t for t, _, pct in self.disk if t >= after and pred(pct)), None)

    def seconds_above(self, percent: float) -> float:
        """How long the disk was above `percent`, in all."""
        return sum(b[0] - a[0] for a, b in zip(self.disk, self.disk[1:], strict=False) if a[2] > percent)

    @staticmethod
    def since(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else end - start

    def pressure_true(self) -> tuple[float | None, float]:
        """When DiskPressure was first True, and for how long it was True in all."""
        first, total = None, 0.0
        for (t, on), (t_next, _) in zip(self.pressure, self.pressure[1:], strict=False):
            if on:
                first = t if first is None else first
                total += t_next - t
        return first, total


def scenario(kube: ControlPlane, name: str, with_agent: bool, args: argparse.Namespace) -> dict[str, Any]:
    settings = KubeletSettings(eviction_pressure_transition_period=args.transition)
    binaries = find_binaries()
    node = KubeNode(kube, binaries, name, workdir(name), args.builder, settings=settings)
    node.start()
    factory = AgentFactory(kube, workdir(f"{name}-agent"))
    try:
        bed: ContainerdBed = node.bed
        core = client.CoreV1Api(kube.api_client)
        apps, _ = run_app_pods(core, bed, name)
        b = bed.builder
        uids = {p.metadata.name: p.metadata.uid for p in core.list_namespaced_pod("default").items}
        pause = b.pause_image(bed.sandbox_image).id
        fill_to_percent(bed, 60)
        wave: list[OciImage] = [
            b.build(f"docker.io/bench/{name}-new{i}:1",
                    [b.busybox_layer(), Layer.random(args.wave_mib * MiB, f"{name}-w{i}")])
            for i in range(args.wave)
        ]  # fmt: skip
        if with_agent:
            apply_nodecleanup(kube, name, POLICY)
            factory.start(name, bed)
            time.sleep(3)  # its startup run (nothing to do at 60%)
        before_ids = asyncio.run(image_ids(bed))
        monitor = Monitor(kube, node).start()
        for image in wave:
            started = time.monotonic()
            bed.import_images([image])
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        imported = time.monotonic() - monitor.t0
        # until under the threshold and DiskPressure False (after at least one more eviction-manager cycle)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            time.sleep(1)
            under = monitor.disk and monitor.disk[-1][2] < THRESHOLD
            calm = monitor.pressure and not monitor.pressure[-1][1]
            if under and calm and time.monotonic() - monitor.t0 > imported + 15:
                break
        monitor.stop()
        after_ids = asyncio.run(image_ids(bed))
        all_ids = before_ids | {i.id for i in wave}
        removed = all_ids - after_ids
        pods_now = {p.metadata.name: p for p in core.list_namespaced_pod("default").items}
        replaced = sum(
            n not in pods_now or pods_now[n].metadata.uid != uid or pods_now[n].status.reason == "Evicted"
            for n, uid in uids.items()
            if n.startswith(name)
        )
        crossed, crossed_high = monitor.first(lambda p: p > THRESHOLD), monitor.first(lambda p: p > 75)
        _, peak_used, peak_pct = max(monitor.disk, key=lambda sample: sample[1])
        _, final_used, final_pct = monitor.disk[-1]
        end = bed.usage()
        first_pressure, pressure_total = monitor.pressure_true()
        out = {
            "run": "kubelet + node-janitor" if with_agent else "kubelet alone",
            "peak": peak_pct,
            "final": final_pct,
            "crossed threshold": crossed,
            "pressure after crossing": monitor.since(crossed, first_pressure),
            "pressure seconds": pressure_total,
            "back under threshold": monitor.since(crossed, monitor.first(lambda p: p < THRESHOLD, crossed)),
            "under low after high": monitor.since(crossed_high, monitor.first(lambda p: p <= LOW, crossed_high)),
            "evicted": max(replaced, len(node.events("Evicted"))),
            "images removed": len(removed),
            "freed": peak_used - final_used,
            # what was removed past the point that was needed: how far below each line the disk ended, each in
            # its own terms (the kubelet's: available / capacity; the policy's: used / (used + available))
            "beyond threshold": end.available - int(end.size * (100 - THRESHOLD) / 100),
            "beyond low": int((end.used + end.available) * 60 / 100) - end.used,
            "one image": max(i.blob_bytes for i in wave) * 2,  # its blob and its snapshot
            "pause survived": pause not in removed,
            "pod images survived": not (removed & {a.id for a in apps}),
        }
        return out
    finally:
        factory.stop_all()
        node.close()


def show(r: dict[str, Any]) -> None:
    def s(x: float | None) -> str:
        return "never" if x is None else f"{x:.1f} s"

    print(
        f"{r['run']}: peak {r['peak']:.1f}%, end {r['final']:.1f}%; crossed 85% at {s(r['crossed threshold'])};"
        f" DiskPressure after {s(r['pressure after crossing'])}"
        f" (True for {r['pressure seconds']:.0f} s); back under 85% {s(r['back under threshold'])} after crossing;"
        f" at the low watermark (<= {LOW}%) {s(r['under low after high'])} after crossing 75%; evicted {r['evicted']};"
        f" images removed {r['images removed']}, freed {r['freed'] / MiB:.0f} MiB from the peak; removed beyond need:"
        f" {r['beyond threshold'] / MiB:.0f} MiB past the 85% threshold, {r['beyond low'] / MiB:.0f} MiB past 60%"
        f" (one image ~{r['one image'] / MiB:.0f} MiB);"
        f" pause image survived {r['pause survived']}, running pods' images survived {r['pod images survived']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wave", type=int, default=12)
    parser.add_argument("--wave-mib", type=int, default=7)
    parser.add_argument("--transition", default="30s")
    parser.add_argument("--timeout", type=float, default=420)
    args = parser.parse_args()
    args.builder = ImageBuilder()
    print(versions_line(), flush=True)
    with ControlPlane(workdir("kube"), find_binaries(), manifests=[REPO / "crds"]) as kube:
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/nodecleanups.nodejanitor.io")
        results = [scenario(kube, "with-janitor", True, args), scenario(kube, "kubelet-alone", False, args)]
    for r in results:
        show(r)


if __name__ == "__main__":
    main()
