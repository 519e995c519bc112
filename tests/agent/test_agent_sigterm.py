"""SIGTERM in the middle of a run: the removal in flight finishes, the rest of the run is dropped, the state is
written, the agent exits 0 within a few seconds. containerd is frozen (SIGSTOP) right after the first removal so
that the signal surely lands while a removal is in flight."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest

from agent.harness import AgentFactory, MiB, apply_nodecleanup, build_images, image_ids, status, wait_for
from node_janitor.devbed import ContainerdBed
from testbed.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]


async def test_sigterm_finishes_the_removal_in_flight_and_exits_0(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = containerd_bed
    apply_nodecleanup(kube, node_name, {})
    agent = agents.start(node_name, bed)
    wait_for("the startup run", lambda: status(kube, node_name).get("lastRun"))
    images = build_images(bed, "term", 20, size=1 * MiB)
    bed.import_images(images)
    await asyncio.sleep(1.1)  # minAge
    apply_nodecleanup(kube, node_name, {"images": {"minAge": "1s", "maxUnusedAge": "1s"}}, runRequest="stop-me")

    wait_for("the first removal", lambda: "kind=remove-image" in agent.log(), 30, interval=0.01)
    assert bed._proc is not None
    os.kill(bed._proc.pid, signal.SIGSTOP)  # the next removal hangs in containerd
    try:
        agent.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
    finally:
        os.kill(bed._proc.pid, signal.SIGCONT)
    started = time.monotonic()
    agent.process.wait(timeout=10)
    assert agent.process.returncode == 0
    assert time.monotonic() - started < 5

    removed = agent.log().count("kind=remove-image")
    left = {i.id for i in images} & await image_ids(bed)
    assert 1 <= removed < len(images) and len(left) == len(images) - removed  # each logged removal really done
    saved = json.loads((agent.state_dir / "status.json").read_text())
    assert any("interrupted by SIGTERM" in e for e in saved["lastRun"]["errors"])
    assert saved["lastRun"]["runRequest"] == "stop-me"
    assert (agent.state_dir / "last-used.json").exists()
