"""Image volumes (KEP-4639: GA in Kubernetes 1.36, containerd 2.1+) on the real node: the image a pod mounts as a
volume runs in no container, yet neither `node-janitor prune` nor the agent removes it, while an image nothing
uses goes. Skipped on older pairs (the compat lane), which have no image volumes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.cli.main import main
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.runtime import open_runtime
from support.agentbed import AgentFactory, apply_nodecleanup, image_ids, status, wait_for
from support.kube import ControlPlane
from support.node import NodeFactory
from support.poll import async_wait_for

pytestmark = [pytest.mark.containerd, pytest.mark.kube]
REMOVE_ALL_UNUSED = {"images": {"minAge": "0s", "maxUnusedAge": "0s"}}


async def _runtime_major(bed: ContainerdBed) -> int:
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        version = (await cri.version()).runtime_version
    return int(version.lstrip("v").split(".")[0])


async def _prune(bed: ContainerdBed, tmp_path: Path) -> dict[str, Any]:
    """The real CLI (in a thread: it owns its event loop), with a policy that removes every unused image."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy",
                                      "metadata": {"name": "all"}, "spec": REMOVE_ALL_UNUSED}))  # fmt: skip
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main(["prune", "--containerd-socket", bed.address, "--namespace", bed.namespace,
                         "--pod-log-dir", str(bed.pod_log_dir), "--state-file", str(tmp_path / "state.json"),
                         "--policy", str(policy), "-o", "json"])  # fmt: skip

    code = await asyncio.to_thread(run)
    report: dict[str, Any] = json.loads(out.getvalue())
    assert code == 0, report.get("errors")
    return report


async def test_an_image_mounted_as_a_volume_is_never_removed(
    kube: ControlPlane, kube_node: NodeFactory, agents: AgentFactory, tmp_path: Path
) -> None:
    if kube.binaries.kubernetes_minor < 36:
        pytest.skip(f"image volumes are GA from Kubernetes 1.36 (this bed: {kube.binaries.kubernetes_version})")
    node = kube_node()
    bed = node.bed
    if await _runtime_major(bed) < 2:
        pytest.skip("containerd 1.x mounts no image volumes")
    builder = bed.builder
    app = builder.build("docker.io/nj-test/app:1", [builder.busybox_layer()], cmd=("/bin/sleep", "3600"))
    weights = builder.build("docker.io/nj-test/weights:1", [Layer.random(4 << 20, "weights", "model/weights.bin")])
    free, free_later = builder.random_images("free", 2, 2 << 20)
    bed.import_images([app, weights, free])

    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "model", "namespace": "default"},
        "spec": {
            "nodeName": node.name, "hostNetwork": True, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "serve", "image": app.name, "imagePullPolicy": "Never",
                            "command": ["/bin/sh", "-c", "ls /weights/model; exec sleep 3600"],
                            "volumeMounts": [{"name": "weights", "mountPath": "/weights"}]}],
            "volumes": [{"name": "weights", "image": {"reference": weights.name, "pullPolicy": "Never"}}],
        },
    }  # fmt: skip
    kube.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_for("the pod running", lambda: kube.kubectl_json("get", "pod", "-n", "default", "model")["status"]
             .get("phase") == "Running", 60)  # fmt: skip
    # the container sees the image's files, and CRI names the image among its mounts
    logs = wait_for("the container's listing", lambda: [p for p in bed.pod_log_dir.glob("default_model_*/serve/*.log")
                                                        if "weights.bin" in p.read_text()], 30)  # fmt: skip
    assert logs
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        (serve,) = [c for c in await cri.list_containers() if c.name == "serve"]
        status_ = await cri.container_status(serve.id)
    assert serve.image_ref == app.id and weights.id in status_.image_mounts

    # prune: every unused image goes, the mounted one stays
    report = await _prune(bed, tmp_path)
    removed = {a["id"] for a in report["actions"] if a["kind"] == "remove-image" and a["outcome"] == "done"}
    assert free.id in removed and weights.id not in removed
    assert {app.id, weights.id} <= await image_ids(bed) and free.id not in await image_ids(bed)

    # the agent likewise
    bed.import_images([free_later])
    apply_nodecleanup(kube, node.name, REMOVE_ALL_UNUSED)
    agents.start(node.name, bed)
    wait_for("the agent's run", lambda: status(kube, node.name).get("lastRun"), 60)

    async def gone() -> bool:
        return free_later.id not in await image_ids(bed)

    await async_wait_for("the unused image removed by the agent", gone, 60)
    assert {app.id, weights.id} <= await image_ids(bed)
    after = kube.kubectl_json("get", "pod", "-n", "default", "model")
    assert after["status"]["phase"] == "Running"
    kube.kubectl("delete", "pod", "-n", "default", "model", "--wait=false")
