"""The agent's supervision of its own loops, with an in-memory apiserver (`support.agentbed.MemoryKube`): a loop
that crashes makes it exit non-zero, SIGTERM makes it exit zero. (The log rotator's restarts are
tests/agent/test_rotation.py's, the refused status tests/agent/test_reporter.py's.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from node_janitor.agent.node_agent import AgentConfig, NodeAgent
from support.agentbed import MemoryKube
from support.poll import async_wait_for


def _agent(tmp_path: Path, kube: MemoryKube) -> NodeAgent:
    config = AgentConfig(
        "n",
        containerd_socket=str(tmp_path / "no-containerd.sock"),
        state_dir=tmp_path / "state",
        pod_log_dir=tmp_path / "pods",
        metrics_port=0,
        metrics_host="127.0.0.1",
    )
    return NodeAgent(config, kube)


async def test_a_crashed_task_makes_the_agent_exit_non_zero(tmp_path: Path) -> None:
    kube = MemoryKube(crash=RuntimeError("a bug in the watch"))  # not an apiserver error: the watch task dies
    assert await asyncio.wait_for(_agent(tmp_path, kube).run(), 30) == 1
    assert kube.closed


async def test_an_agent_stopped_by_sigterm_exits_zero(tmp_path: Path) -> None:
    kube = MemoryKube()
    agent = _agent(tmp_path, kube)
    running = asyncio.create_task(agent.run())

    async def watching() -> bool:  # its loops are running (the stop below must find them so)
        return sorted(kube.listed) == ["Node", "NodeCleanup"]

    await async_wait_for("both watches to list", watching, 10)
    agent.stop()
    assert await asyncio.wait_for(running, 30) == 0
    assert kube.closed
