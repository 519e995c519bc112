"""The agent ahead of the fill, on a real containerd (the agent in this process, its NodeCleanup given by the
in-memory apiserver `MemoryKube`): a pull in flight (an ingest opened through the content Write API) counts as used,
so the watermark run comes before its bytes land and leaves room for them; a fast fill below the high watermark makes
a `prediction` run with prediction on, none with it off."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node_janitor.agent.node_agent import AgentConfig, NodeAgent
from node_janitor.devbed import ContainerdBed
from node_janitor.runtime import ContainerdClient
from support.agentbed import MemoryKube, build_images, fill_to_percent, import_one_by_one
from support.kube import free_ports
from support.poll import async_wait_for

pytestmark = pytest.mark.containerd

MiB = 1 << 20
POLICY: dict[str, Any] = {"thresholds": {"highPercent": 75, "lowPercent": 60}, "images": {"minAge": "1s"}}


@contextlib.asynccontextmanager
async def running_agent(
    bed: ContainerdBed, tmp_path: Path, policy: dict[str, Any], *, look_ahead: bool = True
) -> AsyncIterator[NodeAgent]:
    cleanup = {"metadata": {"name": "n", "generation": 1}, "spec": {"nodeName": "n", "policy": policy}}
    kube = MemoryKube({"NodeCleanup": cleanup, "Node": {"metadata": {"name": "n", "uid": "u"}, "status": {}}})
    port = free_ports(1)[0]
    config = AgentConfig("n", containerd_socket=bed.address, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir,
                         state_dir=tmp_path / "state", metrics_port=port, metrics_host="127.0.0.1",
                         look_ahead=look_ahead)  # fmt: skip
    agent = NodeAgent(config, kube)
    task = asyncio.create_task(agent.run())
    try:
        await async_wait_for("the startup run", lambda: _true(runs(agent, "startup") >= 1), 60)
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)


async def _true(value: bool) -> bool:
    return value


def runs(agent: NodeAgent, trigger: str) -> float:
    value = agent.metrics.registry.get_sample_value("node_janitor_runs_total", {"trigger": trigger, "dry_run": "false"})
    return value or 0.0


async def test_a_pull_in_flight_counts_as_used_and_the_run_leaves_room_for_it(
    containerd_bed: ContainerdBed, tmp_path: Path
) -> None:
    bed = containerd_bed
    import_one_by_one(bed, build_images(bed, "inflight", 8, size=8 * MiB))  # removable, about 128 MiB
    fill_to_percent(bed, 62)  # before the agent starts: a ballast written fast would be a fill of its own
    usage = bed.usage()
    capacity = usage.used + usage.available
    declared = capacity // 5  # a layer of a fifth of the disk on its way: 62% + 20% projected, above 75%
    async with running_agent(bed, tmp_path, POLICY) as agent, ContainerdClient(bed.address) as ctrd:
        await ctrd.write_content("big-layer", os.urandom(MiB), commit=False, total=declared)
        assert bed.usage().used_percent < 75  # what is on disk alone would not trigger
        await async_wait_for("the watermark run", lambda: _true(runs(agent, "watermark") >= 1), 60)
        assert agent.reporter.last_run is not None and agent.reporter.last_run["errors"] == []
        landed = bed.usage().used + declared - MiB  # as if the rest of the layer had arrived
        assert landed <= capacity * 0.61
        assert agent.metrics.registry.get_sample_value("node_janitor_pending_bytes") == declared - MiB
        await ctrd.abort_ingest("big-layer")


async def test_the_benchmark_baseline_counts_only_what_is_on_disk(
    containerd_bed: ContainerdBed, tmp_path: Path
) -> None:
    """The fill-rate sweep's baseline (`look_ahead=False`, NODE_JANITOR_BENCH_BASELINE=1): the agent before issue
    22. The same pull in flight (62% + 20% announced) makes no run of its own; once a ballast takes the disk over 75%
    the watermark run reclaims to 60% of what is on disk and leaves no room for the layer still to come."""
    bed = containerd_bed
    import_one_by_one(bed, build_images(bed, "inflight", 8, size=8 * MiB))  # removable, about 128 MiB
    fill_to_percent(bed, 62)
    usage = bed.usage()
    capacity = usage.used + usage.available
    declared = capacity // 5
    async with running_agent(bed, tmp_path, POLICY, look_ahead=False) as agent, ContainerdClient(bed.address) as ctrd:
        await ctrd.write_content("big-layer", os.urandom(MiB), commit=False, total=declared)
        await asyncio.to_thread(fill_to_percent, bed, 77, "ballast-over")
        await async_wait_for("the watermark run", lambda: _true(runs(agent, "watermark") >= 1), 60)
        assert agent.reporter.last_run is not None and agent.reporter.last_run["errors"] == []
        assert bed.usage().used_percent <= 61
        assert bed.usage().used + declared - MiB > capacity * 0.75  # the layer's landing would cross 75% again
        assert agent.metrics.registry.get_sample_value("node_janitor_pending_bytes") == 0
        await ctrd.abort_ingest("big-layer")


@pytest.mark.parametrize("predict", [True, False], ids=["prediction-on", "prediction-off"])
async def test_a_fast_fill_below_the_high_watermark_is_reclaimed_ahead_only_with_prediction_on(
    containerd_bed: ContainerdBed, tmp_path: Path, predict: bool
) -> None:
    bed = containerd_bed
    import_one_by_one(bed, build_images(bed, "old", 8, size=8 * MiB))  # removable
    wave = build_images(bed, "wave", 6, size=6 * MiB)  # about 72 MiB: 14% of the disk
    fill_to_percent(bed, 55)  # before the agent starts: a ballast written fast would be a fill of its own
    policy = {**POLICY, "thresholds": {**POLICY["thresholds"], "predict": predict}}
    async with running_agent(bed, tmp_path, policy) as agent:
        await asyncio.to_thread(bed.import_images, wave)  # 14 points in one import (seconds here): 69% unreclaimed
        if predict:
            await async_wait_for("a prediction run", lambda: _true(runs(agent, "prediction") >= 1), 60)
            assert bed.usage().used_percent < 75
        else:
            assert runs(agent, "prediction") == 0 and runs(agent, "watermark") == 0  # today's agent waits for 75%
