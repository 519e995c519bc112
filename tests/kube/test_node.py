"""The real node of the test bed (tests/support/node.py): kubelet + kube-scheduler on a containerd bed.

A DaemonSet pod runs on it, container logs land in the bed's pod log dir, the kubelet's own eviction manager
sets DiskPressure on the Node when the bed's disk fills, and several nodes run at once, each on its own bed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.devbed import ImageBuilder, Layer
from node_janitor.devbed.containerd import PAUSE_IMAGE
from node_janitor.runtime import CriClient
from support.kube import ControlPlane
from support.node import DEFAULT_EVICTION_HARD, KubeNode, NodeFactory, apiserver_env
from support.poll import wait_for

pytestmark = pytest.mark.kube

IMAGE = "docker.io/nj-test/busybox:1"  # the full name: CRI looks images up by it


@pytest.fixture
def busybox(image_builder: ImageBuilder) -> Any:
    return image_builder.build(IMAGE, [image_builder.busybox_layer()], cmd=("/bin/sleep", "3600"))


def _pod_spec(pool: str, script: str, kube: ControlPlane, restart: str = "Always") -> dict[str, Any]:
    """A pod as the test bed runs them: host network, the image imported (never pulled), the apiserver's
    loopback address in its env; scheduled by kube-scheduler onto the nodes labelled nj-test/pool=<pool>."""
    return {
        "hostNetwork": True,
        "nodeSelector": {"nj-test/pool": pool},
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "main",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script],
                "env": apiserver_env(kube),
            }
        ],
    }


def _daemonset(name: str, pool: str, script: str, kube: ControlPlane) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(pool, script, kube)},
        },
    }


@contextlib.contextmanager
def _applied(kube: ControlPlane, manifest: dict[str, Any]) -> Iterator[None]:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    try:
        yield
    finally:
        kind, name = manifest["kind"].lower(), manifest["metadata"]["name"]
        kube.kubectl("delete", kind, name, "-n", "default", "--ignore-not-found", "--wait=false")


def _wait_for_pods(kube: ControlPlane, selector: str, phase: str, count: int = 1, timeout: float = 60) -> list[Any]:
    """The `count` pods matching `selector`, once all are in `phase`."""
    deadline = time.monotonic() + timeout
    while True:
        pods = kube.kubectl_json("get", "pods", "-n", "default", "-l", selector)["items"]
        if len(pods) == count and all(p["status"].get("phase") == phase for p in pods):
            return list(pods)
        if time.monotonic() > deadline:
            dump = kube.kubectl("get", "pods", "-n", "default", "-l", selector, "-o", "yaml").stdout
            raise AssertionError(f"not {count} pods {selector} {phase} after {timeout:.0f}s:\n{dump}")
        time.sleep(0.3)


def _wait_for_log(node: KubeNode, pod: dict[str, Any], text: str, timeout: float = 60) -> Path:
    """The pod's container log (kubelet's layout under the bed's pod log dir) once it contains `text`."""
    meta = pod["metadata"]
    log = node.bed.pod_log_dir / f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / "main" / "0.log"
    deadline = time.monotonic() + timeout
    while not (log.is_file() and text in log.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{text!r} never in {log}"
        time.sleep(0.2)
    return log


def test_a_daemonset_pod_runs_on_the_node(kube: ControlPlane, kube_node: NodeFactory, busybox: Any) -> None:
    node = kube_node(labels={"nj-test/pool": "ds"})
    assert node.conditions()["Ready"].status == "True"
    assert "node.kubernetes.io/not-ready" not in node.taints()
    node.bed.import_images([busybox])
    # the ServiceAccount token is a volume the kubelet mounts: its content proves mounts reach the container
    script = 'echo "token $(busybox wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token)"; exec sleep 3600'
    with _applied(kube, _daemonset("ds-runs", "ds", script, kube)):
        (pod,) = _wait_for_pods(kube, "app=ds-runs", "Running")
        assert pod["spec"]["nodeName"] == node.name
        log = _wait_for_log(node, pod, "token ")
        assert int(log.read_text().split("token ")[1].split()[0]) > 100


def test_a_pods_log_lands_in_the_beds_pod_log_dir(kube: ControlPlane, kube_node: NodeFactory, busybox: Any) -> None:
    node = kube_node(labels={"nj-test/pool": "logs"})
    node.bed.import_images([busybox])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "log-writer", "namespace": "default", "labels": {"app": "log-writer"}},
        "spec": _pod_spec("logs", "seq 1 500; echo done; echo oops >&2", kube, restart="Never"),
    }
    with _applied(kube, pod):
        (done,) = _wait_for_pods(kube, "app=log-writer", "Succeeded")
        log = _wait_for_log(node, done, "oops")
        # the CRI log format: <RFC 3339 time> <stream> <F(ull)|P(artial)> <text>; the two streams are copied
        # apart, so only each stream's own order holds
        records = [line.split(" ", 3) for line in log.read_text().splitlines()]
        assert all(tag == "F" for _, _, tag, _ in records)
        assert [text for _, stream, _, text in records if stream == "stdout"] == [*map(str, range(1, 501)), "done"]
        assert [text for _, stream, _, text in records if stream == "stderr"] == ["oops"]
        # the kubelet's /var/log/containers symlink went to its own mount namespace's /var/log, not the machine's
        links = list((node.workdir / "kubelet-namespace" / "var-log" / "containers").iterdir())
        assert [link.resolve() for link in links] == [log.resolve()]


def test_the_kubelet_runs_with_the_settings_of_the_test(kube_node: NodeFactory) -> None:
    node = kube_node(
        eviction_hard={"imagefs.available": "30%"},
        image_gc_high_threshold_percent=70,
        image_gc_low_threshold_percent=60,
        image_minimum_gc_age="10s",
        eviction_pressure_transition_period="7s",
        labels={"example.com/pool": "build"},
    )
    config = node.configz()
    assert config["evictionHard"] == {**DEFAULT_EVICTION_HARD, "imagefs.available": "30%"}
    assert (config["imageGCHighThresholdPercent"], config["imageGCLowThresholdPercent"]) == (70, 60)
    assert (config["imageMinimumGCAge"], config["evictionPressureTransitionPeriod"]) == ("10s", "7s")
    assert config["podLogsDir"] == str(node.bed.pod_log_dir)
    assert config["containerRuntimeEndpoint"] == f"unix://{node.bed.address}"
    assert node.node().metadata.labels["example.com/pool"] == "build"
    # and with nothing set, the kubelet's own defaults (image GC 85/80 after 2m, pressure kept 5m)
    defaults = kube_node().configz()
    assert defaults["evictionHard"] == DEFAULT_EVICTION_HARD
    assert (defaults["imageGCHighThresholdPercent"], defaults["imageGCLowThresholdPercent"]) == (85, 80)
    assert (defaults["imageMinimumGCAge"], defaults["evictionPressureTransitionPeriod"]) == ("2m0s", "5m0s")


def test_the_kubelet_changes_nothing_on_the_machine(kube_node: NodeFactory) -> None:
    sysctls = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
    before = {name: Path("/proc/sys", name).read_text() for name in sysctls}
    node = kube_node()
    assert {name: Path("/proc/sys", name).read_text() for name in sysctls} == before
    # what it wrote went to the files its mount namespace put over /proc/sys (its setupKernelTunables)
    fakes = node.workdir / "kubelet-namespace" / "sysctl"
    assert (fakes / "vm.overcommit_memory").read_text().strip() == "1"
    assert (fakes / "kernel.panic_on_oops").read_text().strip() == "1"
    if shutil.which("iptables-save"):  # without iptables the kubelet cannot touch it either
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        assert "KUBE-" not in rules  # its KUBE-IPTABLES-HINT, KUBE-FIREWALL, KUBE-KUBELET-CANARY chains


def test_disk_pressure_comes_and_goes_with_the_beds_disk(kube_node: NodeFactory) -> None:
    transition = 15.0
    node = kube_node(disk_size=256 << 20, eviction_pressure_transition_period=f"{transition:.0f}s")
    assert node.conditions()["DiskPressure"].status == "False"
    # past both nodefs.available<10% and imagefs.available<15% (one disk: root dir, containerd, pod logs)
    node.bed.fill(leave_available=node.bed.usage().size // 20)
    pressure = node.wait_for_condition("DiskPressure", "True")
    assert pressure.reason == "KubeletHasDiskPressure"
    assert "ephemeral-storage" in node.wait_for_event("EvictionThresholdMet").message
    assert node.events("NodeHasDiskPressure")
    wait_for("the disk-pressure taint", lambda: "node.kubernetes.io/disk-pressure" in node.taints())
    node.bed.drain()
    drained = time.monotonic()
    node.wait_for_condition("DiskPressure", "False")
    # it stays for the transition period after the kubelet last saw the pressure, which its eviction loop
    # (every 10 s plus a pass's own time) did at most ~11 s before the drain
    assert time.monotonic() - drained >= transition - 11
    assert max(e.count for e in node.events("NodeHasNoDiskPressure")) >= 2  # at registration, and now
    wait_for("the disk-pressure taint lifted", lambda: "node.kubernetes.io/disk-pressure" not in node.taints())


def test_the_kubelets_image_gc_under_disk_pressure(kube_node: NodeFactory, image_builder: ImageBuilder) -> None:
    """The baseline node-janitor is measured against: under pressure the kubelet removes every unused image
    past imageMinimumGCAge at once, through CRI, all but those CRI reports pinned: the sandbox image on
    containerd 2.x; on 1.6, which does not report it pinned, that one too."""
    node = kube_node(disk_size=256 << 20, image_minimum_gc_age="1s")
    big = image_builder.build("docker.io/nj-test/big:1", [image_builder.busybox_layer(), Layer.random(40 << 20, "big")])
    node.bed.import_images([big])

    def images() -> set[str]:
        return {line for line in node.bed.ctr("images", "ls", "-q").stdout.split() if not line.startswith("sha256:")}

    async def pinned() -> set[str]:
        async with CriClient(node.bed.address, timeout=30) as cri:
            return {tag for image in await cri.list_images() if image.pinned for tag in image.repo_tags}

    assert images() == {big.name, PAUSE_IMAGE}
    kept = asyncio.run(pinned())
    assert kept <= {PAUSE_IMAGE}
    node.bed.fill(leave_available=node.bed.usage().size // 20)
    node.wait_for_condition("DiskPressure", "True")
    wait_for("the kubelet's image GC", lambda: images() == kept, timeout=90)
    # then containerd's garbage collection frees the big image's blob and snapshot (40 MiB each)
    wait_for("the images' space freed", lambda: node.bed.usage().available > 80 << 20)


def test_two_nodes_each_on_its_own_bed(kube: ControlPlane, kube_node: NodeFactory, busybox: Any) -> None:
    nodes = [kube_node(labels={"nj-test/pool": "two"}) for _ in range(2)]
    assert nodes[0].bed.address != nodes[1].bed.address
    assert nodes[0].bed.disk.stat().st_dev != nodes[1].bed.disk.stat().st_dev
    for node in nodes:
        node.bed.import_images([busybox])
    daemonset = _daemonset("ds-two", "two", "echo on $NODE_NAME; exec sleep 3600", kube)
    node_name = {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    daemonset["spec"]["template"]["spec"]["containers"][0]["env"].append(node_name)
    with _applied(kube, daemonset):
        pods = _wait_for_pods(kube, "app=ds-two", "Running", count=2)
        by_node = {p["spec"]["nodeName"]: p for p in pods}
        assert set(by_node) == {n.name for n in nodes}
        for node, other in (nodes, nodes[::-1]):
            pod = by_node[node.name]
            _wait_for_log(node, pod, f"on {node.name}\n")
            uid = pod["metadata"]["uid"]
            assert not list(other.bed.pod_log_dir.glob(f"*_{uid}")), "a pod's log in the other node's bed"


def test_the_kubelet_stops_and_restarts_under_its_pods(
    kube: ControlPlane, kube_node: NodeFactory, busybox: Any
) -> None:
    node = kube_node(labels={"nj-test/pool": "restart"})
    node.bed.import_images([busybox])
    with _applied(kube, _daemonset("ds-restart", "restart", "echo up; exec sleep 3600", kube)):
        (pod,) = _wait_for_pods(kube, "app=ds-restart", "Running")
        container = node.bed.ctr("tasks", "ls").stdout
        node.stop_kubelet()
        assert not node.kubelet_running and node.rss_bytes() == 0
        # the pods' containers run on without it (benchmarks measure the kubelet alone this way)
        assert sorted(node.bed.ctr("tasks", "ls").stdout.splitlines()) == sorted(container.splitlines())
        node.start_kubelet()
        assert node.kubelet_running and node.conditions()["Ready"].status == "True"
        (again,) = _wait_for_pods(kube, "app=ds-restart", "Running")
        assert again["metadata"]["uid"] == pod["metadata"]["uid"]
        assert again["status"]["containerStatuses"][0]["restartCount"] == 0


def test_close_leaves_nothing_behind(kube: ControlPlane, kube_node: NodeFactory, busybox: Any) -> None:
    node = kube_node(labels={"nj-test/pool": "close"})
    node.bed.import_images([busybox])
    with _applied(kube, _daemonset("ds-close", "close", "exec sleep 3600", kube)):
        _wait_for_pods(kube, "app=ds-close", "Running")
        # what a running node holds, as leftovers() sees it: the check can see what close() must remove
        held = node.leftovers()
        for kind in ("kubelet pid", "mount ", "shim pid", "runc state", "Node "):
            assert any(item.startswith(kind) for item in held), (kind, held)
        assert any("kubernetes.io~projected" in item for item in held), held  # the token volume's tmpfs
        node.close()
        assert node.leftovers() == []
        assert not kube.kubectl_json("get", "pods", "-A", "--field-selector", f"spec.nodeName={node.name}")["items"]
