"""`node-janitor df` and `prune` with the log rules, on the real containerd and its pod log tree."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.cli import main
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.logs import LogFileKind, parse_log_name, rotated_name
from node_janitor.runtime import open_runtime
from support.logbed import check_numbered, ordered_log_files, stdout_messages, writer_image

pytestmark = pytest.mark.containerd
KiB, MiB = 1 << 10, 1 << 20
# 20,000 numbered lines (about 900 KB of CRI log), then quiet.
WRITER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done"  # a line every 0.2 s
LINES_THEN_SLEEP = "i=0; while [ $i -lt 20000 ]; do echo $i; i=$((i+1)); done; sleep 3600"


def _blocks(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


def _tree_blocks(root: Path) -> int:
    return sum(_blocks(Path(top) / n) for top, _, names in os.walk(root) for n in names)


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    for top, dirs, names in os.walk(path):
        for name in [*names, *dirs]:
            os.utime(Path(top) / name, (t, t))
    os.utime(path, (t, t))


def _policy(directory: Path, spec: dict[str, Any]) -> Path:
    path = directory / "policy.yaml"
    manifest = {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": "t"}}
    path.write_text(yaml.safe_dump({**manifest, "spec": spec}))
    return path


async def _cli(bed: ContainerdBed, *args: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    common = ["--containerd-socket", bed.address, "--pod-log-dir", str(bed.pod_log_dir), "-o", "json"]

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main([args[0], *common, *args[1:]])

    code = await asyncio.to_thread(run)
    return code, json.loads(out.getvalue())


def _write_rotated(container_dir: Path, hours_ago: list[int], size: int) -> list[Path]:
    """Rotated files as an earlier rotation left them (kubelet's names), each `size` bytes of CRI lines."""
    out = []
    line = b"2026-01-01T00:00:00.000000000Z stdout F " + b"r" * 60 + b"\n"
    for h in hours_ago:
        path = container_dir / Path(rotated_name("0.log", datetime.now(UTC) - timedelta(hours=h))).name
        path.write_bytes(line * (size // len(line)))
        _age(path, h * 3600)
        out.append(path)
    return out


async def test_df_shows_logs_and_prune_applies_the_log_rules(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    bed = containerd_bed
    image = writer_image(bed)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        app_pod = await run_pod(cri, bed.pod_log_dir, "app")
        app = await start_container(cri, app_pod, "app", image, LINES_THEN_SLEEP)
        gone_pod = await run_pod(cri, bed.pod_log_dir, "gone")
        gone = await start_container(cri, gone_pod, "job", image, "echo bye")
        await wait_for_state(cri, gone.id, "EXITED")
        await cri.remove_pod_sandbox(gone_pod.sandbox_id)
        for _ in range(200):  # the writer is done when its 20,000 lines are there
            if app.log_path.stat().st_size > 800 * KiB and b" 19999\n" in app.log_path.read_bytes()[-100:]:
                break
            await asyncio.sleep(0.05)
        old = _write_rotated(app.log_path.parent, [9, 8, 7, 6, 5, 4], 100 * KiB)
        _age(gone_pod.log_dir, 2 * 3600)

        # df (default policy: maxFiles 5, orphans after 1h): the orphaned pod and the two oldest rotated files.
        code, df = await _cli(bed, "df")
        assert code == 0
        logs = df["logs"]
        assert logs["total"] == 1 + 6 + 1 and logs["active"] == 1
        assert logs["size"] == _tree_blocks(bed.pod_log_dir)
        assert logs["reclaimable"] == _tree_blocks(gone_pod.log_dir) + _blocks(old[0]) + _blocks(old[1])

        policy = _policy(tmp_path, {"logs": {"maxSize": "512Ki", "maxFiles": 3}})
        before = sorted(os.listdir(app.log_path.parent))
        code, dry = await _cli(bed, "prune", "--policy", str(policy), "--dry-run")
        assert code == 0 and dry["dry_run"]
        planned = [(a["kind"], Path(a["id"]).name, a["reason"]) for a in dry["actions"]]
        assert planned == [
            ("remove-log-dir", gone_pod.log_dir.name, "orphaned-pod"),
            ("rotate-log", "0.log", "max-size"),
            *(("remove-log", p.name, "max-files") for p in old[:5]),
            ("compress-log", old[5].name, "compress"),  # no longer the newest rotated file, once 0.log rotates
        ]
        assert all(set(a) == {"kind", "id", "refs", "bytes", "reason", "outcome", "message"} for a in dry["actions"])
        assert dry["actions"][1]["refs"] == ["default/app", "app"]
        assert all(a["outcome"] == "planned" for a in dry["actions"])
        assert sorted(os.listdir(app.log_path.parent)) == before and gone_pod.log_dir.exists()  # nothing changed

        code, real = await _cli(bed, "prune", "--policy", str(policy))
        assert code == 0, real["errors"]
        assert [(a["kind"], a["id"]) for a in real["actions"]] == [(a["kind"], a["id"]) for a in dry["actions"]]
        assert all(a["outcome"] == "done" for a in real["actions"]), real["actions"]
        assert not gone_pod.log_dir.exists()
        names = sorted(os.listdir(app.log_path.parent))
        kinds = sorted(parse_log_name(n).kind for n in names)
        assert kinds == sorted([LogFileKind.LOG, LogFileKind.ROTATED, LogFileKind.COMPRESSED]), names
        assert old[5].name + ".gz" in names
        # The rotation lost nothing: the rotated file and the live one hold every line, once, in order.
        ours = [p for p in ordered_log_files(app.log_path.parent) if not p.name.startswith(old[5].name)]
        assert check_numbered(stdout_messages(ours)) == (0, 19999)
        assert real["reclaimed_bytes"] >= real["planned_bytes"] > 0  # + what compression saved

        code, again = await _cli(bed, "prune", "--policy", str(policy))
        assert code == 0 and again["actions"] == []
        await remove_all_pods(cri)


async def test_under_pressure_on_a_shared_disk_images_go_and_logs_within_their_rules_stay(
    small_disk_bed: ContainerdBed, tmp_path: Path
) -> None:
    """The pod logs share the disk with the images, which a file that is no log fills past the high watermark:
    unused images go; old rotated files within maxFiles, an exited container's log (`kubectl logs --previous`)
    and a running container's live log stay. When nothing else is left, the run says how far it is short and
    removes nothing, run after run (issue 18: the old agent rotated the live log away on every run)."""
    bed = small_disk_bed
    b = bed.builder
    images = [b.build(f"example.com/p{i}:v1", [b.busybox_layer(), Layer.random(8 * MiB, f"p{i}")]) for i in range(3)]
    bed.import_images(images)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "app")
        done = await start_container(cri, pod, "done", images[0].name, "echo bye")
        c = await start_container(
            cri, pod, "app", images[0].name, "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done"
        )
        await wait_for_state(cri, done.id, "EXITED")
        await wait_for_state(cri, c.id, "RUNNING")
        rotated = _write_rotated(c.log_path.parent, [10, 8, 6, 4], 3 * MiB)  # 12 MiB of old logs, within maxFiles
        logs_bytes = sum(_blocks(p) for p in rotated)
        usage = bed.usage()
        capacity = usage.used + usage.available
        # The low watermark (60%) is one unused image away; the old logs alone would also cover it.
        bed.fill(leave_available=capacity - int(0.60 * capacity + min(logs_bytes, 10 * MiB)))
        assert bed.usage().used_percent > 65
        policy = _policy(
            bed.base,
            {
                "thresholds": {"highPercent": 65, "lowPercent": 60},
                "images": {"minAge": "0s"},
                "logs": {"maxFiles": 10, "compress": False, "maxSize": "100Mi"},
            },
        )
        code, real = await _cli(bed, "prune", "--policy", str(policy))
        assert code == 0, real["errors"]
        assert {a["kind"] for a in real["actions"]} == {"remove-image"}, real["actions"]
        assert real["file_system"]["used_percent_after"] <= 60 and real["short_bytes"] == 0
        assert all(p.exists() for p in rotated)
        assert done.log_path.exists() and b"bye" in done.log_path.read_bytes()

        # The last unused image goes, then nothing is left but the logs: each run says how far it is short and
        # removes nothing.
        bed.fill(leave_available=capacity - int(0.80 * capacity), name="more-ballast")
        for run in range(3):
            lines = len(stdout_messages([c.log_path]))
            code, again = await _cli(bed, "prune", "--policy", str(policy))
            assert code == 0, again["errors"]
            assert {a["kind"] for a in again["actions"]} == ({"remove-image"} if run == 0 else set())
            assert again["short_bytes"] > 10 * MiB
            assert any(w.startswith("target not reached: imagefs") for w in again["warnings"]), again["warnings"]
            await asyncio.sleep(0.5)  # a few more lines, which must land in the same live file
        assert sorted(os.listdir(c.log_path.parent)) == sorted([*(p.name for p in rotated), c.log_path.name])
        assert len(stdout_messages([c.log_path])) > lines
        assert check_numbered(stdout_messages([c.log_path]))[0] == 0  # every line since the start, in one file
        assert done.log_path.exists() and b"bye" in done.log_path.read_bytes()
        await remove_all_pods(cri)


@pytest.fixture
def own_log_fs(containerd_bed: ContainerdBed) -> Iterator[ContainerdBed]:
    """`containerd_bed` with its pod log directory on a 32 MiB tmpfs of its own."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(containerd_bed.pod_log_dir)], check=True)
    try:
        yield containerd_bed
    finally:
        if subprocess.run(["umount", str(containerd_bed.pod_log_dir)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(containerd_bed.pod_log_dir)], check=False)


async def test_on_a_log_file_system_of_their_own_pressure_takes_only_files_no_container_writes(
    own_log_fs: ContainerdBed, tmp_path: Path
) -> None:
    """The pod log tree on a file system of its own (here a 32 MiB tmpfs: neither the images' disk nor the root
    disk): its pressure is the logs' to relieve, from files no container writes, oldest first, a running
    container's newest rotated file last; never its live log, never an exited container's log."""
    bed = own_log_fs
    image = writer_image(bed)
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "app")
        done = await start_container(cri, pod, "done", image, "echo bye")
        c = await start_container(cri, pod, "app", image, WRITER)
        await wait_for_state(cri, done.id, "EXITED")
        await wait_for_state(cri, c.id, "RUNNING")
        rotated = _write_rotated(c.log_path.parent, [10, 8, 6, 4], 3 * MiB)
        policy = _policy(
            tmp_path,
            {
                "thresholds": {"highPercent": 30, "lowPercent": 20},
                "logs": {"maxFiles": 10, "compress": False, "maxSize": "100Mi"},
            },
        )
        code, real = await _cli(bed, "prune", "--policy", str(policy))
        assert code == 0, real["errors"]
        assert [(a["kind"], a["reason"], a["id"]) for a in real["actions"]] == [
            ("remove-log", "log-fs-pressure", str(p)) for p in rotated[:2]
        ]
        assert real["log_file_system"]["used_percent_after"] <= 20 and real["short_bytes"] == 0

        # A file that is no log fills the rest: the other rotated files go, the newest last; the live log and
        # the exited container's log stay, and the run says how far it is short.
        (bed.pod_log_dir / "ballast").write_bytes(b"b" * 12 * MiB)
        code, again = await _cli(bed, "prune", "--policy", str(policy))
        assert code == 0, again["errors"]
        assert [a["id"] for a in again["actions"]] == [str(p) for p in rotated[2:]]
        assert again["short_bytes"] > 0
        assert any(w.startswith("target not reached: logs") for w in again["warnings"]), again["warnings"]
        assert sorted(os.listdir(c.log_path.parent)) == [c.log_path.name]
        assert check_numbered(stdout_messages([c.log_path]))[0] == 0
        assert done.log_path.exists() and b"bye" in done.log_path.read_bytes()
        await remove_all_pods(cri)
