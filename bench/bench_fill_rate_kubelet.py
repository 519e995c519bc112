"""Fill-rate sweep on a real kubelet node (issue 22, "The benchmark"): how fast a node's disk may fill with images the
kubelet pulls for pods bound to it before DiskPressure is set, three ways: node-janitor with prediction
(`thresholds.predict`), node-janitor with prediction off (the watermark alone), and the kubelet alone (its own image
GC and eviction manager).

Run (root): sudo .venv/bin/python -m bench.bench_fill_rate_kubelet [--rates 2,5,10,20]
    [--modes predict,watermark,baseline,kubelet] [--wave-percent 40] [--image-mib 10] [--kubelet-min-age 10s]
    [--disk-mib 512] [--parallel 4]

The modes: `predict`, node-janitor as it is (thresholds.predict true); `watermark`, the same agent with
thresholds.predict false (no prediction trigger, no fill-rate headroom, but the rest of issue 22's sensing: the
bytes pulls in flight still bring counted in the watermark trigger and a run's target, sampling every 0.25 s while
pulling or near the watermark); `baseline`, the agent as it was before issue 22 (thresholds.predict false and
NODE_JANITOR_BENCH_BASELINE=1: the watermark on what is on disk, sampled every 2 s, pulls in flight not counted);
`kubelet`, no node-janitor.

Each point (rate x mode) gets a fresh node: the test bed's kubelet (tests/support/node.py, the release NJ_KUBE
chooses) on its own --disk-mib containerd disk (NJ_CONTAINERD), evictionHard `imagefs.available<15%` (the kubelet's
default), image GC 85/80% (its defaults), imageMinimumGCAge --kubelet-min-age (10s, not its 2m: the old images
must be removable by the kubelet too, as on a node whose images are older than that), evictionPressureTransitionPeriod
30s, `serializeImagePulls: false` and `maxParallelImagePulls: --parallel` (several pulls at once). On it: two running
pods (their images imported), a ballast file to 15%, old unused images to about 50% (8 MiB random layers, older than
every minimum age when the wave starts), then the wave: pods bound to the node, one new image each in the loopback
registry (distribution on 127.0.0.1, plain HTTP: `devbed.registry`), created on the rate's schedule so that their
images (a --image-mib random layer: its blob and its snapshot) add up to RATE% of the disk a second until
--wave-percent of the disk; the kubelet pulls them through CRI and starts them. With node-janitor: `node-janitor
agent` (a subprocess, the real apiserver) with the policy 75/60, minAge 10s; it watches the node's pods, so the
wave's images are protected from the moment their pod is bound (pending, pulling or running).

Per point: the fill rate reached (the wave's bytes over the time from the first pod to the last of its images
first seen on the node, or its pod evicted before that), DiskPressure (the Node's condition, polled every 0.5 s:
set or not, for how long while watched: until the disk is back to the low line after the wave), evictions (pods
evicted: the kubelet's `Evicted` events and pods replaced or failed), the peak (disk sampled every 0.1 s), seconds
above 85%, the time from the end of the wave back to the low watermark (60% + 1.5, give or take an image; the
kubelet's own low is 80%), the bytes removed beyond need (how far below the line the disk ended: 60% for
node-janitor, the kubelet's 80% for the kubelet alone) and the wave's images removed once pulled (images of pods
bound to the node: 0 for node-janitor; the kubelet alone removes those of the pods it evicted).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.bench_fill_rate import policy, runs_of
from bench.bench_remediation import Monitor
from bench.realbed import MiB, bound_pod, run_app_pods, workdir
from node_janitor.cli.main import BENCH_BASELINE_ENV
from node_janitor.devbed import ImageBuilder, Layer
from node_janitor.devbed.images import OciImage
from node_janitor.devbed.registry import Registry
from tests.support.agentbed import AgentFactory, apply_nodecleanup, fill_to_percent, image_ids
from tests.support.kube import REPO, ControlPlane, find_binaries
from tests.support.node import KubeletSettings, KubeNode
from tests.support.poll import wait_for

THRESHOLD = 85.0  # imagefs.available<15%
LOW = 60.0
OLD_MIB = 8
MODES = ("predict", "watermark", "baseline", "kubelet")
AGENT_MODES = ("predict", "watermark", "baseline")
DESCRIPTION = {
    "predict": "node-janitor, prediction on",
    "watermark": "node-janitor, prediction off",
    "baseline": "node-janitor before issue 22 (baseline)",
    "kubelet": "kubelet alone",
}


def wave_pod(name: str, image: str, node: str) -> dict[str, Any]:
    pod = bound_pod(name, image, node)
    container = pod["spec"]["containers"][0]
    container.update(imagePullPolicy="IfNotPresent", command=["/bin/sleep", "2147483647"])
    return pod


def create_on_schedule(core: Any, pods: list[dict[str, Any]], per_image: int, rate_percent: float, disk: int) -> float:
    """Creates `pods` so that their images' bytes (`per_image` each) arrive at `rate_percent` of the `disk` bytes a
    second (pod n at n * per_image / rate); returns when the first was created (monotonic)."""
    per_second = disk * rate_percent / 100
    start = time.monotonic()
    for n, pod in enumerate(pods):
        time.sleep(max(0.0, start + n * per_image / per_second - time.monotonic()))
        core.create_namespaced_pod("default", pod)
    return start


def point(kube: ControlPlane, args: argparse.Namespace, registry: Registry, old: list[OciImage],
          wave: list[tuple[OciImage, str]], rate: float, mode: str, n: int) -> dict[str, Any]:  # fmt: skip
    name = f"fill-k{n}"
    settings = KubeletSettings(
        eviction_pressure_transition_period="30s",
        image_minimum_gc_age=args.kubelet_min_age,
        extra={"serializeImagePulls": False, "maxParallelImagePulls": args.parallel},
    )
    node = KubeNode(kube, find_binaries(), name, workdir(name), args.builder, settings=settings, disk_size=args.disk)
    node.start()
    factory = AgentFactory(kube, workdir(f"{name}-agent"))
    core = client.CoreV1Api(kube.api_client)
    try:
        bed = node.bed
        bed.trust_plain_http_registry(registry.host)
        _, app_pods = run_app_pods(core, bed, name)
        fill_to_percent(bed, 15)
        for start in range(0, len(old), 8):
            bed.import_images(old[start : start + 8])
        if mode in AGENT_MODES:
            apply_nodecleanup(kube, name, policy(mode == "predict"))
            env = {BENCH_BASELINE_ENV: "1"} if mode == "baseline" else None
            agent = factory.start(name, bed, env=env)
            wait_for("the startup run", lambda: "startup" in runs_of(agent), 60)
        time.sleep(10.5)  # the old images pass every minimum age (10s) before the wave
        start_pct = bed.usage().used_percent
        wave_ids = {image.id for image, _ in wave}
        per_image = 2 * args.image_mib * MiB
        pods = [wave_pod(f"{name}-w{i}", ref, name) for i, (_, ref) in enumerate(wave)]
        monitor = Monitor(kube, node, period=0.1).start()
        first = create_on_schedule(core, pods, per_image, rate, args.disk) - monitor.t0

        seen: set[str] = set()  # wave images seen on the node at least once (the kubelet alone removes some)
        image_of = {p["metadata"]["name"]: image.id for p, (image, _) in zip(pods, wave, strict=True)}
        gone: set[str] = set()  # images of wave pods evicted or failed before their pull (never to come)
        deadline = time.monotonic() + 180
        while not wave_ids <= seen | gone and time.monotonic() < deadline:
            seen |= wave_ids & asyncio.run(image_ids(bed))
            for p in core.list_namespaced_pod("default").items:
                if p.metadata.name in image_of and (p.status.phase == "Failed" or p.status.reason == "Evicted"):
                    gone.add(image_of[p.metadata.name])
            time.sleep(0.2)
        wave_end = time.monotonic() - monitor.t0
        settle = time.monotonic() + args.settle
        while time.monotonic() < settle:  # an eviction-manager cycle at least, then until back to the low line
            time.sleep(0.5)
            low = LOW if mode != "kubelet" else 80.0
            if time.monotonic() - monitor.t0 > wave_end + 12 and monitor.disk[-1][2] <= low + 1.5:
                break
        monitor.stop()
        end = bed.usage()
        present = asyncio.run(image_ids(bed))
        pods_now = {
            p.metadata.name: p for p in core.list_namespaced_pod("default").items if p.metadata.name.startswith(name)
        }
        evicted = sum(1 for p in pods_now.values() if p.status.reason == "Evicted")
        not_running = sorted(n for n in [*app_pods, *(p["metadata"]["name"] for p in pods)]
                             if n not in pods_now or pods_now[n].status.phase != "Running")  # fmt: skip
        line = LOW if mode != "kubelet" else 80.0
        back = monitor.first(lambda p: p <= line + 1.5, wave_end)
        return {
            "mode": mode,
            "rate": rate,
            "start": start_pct,
            "reached": 100 * len(wave) * per_image / args.disk / max(wave_end - first, 0.1),
            "wave s": wave_end - first,
            "pressure": any(on for _, on in monitor.pressure),
            "pressure s": monitor.pressure_true()[1],
            "evicted": max(evicted, len(node.events("Evicted"))),
            "not running": not_running,
            "peak": max(pct for _, _, pct in monitor.disk),
            "above 85 s": monitor.seconds_above(THRESHOLD),
            "line": line,
            "back s": None if back is None else back - wave_end,
            "beyond MiB": (int((end.used + end.available) * line / 100) - end.used) / MiB,
            "end": end.used_percent,
            "wave removed": len(seen - present),
            "wave never pulled": len(wave_ids - seen),
            "old removed": len({i.id for i in old} - present),
            "runs": runs_of(factory.agents[0]) if factory.agents else {},
        }
    finally:
        factory.stop_all()
        node.close()  # deletes the node's pods too
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for agent in factory.agents:
                shutil.copy(agent.log_path, args.keep_logs / f"{name}-{mode}-{rate:g}.log")


def show(r: dict[str, Any]) -> None:
    what = DESCRIPTION[r["mode"]]
    back = "never" if r["back s"] is None else f"{r['back s']:.1f} s"
    pressure = f"SET ({r['pressure s']:.0f} s)" if r["pressure"] else "never"
    print(
        f"fill rate {r['rate']:g}%/s (reached {r['reached']:.1f}%/s over {r['wave s']:.1f} s), {what}: from "
        f"{r['start']:.1f}%, DiskPressure {pressure}, evicted {r['evicted']}, "
        f"peak {r['peak']:.1f}%, above 85% {r['above 85 s']:.1f} s, back to <= {r['line'] + 1.5:g}% {back} after the "
        f"wave, end {r['end']:.1f}% ({r['beyond MiB']:.0f} MiB below {r['line']:g}%), old images removed "
        f"{r['old removed']}, wave (pod) images removed {r['wave removed']} (never pulled {r['wave never pulled']}), "
        f"pods not running {r['not running']}, "
        f"runs {r['runs']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="2,5,10,20", help="percent of the disk a second, comma-separated")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--wave-percent", type=float, default=40, help="the wave's size, percent of the disk")
    parser.add_argument("--image-mib", type=int, default=10, help="each wave image's random layer")
    parser.add_argument("--kubelet-min-age", default="10s", help="the kubelet's imageMinimumGCAge")
    parser.add_argument("--settle", type=float, default=45, help="seconds at most after the wave")
    parser.add_argument("--disk-mib", type=int, default=512, help="each node's containerd disk")
    parser.add_argument("--parallel", type=int, default=4, help="the kubelet's maxParallelImagePulls")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy each point's agent log there")
    args = parser.parse_args()
    args.disk = args.disk_mib * MiB
    args.builder = b = ImageBuilder()
    rates = [float(r) for r in args.rates.split(",")]
    modes = args.modes.split(",")
    old_count = int(args.disk * 0.35 / (2 * OLD_MIB * MiB))
    wave_count = int(args.disk * args.wave_percent / 100 / (2 * args.image_mib * MiB))
    old = [b.build(f"bench.local/old/o{i}:v1", [b.busybox_layer(), Layer.random(OLD_MIB * MiB, f"old{i}")])
           for i in range(old_count)]  # fmt: skip
    with (
        Registry(workdir("registry")) as registry,
        ControlPlane(workdir("kube"), find_binaries(), manifests=[REPO / "crds"]) as kube,
    ):
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/nodecleanups.nodejanitor.io")
        wave = []  # every node is fresh: each point pulls the whole wave from the registry again
        for i in range(wave_count):
            layers = [b.busybox_layer(), Layer.random(args.image_mib * MiB, f"w{i}")]
            image = b.build(f"bench.local/wave/w{i}:v1", layers, cmd=("/bin/sleep", "2147483647"))
            wave.append((image, registry.push(image)))
        n = 0
        for rate in rates:
            for mode in modes:
                n += 1
                show(point(kube, args, registry, old, wave, rate, mode, n))


if __name__ == "__main__":
    main()
