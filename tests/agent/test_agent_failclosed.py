"""The agent fails closed (`agent.policy`): it acts only where a valid policy says so. Without its NodeCleanup it
measures and reports and removes nothing; a spec it cannot read counts as paused; a policy paused or a keep pattern
added while a run is in progress takes effect before the run's next removal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.execute import IMAGE_CONCURRENCY
from node_janitor.runtime import open_runtime
from support.agentbed import (
    AgentFactory,
    MiB,
    apply_nodecleanup,
    build_images,
    condition,
    fill_to_percent,
    frozen_at_first_removal,
    image_ids,
    late_kubeconfig,
    nodecleanup,
    status,
    wait_for,
)
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]

REMOVING = {"thresholds": {"highPercent": 75, "lowPercent": 60}, "images": {"minAge": "1s"}}


async def test_without_its_nodecleanup_the_agent_removes_nothing(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    """The reproduced incident: the only policy (keeping some images) was deleted, its NodeCleanup went, and the
    agent fell back to the CRD defaults and ran on the next crossing of 85%, removing what the policy had kept."""
    bed = small_disk_bed
    kept = build_images(bed, "aged", 3)
    bed.import_images(kept)
    apply_nodecleanup(kube, node_name, {"images": {"keep": ["example.com/aged*"]}})
    agent = agents.start(node_name, bed)
    wait_for("the startup run", lambda: status(kube, node_name).get("lastRun", {}).get("trigger") == "startup")
    assert (agent.state_dir / "policy.json").exists()

    kube.kubectl("delete", "nodecleanup", node_name)
    wait_for("the deletion seen", lambda: "no NodeCleanup for this node" in agent.log())
    assert not (agent.state_dir / "policy.json").exists()  # forgotten: a restart does not bring it back
    others = build_images(bed, "fresh", 3)
    bed.import_images(others)
    fill_to_percent(bed, 90)
    wait_for("the crossing measured and reported", lambda: "above highPercent=85, not acting: no NodeCleanup"
             in agent.log(), 20)  # fmt: skip
    assert {i.id for i in kept + others} <= await image_ids(bed)
    after = agent.log().split("no NodeCleanup for this node", 1)[1]
    assert "run start" not in after and "action kind=" not in after
    used = [v for k, v in agent.metrics().items() if k.startswith("node_janitor_filesystem_used_ratio")]
    assert max(used) > 0.85  # /metrics reports the disk


async def test_a_spec_the_agent_cannot_read_counts_as_paused(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    """Here a glob the apiserver does not check (a bracket expression on the way to containerd's tree) stands for
    any spec the agent cannot read, such as a field of a newer operator: the agent went on with the rules it held."""
    bed = small_disk_bed
    images = build_images(bed, "unread", 3)
    bed.import_images(images)
    apply_nodecleanup(kube, node_name, REMOVING)
    agent = agents.start(node_name, bed)
    wait_for("the startup run", lambda: status(kube, node_name).get("lastRun", {}).get("trigger") == "startup")

    bad = {**REMOVING, "logs": {"extraPaths": [{"glob": "/var/l[i]b/containerd/x.log", "maxAge": "1h"}]}}
    apply_nodecleanup(kube, node_name, bad)
    ready = wait_for("Ready=False InvalidSpec", lambda: (c := condition(status(kube, node_name), "Ready"))
                     .get("reason") == "InvalidSpec" and c)  # fmt: skip
    assert ready["message"].startswith("paused: generation 2:") and "containerd" in ready["message"]
    await asyncio.sleep(1.1)  # minAge: the images are removable under the rules held before
    fill_to_percent(bed, 85)
    wait_for("the crossing measured, not acted on", lambda: "above highPercent=75, not acting: the NodeCleanup spec "
             "cannot be read" in agent.log(), 20)  # fmt: skip
    assert {i.id for i in images} <= await image_ids(bed)
    assert "run start trigger=watermark" not in agent.log()


@pytest.mark.parametrize(
    ("change", "skipped"),
    [
        ({"paused": True}, "the policy is paused now"),
        ({"dryRun": True}, "the policy is a dry run now"),
        ({"images": {"minAge": "1s", "keep": ["example.com/mid*"]}}, "kept by pattern 'example.com/mid*'"),
    ],
    ids=["paused", "dryRun", "keep"],
)
async def test_a_policy_changed_mid_run_applies_before_the_next_removal(
    kube: ControlPlane,
    containerd_bed: ContainerdBed,
    node_name: str,
    agents: AgentFactory,
    change: dict[str, object],
    skipped: str,
) -> None:
    """containerd is frozen the instant its garbage collection deletes the first blob of these images (inside a
    RemoveImage: at most IMAGE_CONCURRENCY removals in flight), the policy changes, containerd goes on: no removal
    is sent after the agent saw the change."""
    bed = containerd_bed
    apply_nodecleanup(kube, node_name, {})
    agent = agents.start(node_name, bed)
    wait_for("the startup run", lambda: status(kube, node_name).get("lastRun"))
    images = build_images(bed, "mid", 20, size=1 * MiB)
    bed.import_images(images)
    await asyncio.sleep(1.1)  # minAge
    with frozen_at_first_removal(kube, bed, node_name, images, "mid"):
        apply_nodecleanup(kube, node_name, change, runRequest="mid")
        wait_for("the change seen", lambda: "generation=3" in agent.log(), 3, interval=0.02)
    last = wait_for("the run's report", lambda: (s := status(kube, node_name)).get("lastRun", {}).get("runRequest")
                    == "mid" and s["lastRun"])  # fmt: skip
    lines = [line for line in agent.log().splitlines() if "action kind=remove-image" in line]
    done = sum("outcome=done" in line for line in lines)
    held_back = sum(skipped in line for line in lines)
    left = {i.id for i in images} & await image_ids(bed)
    # Only what was in flight when the change came was done; every other removal was skipped for it.
    assert 1 <= done <= IMAGE_CONCURRENCY < len(images), last
    assert done + held_back == len(images) and len(left) == len(images) - done, last


async def test_the_log_rotator_waits_for_the_nodecleanup_as_runs_do(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory, tmp_path: Path
) -> None:
    """A restarted agent reaches the apiserver 2 s late (a proxy holds its connections); its saved policy rotates
    logs past 1Mi, the NodeCleanup now disables logs. The rotator used to start at the first monitor tick, under the
    saved policy, and rotated the live log before the fresh policy was one LIST away."""
    bed = containerd_bed
    (image,) = build_images(bed, "rotwait", 1, size=1 << 16)
    bed.import_images([image])
    apply_nodecleanup(kube, node_name, {"logs": {"maxSize": "1Mi", "maxFiles": 3, "checkInterval": "1s"}})
    first = agents.start(node_name, bed)
    before = wait_for("the startup report", lambda: status(kube, node_name).get("lastRun"))["startTime"]
    assert first.terminate() == 0
    apply_nodecleanup(kube, node_name, {"logs": {"enabled": False}})
    generation = nodecleanup(kube, node_name)["metadata"]["generation"]
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "rotwait")
        container = await start_container(
            cri, pod, "w", image.name, "yes 0123456789abcdef | head -c 3000000; sleep 3600"
        )
        await wait_for_state(cri, container.id, "RUNNING")
        wait_for("the live log past maxSize", lambda: container.log_path.stat().st_size > 1 << 20, 20)
        with late_kubeconfig(kube, tmp_path) as late:
            agent = agents.start(node_name, bed, state_dir=first.state_dir, kubeconfig=str(late))
            assert "policy source=saved" in agent.log()
            wait_for("a run under the fresh policy", lambda: (s := status(kube, node_name)).get("observedGeneration")
                     == generation and (s.get("lastRun") or {}).get("startTime", before) != before, 30)  # fmt: skip
            assert "kind=rotate-log" not in agent.log()
            assert [p.name for p in container.log_path.parent.iterdir()] == [container.log_path.name]
            assert agent.terminate() == 0
        await remove_all_pods(cri)
