"""What the log rules must never touch, on the real containerd and its pod log tree: directories that are not
kubelet's, names the runtime never writes, live files the layout does not predict, the tree while the runtime
reports no sandbox, and one lock between passes and the rotator across processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from node.logs.test_cli_logs_real import LINES_THEN_SLEEP, _age, _cli, _policy, _write_rotated
from node_janitor.api.policy import LogsPolicy
from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.logs import LogPass, LogRotator, LogSettings
from node_janitor.runtime import open_runtime
from support.logbed import RecordingCri, start_misplaced_logger, writer_image

pytestmark = pytest.mark.containerd
KiB = 1 << 10


async def _wait_for_lines(path: Path, size: int = 800 * KiB) -> None:
    """LINES_THEN_SLEEP is done when its 20,000 lines are there."""

    def done() -> bool:
        return path.exists() and path.stat().st_size > size and b" 19999\n" in path.read_bytes()[-100:]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if await asyncio.to_thread(done):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path}: the writer did not finish")


async def test_a_wrong_pod_log_dir_loses_nothing(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    """Pointed at a home directory, the default rules once removed `my_photos_2019` as an orphaned pod directory
    (any name with two underscores, quiet for an hour). Only kubelet's shape counts, through and through."""
    bed = containerd_bed
    home = tmp_path / "home"
    photo = home / "my_photos_2019" / "album" / "0.log"  # even a log-like name inside
    notes = home / f"default_web_{uuid.uuid4()}" / "app" / "notes.txt"  # kubelet's name, not kubelet's content
    beside = notes.parent / "0.log"
    empty = home / f"default_job_{uuid.uuid4()}"  # kubelet's name, no container directory
    for path in (photo, notes, beside):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"precious\n" * 1000)
    empty.mkdir()
    _age(home, 7200)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        await run_pod(cri, bed.pod_log_dir, "some-pod")  # the runtime has sandboxes, none of these
        code, report = await _cli(bed, "prune", "--pod-log-dir", str(home), "--policy", str(_policy(tmp_path, {})))
        assert code == 0, report["errors"]
        assert [a for a in report["actions"] if a["kind"].endswith(("-log", "-log-dir"))] == []
        assert photo.read_bytes() == notes.read_bytes() == beside.read_bytes() == b"precious\n" * 1000
        assert empty.is_dir()
        await remove_all_pods(cri)


def test_an_empty_pod_log_dir_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "node_janitor", "prune", "--pod-log-dir", "", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--pod-log-dir: must name a directory" in out.stderr.splitlines()[-1]


async def test_no_sandbox_at_all_makes_no_pod_directory_an_orphan(containerd_bed: ContainerdBed) -> None:
    """A runtime that restarts reports no sandbox for a moment: that must not make every quiet pod directory an
    orphan."""
    bed = containerd_bed
    quiet = bed.pod_log_dir / f"default_web_{uuid.uuid4()}" / "app" / "0.log"
    quiet.parent.mkdir(parents=True)
    quiet.write_bytes(b"2026-01-01T00:00:00Z stdout F hello\n")
    _age(quiet.parent.parent, 7200)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        assert await cri.list_pod_sandboxes() == []
        report = await LogPass(cri, bed.pod_log_dir, LogSettings()).run()
        assert report.actions == [] and quiet.exists()
        assert report.warnings == [
            f"the runtime reports no pod sandbox at all: none of the 1 pod log directories in {bed.pod_log_dir} "
            "is treated as orphaned"
        ]
        # With a sandbox known, the same directory is an orphan past its grace.
        await run_pod(cri, bed.pod_log_dir, "other")
        report = await LogPass(cri, bed.pod_log_dir, LogSettings()).run()
        assert [r.outcome for r in report.results] == ["done"] and not quiet.parent.parent.exists()
        await remove_all_pods(cri)


async def test_a_pod_log_dir_that_is_a_file_gives_a_warning(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    bed = containerd_bed
    not_a_dir = tmp_path / "pods"
    not_a_dir.write_text("x")
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        report = await LogPass(cri, not_a_dir, LogSettings(node_budget=0)).run()
    assert report.actions == []
    assert report.warnings == [f"pod log directory {not_a_dir} is not a directory"]
    # (An unreadable directory gives "cannot read pod log directory ...": not testable as root, who reads all.)


async def test_a_pod_directory_whose_name_is_not_utf8_never_crashes_the_report(
    containerd_bed: ContainerdBed, tmp_path: Path
) -> None:
    """Once removed as an orphan, then printing the report crashed and the report was lost."""
    bed = containerd_bed
    log = bed.pod_log_dir / os.fsdecode(b"default_caf\xe9_" + str(uuid.uuid4()).encode()) / "app" / "0.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"2026-01-01T00:00:00Z stdout F hello\n")
    _age(log.parent.parent, 7200)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        await run_pod(cri, bed.pod_log_dir, "some-pod")
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "node_janitor", "prune", "--containerd-socket", bed.address),
            *("--pod-log-dir", str(bed.pod_log_dir), "--policy", str(_policy(tmp_path, {}))),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},  # a real stdout: strict UTF-8, as a terminal's
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, stderr.decode(errors="replace")
        assert b"Total reclaimed space" in stdout
        assert log.exists()  # not kubelet's name: never touched
        await remove_all_pods(cri)


async def test_live_is_the_runtimes_log_path_not_the_layouts(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    """A container whose log file is not where the layout predicts (`app/3.log` for attempt 0) is still live:
    the budget rotates it (ReopenContainerLog) instead of unlinking a file the runtime goes on writing."""
    bed = containerd_bed
    image = writer_image(bed)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "app")
        cid, live = await start_misplaced_logger(cri, pod, image, LINES_THEN_SLEEP)
        await _wait_for_lines(live)
        policy = _policy(tmp_path, {"logs": {"nodeBudget": "64Ki", "maxSize": "100Mi", "compress": False}})
        code, report = await _cli(bed, "prune", "--policy", str(policy))
        assert code == 0, report["errors"]
        on_live = [(a["kind"], a["outcome"]) for a in report["actions"] if a["id"] == str(live)]
        assert on_live == [("rotate-log", "done")], report["actions"]
        assert live.exists()  # reopened by the runtime, not unlinked under it
        assert (await cri.container_status(cid)).state == "RUNNING"
        await remove_all_pods(cri)


async def test_names_the_runtime_never_writes_push_no_log_out(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    """A stray `99999999999999999999999999.log` (or `7.log` beside attempt 0) once ranked as the newest file and
    pushed a running container's rotated logs out under maxFiles."""
    bed = containerd_bed
    image = writer_image(bed)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "app")
        c = await start_container(cri, pod, "app", image, LINES_THEN_SLEEP)
        await _wait_for_lines(c.log_path)
        rotated = _write_rotated(c.log_path.parent, [4, 3, 2, 1], 10 * KiB)
        strays = [c.log_path.parent / "99999999999999999999999999.log", c.log_path.parent / "7.log"]
        for stray in strays:
            stray.write_bytes(b"not the runtime's\n")
        policy = _policy(tmp_path, {"logs": {"maxFiles": 3, "maxSize": "100Mi", "compress": False}})
        code, report = await _cli(bed, "prune", "--policy", str(policy))
        assert code == 0, report["errors"]
        assert [(Path(a["id"]).name, a["reason"]) for a in report["actions"]] == [
            (p.name, "max-files") for p in rotated[:2]
        ]
        assert all(p.exists() for p in [c.log_path, *rotated[2:], *strays])
        await remove_all_pods(cri)


async def test_the_rotator_waits_for_a_pass_holding_the_tree_in_another_process(
    containerd_bed: ContainerdBed,
) -> None:
    """One lock for the log tree (flock on the pod log directory): a `prune` by hand and the agent's rotator
    never rotate or remove at once."""
    bed = containerd_bed
    image = writer_image(bed)
    hold = 1.5
    holder = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        f"time.sleep({hold})\n"
    )
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        recording = RecordingCri(cri)
        pod = await run_pod(cri, bed.pod_log_dir, "app")
        c = await start_container(cri, pod, "app", image, LINES_THEN_SLEEP)
        await wait_for_state(cri, c.id, "RUNNING")
        await _wait_for_lines(c.log_path)
        rotator = LogRotator(recording, bed.pod_log_dir, LogsPolicy.model_validate({"maxSize": "256Ki"}))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", holder, str(bed.pod_log_dir), stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"locked\n"
        started = time.monotonic()
        [result] = await asyncio.wait_for(rotator.check(), 60)
        assert await proc.wait() == 0
        ended = time.monotonic()
        assert result.outcome == "done"
        # The rotation waited for the other process: it reopened the log only once the lock was free.
        [(reopened_at, cid)] = recording.reopens
        assert cid == c.id and reopened_at - started >= hold * 0.8, (reopened_at - started, ended - started)
        await rotator.close()
        await remove_all_pods(cri)
