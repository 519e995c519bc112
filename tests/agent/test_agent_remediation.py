"""The agent alone (no operator) keeps the disk below its watermarks: a crossing of the high watermark is fixed
within 10 s, least recently used unused images first; the Node's DiskPressure makes it reclaim to the low
watermark, once; a dry-run policy reports its plan and removes nothing."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.containerd import PAUSE_IMAGE
from node_janitor.devbed.pods import remove_all_pods
from node_janitor.runtime import open_runtime
from support.agentbed import (
    AgentFactory,
    apply_nodecleanup,
    build_images,
    fill_to_percent,
    image_ids,
    import_one_by_one,
    import_until_above,
    node_events,
    run_container,
    set_disk_pressure,
    stage_images,
    status,
    wait_for,
    wait_for_disk,
)
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]

# The watermark path, prediction off: with it on, the agent reclaims while the image is still arriving (a fill of
# several % a second on containerd 2.x), before the disk ever crosses 75% (tests/agent/test_agent_fill.py covers that).
POLICY = {"thresholds": {"highPercent": 75, "lowPercent": 60, "predict": False}, "images": {"minAge": "1s"}}


async def _pause_image_id(bed: ContainerdBed) -> str:
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        return next(i.id for i in await cri.list_images() if PAUSE_IMAGE in i.repo_tags)


async def test_watermark_crossing_is_fixed_within_10s_lru_first_never_in_use(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = small_disk_bed
    in_use, old, late = stage_images(bed, "wm", 4)
    pause = await _pause_image_id(bed)
    apply_nodecleanup(kube, node_name, POLICY)
    container_id = await run_container(bed, in_use)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        agent = agents.start(node_name, bed)
        wait_for("the startup run", lambda: status(kube, node_name).get("lastRun", {}).get("trigger") == "startup")
        fill_to_percent(bed, 69)  # ballast the agent cannot remove; the late image takes it over 75%
        assert bed.usage().used_percent < 75
        crossed = import_until_above(bed, late, 75)
        fixed = wait_for_disk(bed, 60, timeout=30)
        assert fixed - crossed <= 10, f"took {fixed - crossed:.1f}s from the crossing to the low watermark"

        left = await image_ids(bed)
        removed = [image.id for image in old if image.id not in left]
        # Least recently used first: the oldest arrivals, in order, and only as many as needed.
        assert removed and removed == [image.id for image in old[: len(removed)]], removed
        assert len(removed) < len(old)
        assert {in_use.id, pause, late.id} <= left
        assert (await cri.container_status(container_id)).state == "RUNNING"

        st = wait_for("the watermark run's report", lambda: (s := status(kube, node_name))["lastRun"]["trigger"]
                      == "watermark" and s)  # fmt: skip
        last = st["lastRun"]
        assert last["dryRun"] is False and last["errors"] == [] and last["reclaimedBytes"] > 0
        assert last["actions"] >= len(removed)
        assert st["diskPercent"] <= 60.5
        events = wait_for("the run's Event on the Node", lambda: [e for e in node_events(kube, node_name)
                                                                  if e["reason"] == "CleanupDone"])  # fmt: skip
        assert events[0]["involvedObject"]["kind"] == "Node" and "watermark" in events[0]["message"]
        metrics = agent.metrics()
        assert metrics["node_janitor_last_run_reclaimed_bytes"] == last["reclaimedBytes"]
        assert metrics['node_janitor_runs_total{dry_run="false",trigger="watermark"}'] >= 1
        assert agent.metric("node_janitor_actions_total", kind="remove-image", outcome="done") == len(removed)
        assert "remove-image" in agent.log() and "reason=lru-under-pressure" in agent.log()
        await remove_all_pods(cri)


async def test_disk_pressure_reclaims_to_the_low_watermark_once(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = small_disk_bed
    old = build_images(bed, "dp", 4)
    import_one_by_one(bed, old)
    apply_nodecleanup(kube, node_name, {"thresholds": {"highPercent": 95, "lowPercent": 50},
                                        "images": {"minAge": "1s"}})  # fmt: skip
    fill_to_percent(bed, 65)
    await asyncio.sleep(1.1)  # minAge
    agent = agents.start(node_name, bed)
    wait_for("the startup run", lambda: status(kube, node_name).get("lastRun", {}).get("trigger") == "startup")
    assert bed.usage().used_percent > 60  # below the high watermark: the startup run removed no image
    assert await image_ids(bed) >= {i.id for i in old}

    set_disk_pressure(kube, node_name, True)
    asked = time.monotonic()
    fixed = wait_for_disk(bed, 50, timeout=30)
    assert fixed - asked <= 10, f"took {fixed - asked:.1f}s from DiskPressure to the low watermark"
    wait_for("the pressure run's report", lambda: status(kube, node_name)["lastRun"]["trigger"] == "pressure")
    left = await image_ids(bed)
    assert [i.id for i in old if i.id not in left] == [i.id for i in old[: len(old) - len(left & {i.id for i in old})]]

    # DiskPressure stays True (the kubelet keeps it for its transition period): no second run.
    await asyncio.sleep(5)
    metrics = agent.metrics()
    assert metrics['node_janitor_runs_total{dry_run="false",trigger="pressure"}'] == 1
    assert status(kube, node_name)["lastRun"]["trigger"] == "pressure"


async def test_dry_run_policy_reports_its_plan_and_removes_nothing(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = small_disk_bed
    old = build_images(bed, "dry", 3)
    import_one_by_one(bed, old)
    apply_nodecleanup(kube, node_name, {**POLICY, "dryRun": True})
    fill_to_percent(bed, 82)
    await asyncio.sleep(1.1)
    before = await image_ids(bed)
    agents.start(node_name, bed)
    st = wait_for("a dry run's report", lambda: (s := status(kube, node_name)).get("lastRun", {}).get("plan") and s)
    last = st["lastRun"]
    assert last["dryRun"] is True and last["reclaimedBytes"] == 0 and last["plannedBytes"] > 0
    planned = [p for p in last["plan"] if p["kind"] == "remove-image"]
    assert planned and planned[0]["ref"] == old[0].name and planned[0]["reason"] == "lru-under-pressure"
    assert all(p["bytes"] > 0 for p in planned)
    assert "dry run" in next(c for c in st["conditions"] if c["type"] == "Ready")["message"]
    await asyncio.sleep(3)  # monitor ticks above the high watermark: still nothing removed
    assert await image_ids(bed) == before
    assert bed.usage().used_percent > 75


async def test_run_requests_are_answered_dry_ones_remove_nothing(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = small_disk_bed
    old = build_images(bed, "req", 3)
    import_one_by_one(bed, old)
    # Every unused image goes at once (maxUnusedAge), but the one the operator says a workload uses.
    policy = {"images": {"minAge": "1s", "maxUnusedAge": "1s"}}
    apply_nodecleanup(kube, node_name, policy, protectedImages=[old[1].name])
    await asyncio.sleep(1.1)
    agents.start(node_name, bed)
    wait_for("the startup run", lambda: status(kube, node_name).get("lastRun", {}).get("trigger") == "startup")
    assert {i.id for i in old} & await image_ids(bed) == {old[1].id}
    bed.import_images(build_images(bed, "reqnew", 1))
    await asyncio.sleep(1.1)
    before = await image_ids(bed)

    def request(token: str) -> dict[str, object]:
        kube.kubectl("patch", "nodecleanup", node_name, "--type=merge", "--field-manager=node-janitor-run",
                     "-p", json.dumps({"spec": {"runRequest": token}}))  # fmt: skip
        return dict(wait_for(f"the answer to {token}", lambda: (s := status(kube, node_name)).get("lastRun", {})
                             .get("runRequest") == token and s["lastRun"]))  # fmt: skip

    dry = request("dry-run:20261201T000000Z-abcd")
    assert dry["trigger"] == "request" and dry["dryRun"] is True
    assert [p["ref"] for p in dry["plan"] if p["kind"] == "remove-image"] == ["example.com/reqnew0:v1"]
    assert await image_ids(bed) == before

    real = request("20261201T000001Z-ef01")
    assert real["trigger"] == "request" and real["dryRun"] is False and real["actions"] >= 1
    assert len(await image_ids(bed)) == len(before) - 1


async def test_a_paused_policy_answers_run_requests_and_removes_nothing(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = small_disk_bed
    old = build_images(bed, "paused", 2)
    import_one_by_one(bed, old)
    apply_nodecleanup(kube, node_name, {"paused": True, "images": {"minAge": "1s", "maxUnusedAge": "1s"}})
    fill_to_percent(bed, 85)  # above the default high watermark too
    await asyncio.sleep(1.1)
    before = await image_ids(bed)
    agents.start(node_name, bed)
    wait_for("the agent's first report", lambda: status(kube, node_name).get("heartbeatTime"))
    token = "20261201T000002Z-aa55"
    kube.kubectl("patch", "nodecleanup", node_name, "--type=merge", "--field-manager=node-janitor-run",
                 "-p", json.dumps({"spec": {"runRequest": token}}))  # fmt: skip

    def answered() -> dict[str, object] | None:
        last = status(kube, node_name).get("lastRun", {})
        return last if last.get("runRequest") == token else None

    last = wait_for("the answer under paused", answered)
    assert last["trigger"] == "request" and last["actions"] == 0 and last["reclaimedBytes"] == 0
    await asyncio.sleep(3)  # monitor ticks above the high watermark: still nothing removed
    assert await image_ids(bed) == before
