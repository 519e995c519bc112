"""The agent's supervision of its own parts, with a fake apiserver client: a crashed task makes it exit non-zero, a
dead log rotator is restarted with bounded backoff and reported, a refused status does not hold back the Events
nor the heartbeat."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from node_janitor.agent import node_agent
from node_janitor.agent.kube import KubeError, Resource
from node_janitor.agent.node_agent import AgentConfig, NodeAgent, RotatorHealth


class FakeKube:
    """What the agent calls on its KubeClient: the NodeCleanup and the Node are listed (absent) and never change."""

    def __init__(self, refuse_status: KubeError | None = None) -> None:
        self.refuse_status = refuse_status
        self.patches: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    async def list_one(self, resource: Resource, name: str) -> tuple[dict[str, Any] | None, str]:
        return None, "1"

    async def watch_one(self, resource: Resource, name: str, resource_version: str) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield  # pragma: no cover

    async def patch_status(self, resource: Resource, name: str, status: dict[str, Any]) -> None:
        if self.refuse_status is not None and "imageRefs" in status:
            raise self.refuse_status
        self.patches.append(status)

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def close(self) -> None:
        pass


def _agent(tmp_path: Path, kube: FakeKube) -> NodeAgent:
    config = AgentConfig(
        "n",
        containerd_socket=str(tmp_path / "no-containerd.sock"),
        state_dir=tmp_path / "state",
        pod_log_dir=tmp_path / "pods",
        metrics_port=0,
        metrics_host="127.0.0.1",
    )
    return NodeAgent(config, cast(Any, kube))


async def test_a_crashed_task_makes_the_agent_exit_non_zero(tmp_path: Path) -> None:
    agent = _agent(tmp_path, FakeKube())

    async def crash() -> None:
        raise RuntimeError("a bug in the scheduler")

    agent._scheduler = crash  # type: ignore[method-assign]
    assert await asyncio.wait_for(agent.run(), 30) == 1


async def test_an_agent_stopped_by_sigterm_exits_zero(tmp_path: Path) -> None:
    agent = _agent(tmp_path, FakeKube())
    running = asyncio.create_task(agent.run())
    await asyncio.sleep(0.2)  # let it start its tasks (the stop below must find them running)
    agent.stop()
    assert await asyncio.wait_for(running, 30) == 0


class FlakyRotator:
    """Dies with an OSError on its first `failures` starts, then runs until stopped."""

    starts = 0

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def run(self, stop: asyncio.Event) -> None:
        FlakyRotator.starts += 1
        if FlakyRotator.starts <= self.failures:
            raise OSError(28, "No space left on device")
        await stop.wait()


async def test_a_dead_log_rotator_is_restarted_with_backoff_counted_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FlakyRotator.starts = 0

    async def build_rotator(*_: Any) -> FlakyRotator:
        return FlakyRotator(failures=3)

    monkeypatch.setattr(node_agent, "build_rotator", build_rotator)
    monkeypatch.setattr(node_agent, "ROTATOR_BACKOFF", (0.1, 0.2), raising=False)
    monkeypatch.setattr(node_agent, "ROTATOR_HEALTHY", 0.5, raising=False)
    agent = _agent(tmp_path, FakeKube())
    agent._on_nodecleanup("LIST", {"metadata": {"name": "n", "generation": 1}, "spec": {"nodeName": "n", "policy": {}}})
    agent.link.cri, agent.link.containerd, agent.link.error = cast(Any, object()), cast(Any, object()), None
    agent._engine_of = (agent.link.generation, cast(Any, object()))

    async def synced(what: str, until: Any) -> Any:
        """Syncs the rotator as the monitor does every tick, until `until()` (10 s at most)."""
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            await agent._sync_rotator()
            if value := until():
                return value
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    await synced("the fourth start, after three deaths", lambda: FlakyRotator.starts == 4 and agent._rotator)
    degraded = next(c for c in agent.status_document()["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "LogRotatorFailed")
    assert "3 time(s)" in degraded["message"] and "No space left on device" in degraded["message"]
    samples = {s.labels.get("source"): s.value for m in agent.metrics.registry.collect() for s in m.samples
               if s.name == "node_janitor_errors_total"}  # fmt: skip
    assert samples["logrotator"] == 3
    await synced("recovered", lambda: agent.rotator_health.failures == 0)
    degraded = next(c for c in agent.status_document()["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "False", degraded
    await agent._sync_rotator(hold=True)  # stops it
    assert FlakyRotator.starts == 4


def test_the_rotator_backoff_doubles_up_to_its_cap() -> None:
    health = RotatorHealth()
    assert [health.failed("x", 0.0) for _ in range(11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert health.restart_at == 300 and health.failures == 11


async def test_a_refused_status_holds_back_neither_the_events_nor_the_heartbeat(tmp_path: Path) -> None:
    kube = FakeKube(refuse_status=KubeError("status: 422 imageRefs: Too many: 5001: must have at most 5000", 422))
    agent = _agent(tmp_path, kube)
    agent.policy.exists, agent.link.error = True, None
    agent._usage = {"imageRefs": ["a:1"], "imageCount": 1}
    agent._events.append({"kind": "Event", "reason": "CleanupDone"})
    assert await asyncio.wait_for(agent._send(), 5)  # no retry loop in front of the Events
    assert [e["reason"] for e in kube.events] == ["CleanupDone"]
    (heartbeat,) = kube.patches
    assert set(heartbeat) <= {"conditions", "observedGeneration", "heartbeatTime"} and heartbeat["heartbeatTime"]
    degraded = next(c for c in heartbeat["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "StatusRefused") and "422" in degraded["message"]
    # An answer worth retrying (here: credentials being rotated) is retried, and the Events wait for it.
    kube.refuse_status = KubeError("status: 401 Unauthorized", 401)
    agent._events.append({"kind": "Event", "reason": "CleanupFailed"})
    assert not await agent._send() and len(kube.events) == 1
    # Once the apiserver takes the full status again, Degraded clears.
    kube.refuse_status = None
    assert await agent._send() and "imageRefs" in kube.patches[-1]
    assert await agent._send()
    degraded = next(c for c in kube.patches[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "False"
