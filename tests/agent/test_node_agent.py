"""NodeAgent's wiring, on an in-memory apiserver and no containerd: what its watches hand to the policy holder,
the triggers and the reporter (the parts themselves are tested in test_triggers, test_runner, test_reporter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node_janitor.agent.node_agent import AgentConfig, NodeAgent
from node_janitor.agent.pods import PULL_EXPECTED_SECONDS, NodePods
from support.agentbed import MemoryKube


def _agent(tmp_path: Path) -> NodeAgent:
    return NodeAgent(AgentConfig("n", state_dir=tmp_path / "state", pod_log_dir=tmp_path / "pods"), MemoryKube())


def _cleanup(name: str = "n", generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": generation}, "spec": {"nodeName": name, "policy": {}, **spec}}


async def test_a_run_request_queues_one_run_and_is_not_asked_again_after_a_restart(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.on_nodecleanup("LIST", _cleanup(runRequest="t1"))
    agent.on_nodecleanup("MODIFIED", _cleanup(runRequest="t1"))
    pending = await agent.queue.take()
    assert pending.run_request == "t1" and not agent.queue.pending
    agent.queue.done()
    agent.reporter.last_run = {"runRequest": "t1", "trigger": "request"}
    agent.reporter.save()
    restarted = _agent(tmp_path)  # its status.lastRun answered t1
    restarted.on_nodecleanup("LIST", _cleanup(runRequest="t1"))
    assert not restarted.queue.pending


async def test_another_nodes_objects_are_ignored(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.on_nodecleanup("LIST", _cleanup("other", runRequest="t1"))
    agent.on_node("MODIFIED", {"metadata": {"name": "other", "uid": "u"},
                               "status": {"conditions": [{"type": "DiskPressure", "status": "True"}]}})  # fmt: skip
    assert not agent.queue.pending and agent.held.source != "nodecleanup" and agent.reporter.node_uid is None


async def test_the_node_s_disk_pressure_queues_a_pressure_run_and_its_uid_goes_into_events(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.on_node("LIST", {"metadata": {"name": "n", "uid": "uid-1"},
                           "status": {"conditions": [{"type": "DiskPressure", "status": "True"}]}})  # fmt: skip
    pending = await agent.queue.take()
    assert pending.pressure and agent.reporter.node_uid == "uid-1"


def test_a_new_policy_is_reported_and_the_status_says_which(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.on_nodecleanup("LIST", _cleanup(generation=4))
    assert agent.reporter.dirty.is_set() and agent.held.generation == 4
    status = agent.status_document()
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["observedGeneration"] == 4
    assert (ready["status"], ready["reason"]) == ("False", "RuntimeUnavailable")  # no containerd yet
    assert agent.ready() == (False, "containerd unreachable: not connected yet")


async def test_a_run_request_annotation_queues_a_run_and_wins_over_spec_run_request(tmp_path: Path) -> None:
    """`node-janitor run` asks through the annotation (no generation bump); an answered spec token stays answered."""
    agent = _agent(tmp_path)
    agent.reporter.last_run = {"runRequest": "t1", "trigger": "request"}
    agent.triggers.answered_request = "t1"
    annotated = _cleanup(runRequest="t1")
    annotated["metadata"]["annotations"] = {"nodejanitor.io/run-request": "dry-run:t2"}
    agent.on_nodecleanup("MODIFIED", annotated)
    assert agent.queue.pending
    pending = await agent.queue.take()
    assert pending.run_request == "dry-run:t2" and pending.dry_run_request and not agent.queue.pending
    agent.queue.done()
    agent.on_nodecleanup("MODIFIED", annotated)  # seen again: asked once
    assert not agent.queue.pending


def _pod(uid: str, phase: str | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {"metadata": {"uid": uid}, "spec": {"containers": [{"image": f"registry.example/{uid}:1"}]}}
    if phase is not None:
        pod["status"] = {"phase": phase}
    return pod


def test_a_pod_waiting_to_start_means_a_pull_is_expected_for_a_while() -> None:
    """The fill-rate sweep's 40% wave (26%/s) landed between two 2 s ticks of the idle monitor: the pods bound to the
    node said it was coming (pending, their images not pulled yet) before any ingest did."""
    now = [100.0]
    heard: list[int] = []
    pods = NodePods(on_starting=lambda: heard.append(1), clock=lambda: now[0])
    pods.replace([_pod("running", "Running")])
    assert not pods.pull_expected() and heard == []
    pods.apply("ADDED", _pod("new"))  # bound to the node, no status yet
    assert pods.pull_expected() and heard == [1]
    now[0] += PULL_EXPECTED_SECONDS + 1  # pending for long (a pull backing off): its ingests say if it pulls
    assert not pods.pull_expected()
    pods.apply("MODIFIED", _pod("new", "Pending"))  # its status changes: it may pull again
    assert pods.pull_expected() and heard == [1, 1]
    pods.apply("MODIFIED", _pod("new", "Running"))
    assert not pods.pull_expected() and heard == [1, 1]
    pods.apply("ADDED", _pod("gone", "Pending"))
    pods.apply("DELETED", _pod("gone", "Pending"))
    assert not pods.pull_expected()


def test_the_monitor_samples_at_once_when_a_pod_of_its_node_waits_to_start(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.pods.apply("ADDED", _pod("p", "Pending"))
    assert agent._sample_now.is_set()  # the monitor's wait ends: its next tick is now
    baseline = NodeAgent(
        AgentConfig("n", state_dir=tmp_path / "b", pod_log_dir=tmp_path / "pods", look_ahead=False), MemoryKube()
    )
    baseline.pods.apply("ADDED", _pod("p", "Pending"))
    assert not baseline._sample_now.is_set()  # the benchmark's baseline keeps its 2 s tick
