"""Against a real kubelet (tests/support/node.py): the agent fixes a filling image disk before the kubelet's
eviction threshold (`imagefs.available<15%`) is reached, where without the agent the kubelet reports
DiskPressure; the kubelet's own DiskPressure makes the agent reclaim to the low watermark; and an image the kubelet
pulls through CRI for a pod bound to the node is never removed, neither while it is being pulled nor between the
pull and its container's creation (the pull-then-create window, issue 22), with the disk above the high watermark
in both."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from node_janitor.devbed import ContainerdBed, Layer, OciImage
from node_janitor.devbed.registry import Registry
from node_janitor.runtime import open_runtime
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
from support.poll import async_wait_for
from support.proxy import ThrottlingProxy

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


# --- the pull-then-create window (issue 22) ---------------------------------------------------------------------

ACTING = ("watermark", "prediction")


def _gated_pod(node: KubeNode, image: str, gate: str) -> dict[str, Any]:
    """A pod whose container needs a key of the ConfigMap `gate`: the kubelet pulls its image, then fails to make
    the container's config (CreateContainerConfigError) until the ConfigMap exists. Its image is pulled and no
    container uses it for as long as the test wants: the window between a pull and its container's creation."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pulled-{node.name}", "namespace": "default"},
        "spec": {
            "nodeName": node.name, "hostNetwork": True, "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["/bin/sleep", "3600"],
                "env": [{"name": "GATE", "valueFrom": {"configMapKeyRef": {"name": gate, "key": "open"}}}],
            }],
        },
    }  # fmt: skip


async def _in_flight(bed: ContainerdBed, total: int) -> bool:
    """An ingest of at least `total` bytes is being written (part of it on disk, not all)."""
    async with open_runtime(bed.address, bed.namespace) as (_, containerd):
        return any(i.total >= total and 0 < i.offset < i.total for i in await containerd.list_ingests())


async def _containers_of(bed: ContainerdBed, image_id: str) -> list[str]:
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        return [c.name for c in await cri.list_containers() if c.image_ref == image_id]


@pytest.mark.parametrize("predict", [True, False], ids=["prediction", "watermark"])
async def test_an_image_pulled_for_a_pod_is_never_removed_while_pulled_nor_before_its_container_exists(
    kube: ControlPlane, kube_node: NodeFactory, agents: AgentFactory, registry: Registry, predict: bool
) -> None:
    """With prediction on, the agent reclaims ahead of the fill (as the pull starts and as the disk fills); off, a
    watermark run proves the disk was over the high watermark during the pull. In both, runs happen while the pull
    is in flight and again while the pulled image waits for its container, and only the other images go."""
    node = kube_node(eviction_hard={"imagefs.available": "15%"})
    bed, b = node.bed, node.bed.builder
    layer = 40 * MiB  # about 16% of the disk once pulled (its blob and its snapshot)
    big = b.build("nj-window/big:1", [b.busybox_layer(), Layer.random(layer, "window-big")], cmd=("/bin/sleep", "3600"))
    gate = f"gate-{node.name}"
    # The registry behind a throttle: 256 KiB/s keeps the pull in flight (40 MiB: minutes) until the test lifts it.
    with ThrottlingProxy("127.0.0.1", registry.port, rate=256 << 10) as proxy:
        registry.push(big, "nj-window/big", "1")
        bed.trust_plain_http_registry(proxy.host)
        reference = f"{proxy.host}/nj-window/big:1"
        apply_nodecleanup(kube, node.name, {"thresholds": {"highPercent": 75, "lowPercent": 60, "predict": predict},
                                            "images": {"minAge": "1s"}})  # fmt: skip
        fill_to_percent(bed, 10)
        before = build_images(bed, "before", 16, size=6 * MiB)  # unused: about 40% of the disk
        bed.import_images(before)
        agent = agents.start(node.name, bed)
        wait_for("the startup report", lambda: status(kube, node.name).get("lastRun"), 30)
        pod = _gated_pod(node, reference, gate)
        kube.kubectl("apply", "-f", "-", input=json.dumps(pod))

        # 1. The pull is in flight and the disk is filled past the high watermark: the agent runs and removes the
        #    other unused images; the image being pulled is not there to remove, and its pull goes on.
        await async_wait_for("the kubelet's pull in flight", lambda: _in_flight(bed, layer), 90)
        fill_to_percent(bed, 76, name="ballast-2")
        triggers = ACTING if predict else ("watermark",)
        wait_for("the agent's runs, and the disk back under the high watermark", lambda: sum(
            agent.metric("node_janitor_runs_total", dry_run="false", trigger=t) for t in triggers) >= 1
            and bed.usage().used_percent <= 75, 60)  # fmt: skip
        assert await _in_flight(bed, layer), "the pull ended before the runs: they were not during the pull"
        assert big.id not in await image_ids(bed)
        present = await image_ids(bed)
        assert {i.id for i in before} - present, "no other unused image was removed during the pull"

        # 2. The pull ends; the kubelet cannot create the container yet (no ConfigMap): the image is on the node,
        #    unused by any container, its pod Pending. New unused images take the disk over the high watermark again.
        proxy.rate = None

        def waiting_reason() -> str | None:
            statuses = kube.kubectl_json("get", "pod", "-n", "default", pod["metadata"]["name"])["status"]
            state = ((statuses.get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting") or {}
            return state.get("reason") if state.get("reason") == "CreateContainerConfigError" else None

        wait_for("the pod waiting for its ConfigMap", waiting_reason, 120)
        await async_wait_for("the pulled image", lambda: _has_image(bed, big.id), 60)
        unused = [i for i in before if i.id in await image_ids(bed)]
        for image in build_images(bed, "between", 10, size=6 * MiB):  # about 2.6% of the disk each
            if await _any_missing(bed, unused):
                break
            bed.import_images([image])
            unused.append(image)
        await async_wait_for("an unused image removed in the window", lambda: _any_missing(bed, unused), 60)
        assert big.id in await image_ids(bed), "the image pulled for the pending pod was removed"
        assert await _containers_of(bed, big.id) == [], "the run was not before the container's creation"
        still = kube.kubectl_json("get", "pod", "-n", "default", pod["metadata"]["name"])["status"]
        assert still.get("phase") == "Pending", json.dumps(still)
        assert "running" not in still["containerStatuses"][0]["state"], still

        # 3. The container can be made: the pod starts with the image it pulled once.
        config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gate, "namespace": "default"},
                      "data": {"open": "yes"}}  # fmt: skip
        kube.kubectl("apply", "-f", "-", input=json.dumps(config_map))
        try:
            running = wait_for("the pod running", lambda: (p := kube.kubectl_json(
                "get", "pod", "-n", "default", pod["metadata"]["name"]))["status"].get("phase") == "Running" and p,
                120)  # fmt: skip
            assert running["status"]["containerStatuses"][0]["imageID"].endswith(big.manifest_digest)
            assert big.id in await image_ids(bed) and await running_images_missing(bed) == []
            assert f"id={big.id}" not in agent.log(), "the agent acted on the pending pod's image"
            assert agent.metric("node_janitor_actions_total", kind="remove-image", outcome="done") >= 2
        finally:
            kube.kubectl("delete", "configmap", "-n", "default", gate, "--ignore-not-found", check=False)
            kube.kubectl("delete", "pod", "-n", "default", pod["metadata"]["name"], "--wait=false", check=False)


async def _has_image(bed: ContainerdBed, image_id: str) -> bool:
    return image_id in await image_ids(bed)


async def _any_missing(bed: ContainerdBed, images: list[OciImage]) -> bool:
    return bool({i.id for i in images} - await image_ids(bed))
