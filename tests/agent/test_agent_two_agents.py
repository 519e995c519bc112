"""Two agent processes on one node, as a DaemonSet rollout with surge runs them (the same node, the same state
directory, the same containerd): their runs never overlap. Both see the Node's DiskPressure at once; one run
removes what it takes to reach the low watermark, the other plans on what is left and removes nothing."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed
from support.agentbed import (
    Agent,
    AgentFactory,
    apply_nodecleanup,
    build_images,
    fill_to_percent,
    image_ids,
    import_one_by_one,
    set_disk_pressure,
    status,
    wait_for,
    wait_for_disk,
)
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]

_ACTION = re.compile(r"^time=(\S+)Z .*action kind=remove-image id=(\S+) .*outcome=(\S+)", re.MULTILINE)


def _removals(agent: Agent) -> list[tuple[datetime, str, str]]:
    """(when, image id, outcome) of each image removal the agent logged."""
    return [(datetime.fromisoformat(t), i, o) for t, i, o in _ACTION.findall(agent.log())]


def _runs(agent: Agent, trigger: str) -> float:
    return agent.metrics().get(f'node_janitor_runs_total{{dry_run="false",trigger="{trigger}"}}', 0)


async def test_two_agents_on_one_node_never_run_at_once(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory, tmp_path: Path
) -> None:
    bed = small_disk_bed
    old = build_images(bed, "two", 4)
    import_one_by_one(bed, old)
    apply_nodecleanup(kube, node_name, {"thresholds": {"highPercent": 95, "lowPercent": 50},
                                        "images": {"minAge": "1s"}})  # fmt: skip
    fill_to_percent(bed, 65)
    await asyncio.sleep(1.1)  # minAge
    shared = tmp_path / "state"  # the node's hostPath: both pods of a surge mount it
    first, second = agents.start(node_name, bed, state_dir=shared), agents.start(node_name, bed, state_dir=shared)
    wait_for("both startup runs", lambda: _runs(first, "startup") == 1 and _runs(second, "startup") == 1, 30)
    assert await image_ids(bed) >= {i.id for i in old}  # below the high watermark: nothing removed yet

    set_disk_pressure(kube, node_name, True)  # both agents watch the same Node: both run
    wait_for_disk(bed, 50, timeout=30)
    wait_for("both pressure runs", lambda: _runs(first, "pressure") == 1 and _runs(second, "pressure") == 1, 30)
    wait_for("the report", lambda: status(kube, node_name)["lastRun"]["trigger"] == "pressure")

    left = await image_ids(bed)
    removed = {i.id for i in old} - left
    by_agent = [_removals(first), _removals(second)]
    assert removed and all(o == "done" for r in by_agent for _, _, o in r), by_agent
    # One run removed them all; the other, which waited for it, found the disk at its target.
    assert sorted(len(r) for r in by_agent) == [0, len(removed)], by_agent
    assert {i for r in by_agent for _, i, _ in r} == removed
