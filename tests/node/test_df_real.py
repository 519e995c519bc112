"""`node-janitor df` on a real containerd, proved against the file system's own numbers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from node_janitor.cli import main
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.collect import CollectOptions, collect_inventory
from node_janitor.node.usage import build_disk_report
from node_janitor.runtime import open_runtime

pytestmark = pytest.mark.containerd
MiB = 1 << 20


def _close(measured: int, predicted: int, what: str) -> None:
    """Filesystem numbers include block rounding and metadata: allow 2% + 256 KiB, no more."""
    slack = predicted * 0.02 + 256 * 1024
    print(f"{what}: measured={measured} predicted={predicted} diff={measured - predicted}")
    assert abs(measured - predicted) <= slack, f"{what}: file system says {measured}, df said {predicted}"


async def test_df_is_exact_against_the_file_system(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    b = bed.builder
    base = Layer.random(6 * MiB, "df-base")
    web = b.build("example.com/web:v1", [b.busybox_layer(), base, Layer.random(3 * MiB, "web")])
    job = b.build("example.com/job:v1", [b.busybox_layer(), base, Layer.random(2 * MiB, "job")])
    old = b.build("example.com/old:v1", [b.busybox_layer(), base, Layer.random(4 * MiB, "old")])
    solo = b.build("example.com/solo:v1", [b.busybox_layer(), Layer.random(5 * MiB, "solo")])
    cli = b.build("example.com/cli:v1", [b.busybox_layer(), Layer.random(2 * MiB, "cli")])
    stale = b.build("example.com/moving:v1", [b.busybox_layer(), Layer.random(3 * MiB, "moving-1")])
    fresh = b.build("example.com/moving:v1", [b.busybox_layer(), Layer.random(1 * MiB, "moving-2")])

    before_import = bed.usage().used
    bed.import_images([web, job, old, solo, cli, stale])
    bed.import_images([fresh])  # moves the tag: `stale` is left dangling (only its ID record)

    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        pod = await run_pod(cri, bed.pod_log_dir, "df")
        running = await start_container(cri, pod, "web", "example.com/web:v1", "sleep 3600")
        done = await start_container(cri, pod, "job", "example.com/job:v1", "echo finished")
        await wait_for_state(cri, running.id, "RUNNING")
        await wait_for_state(cri, done.id, "EXITED")
        # A plain containerd container (as ctr or nerdctl makes): CRI does not list it, it still uses its image.
        await containerd.create_container("plain-cli", "example.com/cli:v1")

        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        report = build_disk_report(inventory, datetime.now(UTC))
        details = {d.id: d for d in report.images}
        rows = report.rows

        # Counted once by ID whatever the refs; the dangling image is still an image.
        assert set(details) == {i.id for i in (web, job, old, solo, cli, stale, fresh)} | {
            next(i.id for i in inventory.images if "registry.k8s.io/pause:3.6" in i.repo_tags)
        }
        assert details[stale.id].refs == (stale.id,)
        # Active: any container, running or exited, CRI or not.
        assert details[web.id].containers == 1 and details[job.id].containers == 1
        assert details[cli.id].containers == 1
        assert details[old.id].containers == 0
        assert rows["images"].active == 4  # web, job, cli, and pause (the sandbox)

        # SIZE is blobs + unpacked snapshots, about twice the compressed size CRI reports.
        assert details[solo.id].size > 1.9 * details[solo.id].cri_size
        # The shared base (blob + snapshot) is counted once: the images row is what import wrote to disk.
        _close(bed.usage().used - before_import, rows["images"].size - _pause_size(report), "images size")
        base_bytes = details[old.id].shared_size
        assert base_bytes >= 2 * 6 * MiB  # base blob and its snapshot, shared with web and job
        assert details[old.id].unique_size == details[old.id].size - base_bytes

        # Reclaimable == what the file system gains when every inactive image goes.
        predicted = rows["images"].reclaimable
        used_before = bed.usage().used
        inactive = [d.id for d in report.images if d.containers == 0 and not d.pinned]
        assert set(inactive) == {old.id, solo.id, stale.id, fresh.id}
        for image_id in inactive:
            await cri.remove_image(image_id)
        await containerd.wait_for_gc()
        _close(used_before - bed.usage().used, predicted, "images reclaimable")
        # What active images share with removed ones is still there: web and job still have their base.
        after = build_disk_report(
            await collect_inventory(
                cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
            ),
            datetime.now(UTC),
        )
        assert after.rows["images"].reclaimable == 0
        assert {d.id for d in after.images} >= {web.id, job.id, cli.id}

        # Exited containers: their read-write layers are the Containers row's reclaimable part.
        assert after.rows["containers"].active >= 2  # web and the sandbox
        await containerd.delete_container("plain-cli")
        await remove_all_pods(cri)


def _pause_size(report) -> int:  # type: ignore[no-untyped-def]
    """The sandbox image (busybox layer included) was on disk before the import started."""
    pause = next(d for d in report.images if d.pinned)
    return pause.size


def test_df_cli_json_and_table(containerd_bed: ContainerdBed, capsys: pytest.CaptureFixture[str]) -> None:
    b = containerd_bed.builder
    containerd_bed.import_images([b.build("example.com/cli-df:v1", [b.busybox_layer(), Layer.random(MiB, "x")])])
    args = ["df", "--containerd-socket", containerd_bed.address, "--pod-log-dir", str(containerd_bed.pod_log_dir)]
    assert main([*args, "-o", "json", "-v"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("images", "containers", "snapshots", "content", "logs"):
        assert set(doc[key]) == {"total", "active", "size", "reclaimable"}
        assert all(isinstance(v, int) for v in doc[key].values())
    assert doc["images"]["total"] == 2
    detail = next(d for d in doc["image_details"] if "example.com/cli-df:v1" in d["refs"])
    assert detail["unique_size"] == detail["size"] - detail["shared_size"] and detail["containers"] == 0

    assert main([*args, "-v"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert "example.com/cli-df:v1" in table and "SHARED SIZE" in table


@pytest.mark.parametrize("kind", ["missing", "regular-file", "nobody-listening"])
def test_df_dead_socket_is_one_line_and_exit_3(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "containerd.sock"
    if kind == "regular-file":
        path.write_text("not a socket")
    elif kind == "nobody-listening":
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    proc = subprocess.run(
        [sys.executable, "-m", "node_janitor", "df", "--containerd-socket", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3  # the runtime is unreachable (2 is usage or bad input)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("node-janitor: error:") and str(path) in lines[0]
    assert "Traceback" not in proc.stderr


def test_df_logs_row_follows_the_policy(containerd_bed: ContainerdBed, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    gone = containerd_bed.pod_log_dir / "default_deleted-pod_0d5c6e2a-0000-4000-8000-000000000001" / "app"
    gone.mkdir(parents=True)
    (gone / "0.log").write_bytes(b"2026-01-01T00:00:00Z stdout F hello\n" * 4096)
    two_hours_ago = time.time() - 7200
    for p in (gone / "0.log", gone, gone.parent):
        os.utime(p, (two_hours_ago, two_hours_ago))

    async def one_pod() -> None:  # with no sandbox at all (a runtime restarting), no pod directory is orphaned
        async with open_runtime(containerd_bed.address, containerd_bed.namespace) as (cri, _):
            await run_pod(cri, containerd_bed.pod_log_dir, "still-here")

    asyncio.run(one_pod())
    keep = tmp_path / "keep-orphans.yaml"
    keep.write_text(
        "apiVersion: nodejanitor.io/v1alpha1\nkind: CleanupPolicy\nmetadata: {name: k}\n"
        "spec:\n  logs: {removeOrphaned: false}\n"
    )
    args = [
        "df",
        "--containerd-socket",
        containerd_bed.address,
        "--pod-log-dir",
        str(containerd_bed.pod_log_dir),
        "-o",
        "json",
    ]
    assert main(args) == 0
    default = json.loads(capsys.readouterr().out)["logs"]
    assert main([*args, "--policy", str(keep)]) == 0
    kept = json.loads(capsys.readouterr().out)["logs"]
    assert default["total"] == kept["total"] == 1 and default["active"] == 0
    assert default["reclaimable"] == default["size"] >= 4096 * 36  # the orphaned pod's log, past its grace
    assert kept["reclaimable"] == 0
