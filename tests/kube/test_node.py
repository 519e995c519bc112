"""The real node of the test bed (tests/testbed/node.py): kubelet + kube-scheduler on a containerd bed.

A DaemonSet pod runs on it, container logs land in the bed's pod log dir, the kubelet's own eviction manager
sets DiskPressure on the Node when the bed's disk fills, and several nodes run at once, each on its own bed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.devbed import ImageBuilder
from testbed.kube import ControlPlane
from testbed.node import KubeNode, NodeFactory, apiserver_env

pytestmark = pytest.mark.kube

IMAGE = "docker.io/nj-test/busybox:1"  # the full name: CRI looks images up by it


@pytest.fixture
def busybox(image_builder: ImageBuilder) -> Any:
    return image_builder.build(IMAGE, [image_builder.busybox_layer()], cmd=("/bin/sleep", "3600"))


def _daemonset(name: str, node_label: str, script: str, kube: ControlPlane) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": True,
                    "nodeSelector": {"nj-test/pool": node_label},
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
                },
            },
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


def _running_pods(kube: ControlPlane, selector: str) -> list[dict[str, Any]]:
    pods = kube.kubectl_json("get", "pods", "-n", "default", "-l", selector)["items"]
    return [p for p in pods if p["status"].get("phase") == "Running"]


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
        deadline = time.monotonic() + 60
        while not (pods := _running_pods(kube, "app=ds-runs")):
            if time.monotonic() > deadline:
                pods = kube.kubectl("get", "pods", "-n", "default", "-l", "app=ds-runs", "-o", "yaml").stdout
                raise AssertionError(f"the DaemonSet pod never ran:\n{pods}\nkubelet:\n{node.log_tail()}")
            time.sleep(0.3)
        (pod,) = pods
        assert pod["spec"]["nodeName"] == node.name
        log = _wait_for_log(node, pod, "token ")
        assert int(log.read_text().split("token ")[1].split()[0]) > 100
