"""The agent reports `df` into its NodeCleanup's status (a cluster-wide `docker system df` with kubectl), serves
/metrics, /healthz and /readyz, and follows spec changes (Ready names the generation it applies)."""

from __future__ import annotations

import json

import pytest

from node_janitor.api import NodeCleanup
from node_janitor.devbed import ContainerdBed, Layer
from support.agentbed import AgentFactory, MiB, apply_nodecleanup, condition, run_container, status, wait_for
from support.kube import ControlPlane
from support.metrics_doc import undocumented

pytestmark = [pytest.mark.containerd, pytest.mark.kube]


def test_status_is_reported_and_visible_with_kubectl(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = containerd_bed
    b = bed.builder
    images = [
        b.build(f"example.com/report{i}:v1", [b.busybox_layer(), Layer.random(2 * MiB, f"r{i}")]) for i in range(3)
    ]
    bed.import_images(images)
    apply_nodecleanup(kube, node_name, {"thresholds": {"highPercent": 90, "lowPercent": 80}})
    generation = kube.kubectl_json("get", "nodecleanup", node_name)["metadata"]["generation"]
    agent = agents.start(node_name, bed)

    st = wait_for("a status with a lastRun", lambda: (s := status(kube, node_name)).get("lastRun") and s, 30)
    assert st["lastRun"]["trigger"] == "startup"
    assert st["imageCount"] == 4  # three images and the pause image
    assert {"example.com/report0:v1", "example.com/report2:v1"} <= set(st["imageRefs"])
    assert st["usage"]["images"]["total"] == 4
    assert {fs["name"] for fs in st["fileSystems"]} == {"imagefs", "logs"}
    disk = bed.usage().used_percent
    assert abs(st["diskPercent"] - disk) < 5
    assert st["heartbeatTime"]
    ready = condition(st, "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == generation, st["conditions"]
    assert condition(st, "Degraded")["status"] == "False"
    assert st["observedGeneration"] == generation
    NodeCleanup.from_manifest(kube.kubectl_json("get", "nodecleanup", node_name))  # what the operator reads back

    table = kube.kubectl("get", "nodecleanups", node_name).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "DISK%", "IMAGES", "RECLAIMABLE"], table
    assert row.split()[0] == node_name and row.split()[2] == "4" and "True" in row.split(), table

    # A new spec generation: Ready follows it.
    apply_nodecleanup(kube, node_name, {"thresholds": {"highPercent": 95, "lowPercent": 80}})
    wait_for(
        "Ready for generation 2",
        lambda: condition(status(kube, node_name), "Ready").get("observedGeneration") == generation + 1,
        20,
    )
    assert (agent.state_dir / "policy.json").exists()

    code, body = agent.http("/readyz")
    assert code == 200, body
    assert agent.http("/healthz")[0] == 200
    metrics = agent.metrics()
    assert metrics['node_janitor_runs_total{dry_run="false",trigger="startup"}'] == 1
    assert metrics["node_janitor_ready"] == 1
    wait_for("the watermarks of generation 2", lambda: agent.metrics().get("node_janitor_high_watermark_ratio") == 0.95)
    assert agent.metrics()["node_janitor_low_watermark_ratio"] == 0.8
    assert undocumented(agent.http("/metrics")[1]) == set()  # docs/metrics.md lists every one
    logs_fs = f'{{filesystem="logs",path="{bed.pod_log_dir}"}}'
    assert 0 < metrics[f"node_janitor_filesystem_used_ratio{logs_fs}"] <= 1
    assert metrics[f"node_janitor_filesystem_size_bytes{logs_fs}"] >= (
        metrics[f"node_janitor_filesystem_used_bytes{logs_fs}"]
        + metrics[f"node_janitor_filesystem_available_bytes{logs_fs}"]
    )


async def test_a_paused_node_still_remembers_when_each_image_was_last_used(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    """Paused runs do nothing, but the heartbeat's `df` saves last use: an image used while the node was paused
    must not look unused for weeks once it is unpaused."""
    bed = containerd_bed
    b = bed.builder
    used = b.build("example.com/paused-use:v1", [b.busybox_layer(), Layer.random(1 * MiB, "paused-use")])
    bed.import_images([used])
    apply_nodecleanup(kube, node_name, {"paused": True})
    agent = agents.start(node_name, bed, heartbeat="1s")
    wait_for("the paused status", lambda: condition(status(kube, node_name), "Ready")["reason"] == "Paused", 30)
    await run_container(bed, used)
    last_used = agent.state_dir / "last-used.json"
    wait_for("the image's last use saved", lambda: used.id in json.loads(last_used.read_text())["lastUsed"], 30)
