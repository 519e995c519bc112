"""SIGTERM in the middle of a run: the removal in flight finishes, the rest of the run is dropped, the state is
written, the agent exits 0 within a few seconds. containerd is frozen (SIGSTOP) while the first removal is in flight
so that the signal surely lands then."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.node.execute import IMAGE_CONCURRENCY
from support.agentbed import (
    AgentFactory,
    MiB,
    apply_nodecleanup,
    build_images,
    frozen_at_first_removal,
    image_ids,
    status,
    wait_for,
)
from support.kube import ControlPlane

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
    with frozen_at_first_removal(kube, bed, node_name, images, "stop-me"):
        agent.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
    started = time.monotonic()
    agent.process.wait(timeout=10)
    assert agent.process.returncode == 0
    assert time.monotonic() - started < 5

    removed = agent.log().count("kind=remove-image")
    left = {i.id for i in images} & await image_ids(bed)
    # Only what was in flight when SIGTERM came (at most IMAGE_CONCURRENCY, none answered: containerd was frozen)
    # was done; none was sent after it. Each logged removal really happened.
    assert 1 <= removed <= IMAGE_CONCURRENCY < len(images) and len(left) == len(images) - removed
    saved = json.loads((agent.state_dir / "status.json").read_text())
    assert any("interrupted by SIGTERM" in e for e in saved["lastRun"]["errors"])
    assert saved["lastRun"]["runRequest"] == "stop-me"
    assert (agent.state_dir / "last-used.json").exists()
