"""The agent never exits because the apiserver or containerd went away, and nothing is lost for good:

- apiserver down: the agent goes on applying the policy it holds (a restarted agent: the one saved in its state
  dir), and the run it did meanwhile reaches the NodeCleanup's status and the Node's Events once it is back;
- containerd killed: the status says Degraded (RuntimeUnavailable), /readyz fails, nothing in use is removed; once
  containerd is back the agent reconnects by itself and the status is Ready again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods
from node_janitor.runtime import open_runtime
from support.agentbed import (
    AgentFactory,
    apply_nodecleanup,
    condition,
    fill_to_percent,
    image_ids,
    import_until_above,
    late_kubeconfig,
    node_events,
    nodecleanup,
    run_container,
    stage_images,
    status,
    wait_for,
    wait_for_disk,
)
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]
MIN_AGE = {"images": {"minAge": "1s"}}


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_apiserver_then_containerd_outage(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = small_disk_bed
    in_use, _, late = stage_images(bed, "out", 3)
    # 75/60, not the defaults' 85/75: the disk will sit at about 80%, which only this policy fixes. Prediction off:
    # this is the watermark path (with it on, the saved policy reclaims while the image arrives, before 75%).
    apply_nodecleanup(
        kube,
        node_name,
        {"thresholds": {"highPercent": 75, "lowPercent": 60, "predict": False}, "images": {"minAge": "1s"}},
    )
    container_id = await run_container(bed, in_use)

    first = agents.start(node_name, bed, heartbeat="2s")
    wait_for("the startup report", lambda: status(kube, node_name).get("lastRun"))
    assert (first.state_dir / "policy.json").exists()
    # runtime discovery: one line at start (containerd 2.x names its sandbox image only in its configuration)
    (found,) = [line for line in first.log().splitlines() if "runtime found " in line]
    source = "config file" if bed.binaries.major >= 2 else "cri status"
    assert f"root={bed.root} (from cri status)" in found and f"(from {source})" in found, found

    outage = datetime.now(UTC)
    kube.stop_apiserver()
    try:
        # A restart while the apiserver is away: the new agent holds the saved policy.
        assert first.terminate() == 0
        second = agents.start(node_name, bed, state_dir=first.state_dir, heartbeat="2s")
        await asyncio.sleep(6)  # past its wait for the first list
        assert second.process.poll() is None
        fill_to_percent(bed, 69)
        import_until_above(bed, late, 75)
        wait_for_disk(bed, 60, timeout=30)  # the saved 75/60 policy at work, the apiserver still down
        assert in_use.id in await image_ids(bed)
        assert "policy source=saved generation=1" in second.log()
    finally:
        kube.start_apiserver()

    def reported_after_outage() -> dict[str, object] | None:
        st = status(kube, node_name)
        last = st.get("lastRun") or {}
        return st if last.get("trigger") == "watermark" and _parse(last["startTime"]) > outage else None

    st = wait_for("the run done during the outage, reported", reported_after_outage, 60)
    assert st["lastRun"]["reclaimedBytes"] > 0 and st["diskPercent"] <= 60.5
    wait_for("its Event", lambda: [e for e in node_events(kube, node_name) if e["reason"] == "CleanupDone"], 30)

    # containerd killed: Degraded, not ready, and the agent keeps running.
    bed.kill()
    down = wait_for("Degraded RuntimeUnavailable", lambda: (c := condition(status(kube, node_name), "Degraded"))
                    .get("reason") == "RuntimeUnavailable" and c, 30)  # fmt: skip
    assert down["status"] == "True"
    assert condition(status(kube, node_name), "Ready")["status"] == "False"
    assert second.http("/readyz")[0] == 503
    assert second.process.poll() is None

    bed.restart()
    back = time.monotonic()
    wait_for("Ready again", lambda: condition(status(kube, node_name), "Ready").get("status") == "True", 30)
    assert condition(status(kube, node_name), "Degraded")["status"] == "False"
    assert second.http("/readyz")[0] == 200
    beat = _parse(status(kube, node_name)["heartbeatTime"])
    wait_for("a later heartbeat", lambda: _parse(status(kube, node_name)["heartbeatTime"]) > beat, 30)
    assert time.monotonic() - back < 30
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        assert (await cri.container_status(container_id)).state == "RUNNING"  # nothing in use was touched
        assert in_use.id in {i.id for i in await cri.list_images()}
        await remove_all_pods(cri)


async def test_a_restarted_agent_acts_on_the_fresh_policy_when_the_apiserver_answers_late(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory, tmp_path: Path
) -> None:
    """The saved policy is only a stand-in: while the agent was away the admin protected every image (keep), and
    the disk went over the saved high watermark. The restarted agent reaches the apiserver 2 s late (a proxy
    holds its connections): its first run waits for the NodeCleanup and removes nothing. (Before, the first
    monitor tick started a watermark run under the saved policy at once.)"""
    bed = small_disk_bed
    apply_nodecleanup(
        kube, node_name, {"thresholds": {"highPercent": 75, "lowPercent": 60}, "images": MIN_AGE["images"]}
    )
    first = agents.start(node_name, bed)
    before = wait_for("the startup report", lambda: status(kube, node_name).get("lastRun"))["startTime"]
    assert first.terminate() == 0

    _, old, _ = stage_images(bed, "fresh", 3)
    fill_to_percent(bed, 82)
    apply_nodecleanup(
        kube,
        node_name,
        {"thresholds": {"highPercent": 75, "lowPercent": 60}, "images": {"minAge": "1s", "keep": ["example.com/*"]}},
    )
    generation = nodecleanup(kube, node_name)["metadata"]["generation"]
    with late_kubeconfig(kube, tmp_path) as late:
        agent = agents.start(node_name, bed, state_dir=first.state_dir, kubeconfig=str(late))
        assert "policy source=saved" in agent.log()
        report = wait_for(
            "a run under the fresh policy",
            lambda: (
                (s := status(kube, node_name)).get("observedGeneration") == generation
                and (s.get("lastRun") or {}).get("startTime", before) != before
                and s
            ),
            30,
        )
        assert "kind=remove-image" not in agent.log()
        assert {i.id for i in old} <= await image_ids(bed)
        assert report["lastRun"]["reclaimedBytes"] == 0
        assert agent.terminate() == 0
