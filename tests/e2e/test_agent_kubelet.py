"""Against a real kubelet (tests/support/node.py): the agent fixes a filling image disk before the kubelet's
eviction threshold (`imagefs.available<15%`) is reached, where without the agent the kubelet reports
DiskPressure; and the kubelet's own DiskPressure makes the agent reclaim to the low watermark."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from node_janitor.devbed import ContainerdBed, OciImage
from support.agentbed import (
    AgentFactory,
    MiB,
    apply_nodecleanup,
    build_images,
    fill_to_percent,
    image_ids,
    running_images_missing,
    status,
    wait_for,
    wait_for_disk,
)
from support.kube import ControlPlane
from support.node import KubeNode, NodeFactory

pytestmark = [pytest.mark.containerd, pytest.mark.kube]
APP_IMAGE = "docker.io/nj-test/app:1"  # the full name: CRI looks images up by it


class PressureWatch:
    """Polls the Node's DiskPressure (every 0.5 s, in a thread) and remembers whether it was ever True."""

    def __init__(self, kube: ControlPlane, node: str) -> None:
        self.kube, self.node = kube, node
        self.seen_true: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            result = self.kube.kubectl("get", "node", self.node, "-o", "json", check=False)
            if result.returncode == 0:
                conditions = json.loads(result.stdout)["status"].get("conditions", [])
                if any(c["type"] == "DiskPressure" and c["status"] == "True" for c in conditions):
                    self.seen_true = self.seen_true or time.monotonic()
            self._stop.wait(0.5)

    def __enter__(self) -> PressureWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _run_app_pod(kube: ControlPlane, node: KubeNode, image: OciImage) -> dict[str, Any]:
    node.bed.import_images([image])
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"app-{node.name}", "namespace": "default"},
        "spec": {
            "nodeName": node.name, "hostNetwork": True, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": image.name, "imagePullPolicy": "Never",
                            "command": ["/bin/sleep", "3600"]}],
        },
    }  # fmt: skip
    kube.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def running() -> dict[str, Any] | None:
        current = kube.kubectl_json("get", "pod", "-n", "default", pod["metadata"]["name"])
        return dict(current) if current["status"].get("phase") == "Running" else None

    return dict(wait_for("the app pod running", running, 60))


def _import_at_one_per_second(bed: ContainerdBed, images: list[OciImage], *, stop_above: float = 100) -> None:
    for image in images:
        started = time.monotonic()
        if bed.usage().used_percent > stop_above:
            return
        bed.import_images([image])
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def test_the_agent_acts_before_the_kubelet_and_the_kubelet_sets_diskpressure_without_it(
    kube: ControlPlane, kube_node: NodeFactory, agents: AgentFactory
) -> None:
    node = kube_node(eviction_hard={"imagefs.available": "15%"}, eviction_pressure_transition_period="5s")
    bed = node.bed
    app = bed.builder.build(APP_IMAGE, [bed.builder.busybox_layer()], cmd=("/bin/sleep", "3600"))
    pod = _run_app_pod(kube, node, app)
    apply_nodecleanup(kube, node.name, {"thresholds": {"highPercent": 75, "lowPercent": 60},
                                        "images": {"minAge": "1s"}})  # fmt: skip
    fill_to_percent(bed, 56)
    wave = build_images(bed, "wave", 12, size=7 * MiB)  # ~2.9% of the disk each: 56% -> ~91% at one a second

    agent = agents.start(node.name, bed)
    wait_for("the startup report", lambda: status(kube, node.name).get("lastRun"), 30)
    with PressureWatch(kube, node.name) as watch:
        _import_at_one_per_second(bed, wave)
        wait_for_disk(bed, 75, timeout=15)
        await asyncio.sleep(12)  # a full eviction-manager cycle (10 s) and a status update after the last import
    assert watch.seen_true is None, "the kubelet reported DiskPressure although the agent was running"
    assert node.conditions()["DiskPressure"].status == "False"
    after = kube.kubectl_json("get", "pod", "-n", "default", pod["metadata"]["name"])
    assert after["metadata"]["uid"] == pod["metadata"]["uid"] and after["status"]["phase"] == "Running"
    assert not node.events("Evicted")
    assert app.id in await image_ids(bed) and await running_images_missing(bed) == []
    runs = agent.metrics()
    # the watermark or, ahead of it, the fill-rate prediction (issue 22) made the runs
    triggers = ("watermark", "prediction")
    acted = sum(runs.get(f'node_janitor_runs_total{{dry_run="false",trigger="{t}"}}', 0) for t in triggers)
    assert acted >= 1, runs
    assert agent.terminate() == 0

    # The same imports with the agent stopped: the kubelet's threshold is crossed (and it may evict the pod).
    with PressureWatch(kube, node.name) as watch:
        _import_at_one_per_second(bed, build_images(bed, "flood", 12, size=7 * MiB), stop_above=91)
        wait_for("the kubelet's DiskPressure", lambda: watch.seen_true, 40)
    assert await running_images_missing(bed) == []

    # The kubelet's DiskPressure with a high watermark the disk does not reach: the agent reclaims to the low one.
    apply_nodecleanup(kube, node.name, {"thresholds": {"highPercent": 98, "lowPercent": 60},
                                        "images": {"minAge": "1s"}})  # fmt: skip
    assert bed.usage().used_percent < 98
    agents.start(node.name, bed, state_dir=agent.state_dir)
    started = time.monotonic()
    fixed = wait_for_disk(bed, 60, timeout=30)
    assert fixed - started <= 10, f"{fixed - started:.1f}s from the agent's start to the low watermark"
    last = wait_for("the pressure run", lambda: (r := status(kube, node.name)["lastRun"])["trigger"] == "pressure"
                    and r, 20)  # fmt: skip
    assert last["reclaimedBytes"] > 0
    assert await running_images_missing(bed) == []  # the app's too, unless the kubelet evicted the pod meanwhile
    kube.kubectl("delete", "pod", "-n", "default", pod["metadata"]["name"], "--wait=false")
