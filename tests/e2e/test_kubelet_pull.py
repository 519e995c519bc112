"""The kubelet gets a pod's image as a node really does: `imagePullPolicy: IfNotPresent`, the image only in a registry
(distribution on 127.0.0.1, plain HTTP, trusted through the bed's registry `config_path` hosts.toml), pulled through
CRI PullImage. node-janitor's `df` counts what the pull wrote (within 1% of the file system's gain), `prune` never
removes the image while its pod exists, and once the pod is deleted a prune removes it and frees what it planned."""

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
from node_janitor.devbed.registry import Registry
from node_janitor.runtime import open_runtime
from support.agentbed import image_ids, wait_for
from support.kube import ControlPlane
from support.node import NodeFactory
from support.poll import async_wait_for

pytestmark = [pytest.mark.containerd, pytest.mark.kube]
MiB = 1 << 20
REMOVE_ALL_UNUSED = {"images": {"minAge": "0s", "maxUnusedAge": "0s"}, "containers": {"removeExitedAfter": "0s"}}


def _cli(bed: ContainerdBed, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--containerd-socket", bed.address, "--pod-log-dir", str(bed.pod_log_dir), "-o", "json"])
    report: dict[str, Any] = json.loads(out.getvalue())
    assert code == 0, report.get("errors")
    return report


async def _prune(bed: ContainerdBed, tmp_path: Path) -> dict[str, Any]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy",
                                      "metadata": {"name": "all"}, "spec": REMOVE_ALL_UNUSED}))  # fmt: skip
    return await asyncio.to_thread(_cli, bed, tmp_path, "prune", "--policy", str(policy))


def _within(measured: int, predicted: int, fraction: float, what: str) -> None:
    print(f"{what}: measured={measured} predicted={predicted} diff={measured - predicted}")
    assert abs(measured - predicted) <= fraction * predicted, f"{what}: measured {measured}, predicted {predicted}"


async def test_the_kubelet_pulls_from_the_loopback_registry_and_the_image_is_kept_while_its_pod_exists(
    kube: ControlPlane, kube_node: NodeFactory, registry: Registry, tmp_path: Path
) -> None:
    node = kube_node()
    bed = node.bed
    builder = bed.builder
    image = builder.build("docker.io/nj-test/pulled:1", [builder.busybox_layer(), Layer.random(40 * MiB, "kpull")])
    ref = registry.push(image, "nj-test/pulled", "1")
    assert ref.startswith("127.0.0.1:")  # loopback only
    bed.trust_plain_http_registry(registry.host)
    assert image.id not in await image_ids(bed)  # only in the registry

    bed.collect_garbage()
    before_used, before_df = bed.usage().used, await asyncio.to_thread(_cli, bed, tmp_path, "df")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pulled", "namespace": "default"},
        "spec": {"nodeName": node.name, "hostNetwork": True, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "app", "image": ref, "imagePullPolicy": "IfNotPresent",
                                 "command": ["/bin/sleep", "3600"]}]},
    }  # fmt: skip
    kube.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_for("the pod running", lambda: kube.kubectl_json("get", "pod", "-n", "default", "pulled")["status"]
             .get("phase") == "Running", 120)  # fmt: skip

    # The kubelet pulled it (its events), through CRI: the image is there under its reference.
    assert ref in node.wait_for_event("Pulling").message
    assert ref in node.wait_for_event("Pulled").message
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        status = await cri.image_status(ref)
        assert status is not None and status.id == image.id and ref in status.repo_tags

    # df counts what the pull wrote: the images row grew by the file system's gain (what the pull's leases held
    # and nothing keeps is collected first, as containerd does at its next GC)
    bed.collect_garbage()
    gained = bed.usage().used - before_used
    after_df = await asyncio.to_thread(_cli, bed, tmp_path, "df")
    counted = after_df["images"]["size"] - before_df["images"]["size"]
    _within(gained, counted, 0.01, "df's images row against the file system's gain")
    assert counted >= 40 * MiB

    # never removed while the pod exists, whatever the policy
    report = await _prune(bed, tmp_path)
    assert image.id not in {a["id"] for a in report["actions"]}
    assert image.id in await image_ids(bed)

    # the pod deleted (its container exited, the pod gone from the API): the next prune removes the image
    kube.kubectl("delete", "pod", "-n", "default", "pulled", "--wait=true", "--timeout=120s")

    async def stopped() -> bool:
        async with open_runtime(bed.address, bed.namespace) as (cri, _):
            return all(c.state != "RUNNING" for c in await cri.list_containers() if c.image_ref == image.id)

    await async_wait_for("the deleted pod's container stopped", stopped, 120)
    report = await _prune(bed, tmp_path)
    removed = {a["id"] for a in report["actions"] if a["kind"] == "remove-image" and a["outcome"] == "done"}
    assert image.id in removed, report["actions"]
    assert image.id not in await image_ids(bed)
    _within(report["reclaimed_bytes"], report["planned_bytes"], 0.01, "prune after the pod's deletion")
