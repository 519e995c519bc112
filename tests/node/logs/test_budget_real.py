"""The node budget and orphaned pod directories, with the rotator running against the real containerd."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from node_janitor.api.policy import LogsPolicy
from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.logs import LogActionResult, LogPass, LogRotator, LogSettings
from node_janitor.runtime import open_runtime
from support.logbed import (
    NUMBERED_LINES,
    RecordingCri,
    check_numbered,
    ordered_log_files,
    stdout_messages,
    writer_image,
)

pytestmark = pytest.mark.containerd
KiB, MiB = 1 << 10, 1 << 20
FEW_LINES = "i=0; while [ $i -lt 2000 ]; do echo $i; i=$((i+1)); done"


def tree_bytes(root: Path) -> int:
    total = 0
    for top, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
    return total


def age_tree(root: Path, seconds: float) -> None:
    t = time.time() - seconds
    for top, dirs, names in os.walk(root):
        for name in [*names, *dirs]:
            os.utime(os.path.join(top, name), (t, t), follow_symlinks=False)
    os.utime(root, (t, t))


async def test_budget_holds_and_orphans_go_after_their_grace(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    image = writer_image(bed)
    budget = 3 * MiB
    policy = LogsPolicy.model_validate(
        {
            "maxSize": "256Ki",
            "maxFiles": 50,
            "checkInterval": "100ms",
            "nodeBudget": budget,
            "orphanGracePeriod": "1h",
        }
    )
    results: list[LogActionResult] = []
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        recording = RecordingCri(cri)
        # Two pods that are gone (their log directories stay behind, as kubelet may leave them): one long ago,
        # one just now (within the grace).
        gone = {}
        for name in ("old-gone", "new-gone"):
            pod = await run_pod(cri, bed.pod_log_dir, name)
            c = await start_container(cri, pod, "app", image, FEW_LINES)
            await wait_for_state(cri, c.id, "EXITED")
            await cri.remove_pod_sandbox(pod.sandbox_id)
            gone[name] = (pod.log_dir, c.id)
        await asyncio.to_thread(age_tree, gone["old-gone"][0], 7200)

        pod = await run_pod(cri, bed.pod_log_dir, "writers")
        writers = [await start_container(cri, pod, f"w{i}", image, NUMBERED_LINES) for i in range(2)]
        # The first sweep runs at once (the old orphan goes); later ones only when the budget may be passed.
        rotator = LogRotator(
            recording, bed.pod_log_dir, policy, sweep_interval=timedelta(seconds=30), on_result=results.append
        )
        stop = asyncio.Event()
        task = asyncio.create_task(rotator.run(stop))
        samples = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            samples.append(await asyncio.to_thread(tree_bytes, bed.pod_log_dir))
        for w in writers:
            await cri.stop_container(w.id)
        stop.set()
        await asyncio.wait_for(task, 30)
        assert rotator.errors == []

        # One more pass once the writers stopped: under budget, exactly.
        final = await LogPass(recording, bed.pod_log_dir, LogSettings.from_policy(policy)).run()
        assert not [r for r in final.results if r.outcome == "failed"]
        assert await asyncio.to_thread(tree_bytes, bed.pod_log_dir) <= budget
        late = sorted(samples[len(samples) // 2 :])
        print(
            f"budget {budget // KiB} KiB; pod logs while writing: median {late[len(late) // 2] // KiB} KiB, "
            f"max {late[-1] // KiB} KiB"
        )
        # A budget pass starts as soon as what was written since the last one may pass the budget; meanwhile the
        # writers go on (their rate x a pass's duration, more when this process is starved of CPU).
        assert late[len(late) // 2] <= budget + MiB

        reasons = {str(r.action.reason) for r in results if r.outcome == "done"}
        assert {"max-size", "node-budget", "orphaned-pod"} <= reasons, reasons
        assert not gone["old-gone"][0].exists()  # orphaned for longer than the grace
        assert gone["new-gone"][0].exists()  # orphaned, but within the grace
        assert pod.log_dir.exists()
        # Whatever the budget removed, what is left of each writer is one unbroken run of its lines.
        for w in writers:
            first, last = check_numbered(stdout_messages(ordered_log_files(w.log_path.parent)))
            assert last > first
        # Containers that were gone or exited never had their logs reopened.
        reopened = {cid for _, cid in recording.reopens}
        assert reopened <= {w.id for w in writers}
        await remove_all_pods(cri)
