"""The agent's engine and its fast log rotator share one log janitor and one lock for the pod log tree
(`adapter.build_engine`, `adapter.build_rotator`), on a real containerd: one ContainerStatus per container for
both, one callback hearing every log action once, and a run's log pass waiting while the rotator holds the tree.
(No control plane: the adapter is what the agent calls.)"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from node.logs.test_cli_logs_real import LINES_THEN_SLEEP
from node.logs.test_tree_safety_real import _wait_for_lines
from node_janitor.agent.adapter import build_engine, build_rotator
from node_janitor.api.policy import LogsPolicy
from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.last_used import LastUsedStore
from node_janitor.node.logs import LogActionKind, LogActionResult
from node_janitor.runtime import open_runtime
from node_janitor.runtime.records import CriContainerStatus
from support.enginebed import rules
from support.logbed import writer_image

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


async def test_extra_paths_never_reach_the_agents_own_state_directory(
    containerd_bed: ContainerdBed, tmp_path: Path
) -> None:
    """In the shipped DaemonSet the agent's state directory is the one writable host directory outside the pod
    log tree that a glob could reach: a rule over it is skipped with a warning (the run's and the rotator's
    sweeps alike), while the same rule elsewhere removes what it matches."""
    bed = containerd_bed
    state, other = tmp_path / "state", tmp_path / "other"
    old = time.time() - 3600
    for path in (state / "policy.json", state / "last-used.json", other / "app.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (old, old))
    spec = {"logs": {"extraPaths": [{"glob": f"{state}/*.json", "maxAge": "1s"},
                                    {"glob": f"{other}/*.json", "maxAge": "1s"}]}}  # fmt: skip
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = build_engine(
            cri,
            containerd,
            namespace=bed.namespace,
            pod_log_dir=bed.pod_log_dir,
            state=LastUsedStore(None),
            kubelet_root=tmp_path / "kubelet",
            state_dir=state,
            on_log_result=lambda _: None,
        )
        report = await engine.run_once(rules(spec))
        assert report.logs is not None
        assert [a.path for a in report.logs.extra] == [str(other / "app.json")]
        assert any(w.startswith(f"extraPaths[0] ({state}/*.json) skipped: reaches {state}") for w in
                   report.logs.warnings), report.logs.warnings  # fmt: skip
        assert sorted(p.name for p in state.iterdir()) == ["last-used.json", "policy.json"]
        assert not (other / "app.json").exists()

        rotator = await build_rotator(engine, bed.pod_log_dir, rules(spec).logs)
        assert state in rotator.protected
