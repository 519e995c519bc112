"""The agent's engine and its fast log rotator share one log janitor and one lock for the pod log tree
(`adapter.build_engine`, `adapter.build_rotator`), on a real containerd: one ContainerStatus per container for
both, one callback hearing every log action once, and a run's log pass waiting while the rotator holds the tree.
(No control plane: the adapter is what the agent calls.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.enginebed import rules
from logs.realbed import writer_image
from logs.test_cli_logs_real import LINES_THEN_SLEEP
from logs.test_tree_safety_real import _wait_for_lines
from node_janitor.agent.adapter import build_engine, build_rotator
from node_janitor.api.policy import LogsPolicy
from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.logs import LogActionKind, LogActionResult
from node_janitor.node import open_runtime
from node_janitor.runtime.records import CriContainerStatus
from node_janitor.state import LastUsedStore

pytestmark = pytest.mark.containerd
KiB = 1 << 10


async def test_engine_and_rotator_share_one_janitor_and_one_tree_lock(
    containerd_bed: ContainerdBed, tmp_path: Path
) -> None:
    bed = containerd_bed
    image = writer_image(bed)
    heard: list[LogActionResult] = []
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = build_engine(
            cri,
            containerd,
            namespace=bed.namespace,
            pod_log_dir=bed.pod_log_dir,
            state=LastUsedStore(None),
            kubelet_root=tmp_path / "kubelet",
            on_log_result=heard.append,
        )
        policy = LogsPolicy(max_size=64 * KiB, max_files=5, compress=False)
        rotator = await build_rotator(engine, bed.pod_log_dir, policy)
        assert rotator.janitor is engine.log_janitor
        assert rotator.lock is engine.log_lock is engine.log_janitor.tree_lock

        pod = await run_pod(cri, bed.pod_log_dir, "writer")
        c = await start_container(cri, pod, "w", image, LINES_THEN_SLEEP)
        await wait_for_state(cri, c.id, "RUNNING")
        await _wait_for_lines(c.log_path)  # then quiet: one rotation, and the run rotates nothing
        rotated = await rotator.check()
        assert [(r.action.kind, str(r.outcome)) for r in rotated] == [(LogActionKind.ROTATE, "done")]

        asked: list[str] = []
        status = cri.container_status

        async def counted(container_id: str) -> CriContainerStatus:
            asked.append(container_id)
            return await status(container_id)

        cri.container_status = counted  # type: ignore[method-assign]  # a spy on the real client
        # A run while the rotator holds the tree: its log pass waits for the lock.
        spec = {"logs": {"maxSize": "64Ki", "maxFiles": 1, "compress": False}}
        async with rotator.lock.hold():
            run = asyncio.create_task(engine.run_once(rules(spec)))
            await asyncio.sleep(0.5)
            assert not run.done()
        report = await asyncio.wait_for(run, 60)
        assert not report.errors, report.errors
        removed = [r for r in report.logs.results if r.action.kind is LogActionKind.REMOVE] if report.logs else []
        assert [Path(r.action.path).parent for r in removed] == [c.log_path.parent]  # maxFiles 1: the rotated file

        assert asked == []  # the rotator's log-path cache: the run asks the runtime for no log path again
        assert [id(r) for r in heard] == [id(r) for r in [*rotated, *report.logs.results]]  # each heard once
        await remove_all_pods(cri)
