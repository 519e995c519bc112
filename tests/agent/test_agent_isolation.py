"""An agent watches only its own NodeCleanup and Node (field selector metadata.name=NODE): another node's
objects never reach it, whatever happens to them."""

from __future__ import annotations

import time

import pytest

from node_janitor.devbed import ContainerdBed
from support.agentbed import Agent, AgentFactory, apply_nodecleanup, create_node, status, wait_for
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]
MODIFIED = 'node_janitor_watch_events_total{resource="nodecleanups",type="MODIFIED"}'
NODE_MODIFIED = 'node_janitor_watch_events_total{resource="nodes",type="MODIFIED"}'


def _settled(agent: Agent) -> dict[str, float]:
    """The agent's watch counters once they stopped moving for 1.5 s (its own status writes echo back)."""
    previous: dict[str, float] = {}
    stable_since = time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = agent.metrics()
        now = {k: metrics.get(k, 0.0) for k in (MODIFIED, NODE_MODIFIED)}
        if now != previous:
            previous, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 1.5:
            return now
        time.sleep(0.2)
    raise AssertionError("the agent's watch counters never settled")


def test_other_nodes_objects_never_reach_the_agent(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    other = f"{node_name}-other"
    create_node(kube, other)
    try:
        apply_nodecleanup(kube, node_name, {})
        apply_nodecleanup(kube, other, {})
        agent = agents.start(node_name, containerd_bed)
        wait_for("the startup report", lambda: status(kube, node_name).get("lastRun"))
        before = _settled(agent)

        for i in range(5):  # the other node's NodeCleanup and Node change; nothing may arrive
            apply_nodecleanup(kube, other, {"thresholds": {"highPercent": 90 - i, "lowPercent": 50}})
            kube.kubectl("label", "node", other, f"round={i}", "--overwrite")
        kube.kubectl("label", "nodecleanup", node_name, "seen=yes")  # then one change of its own
        kube.kubectl("label", "node", node_name, "seen=yes")
        after = wait_for(
            "the agent's own changes",
            lambda: (
                (m := _settled(agent))[MODIFIED] > before[MODIFIED] and m[NODE_MODIFIED] > before[NODE_MODIFIED] and m
            ),
        )
        assert after[MODIFIED] == before[MODIFIED] + 1, (before, after)
        assert after[NODE_MODIFIED] == before[NODE_MODIFIED] + 1, (before, after)
        assert other not in agent.log()
        assert status(kube, other) == {}  # it reports only into its own NodeCleanup
    finally:
        kube.kubectl("delete", "nodecleanup", other, "--ignore-not-found", check=False)
        kube.kubectl("delete", "node", other, "--ignore-not-found", check=False)
