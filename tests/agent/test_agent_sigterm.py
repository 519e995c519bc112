"""SIGTERM in the middle of a run: the removal in flight finishes, the rest of the run is dropped, the state is
written, the agent exits 0 within a few seconds. containerd is frozen (SIGSTOP) while the first removal is in flight
so that the signal surely lands then."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.node.execute import IMAGE_CONCURRENCY
from support.agentbed import AgentFactory, MiB, apply_nodecleanup, build_images, image_ids, status, wait_for
from support.inotify import OnDelete
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
    # containerd is frozen the instant its garbage collection deletes the first blob of these images: that
    # collection runs inside a RemoveImage call (CRI removes with a synchronous GC), so at least one removal is
    # in flight and, with at most IMAGE_CONCURRENCY in flight and none answered, most are not sent yet. (Waiting
    # for the agent's first log line instead let all 20 finish first: overlapped removals take milliseconds.)
    seen = Counter(d for image in images for d in image.blobs)
    ours = {d.removeprefix("sha256:") for d, n in seen.items() if n == 1}  # not the shared busybox layer
    pid = bed.pid
    assert pid is not None
    blobs = bed.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    with OnDelete(blobs, ours, lambda: os.kill(pid, signal.SIGSTOP)) as frozen:
        apply_nodecleanup(kube, node_name, {"images": {"minAge": "1s", "maxUnusedAge": "1s"}}, runRequest="stop-me")
        wait_for("containerd frozen at the first deletion", frozen.fired.is_set, 30, interval=0.01)
    try:
        agent.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
    finally:
        os.kill(pid, signal.SIGCONT)
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
