"""`node-janitor prune` on a real containerd with a small loop-mounted disk."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.cli import main
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.runtime import NotFoundError, open_runtime

pytestmark = pytest.mark.containerd
MiB = 1 << 20


def _policy(tmp_path: Path, spec: dict[str, Any], name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    manifest = {
        "apiVersion": "nodejanitor.io/v1alpha1",
        "kind": "CleanupPolicy",
        "metadata": {"name": "t"},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(manifest))
    return path


async def _prune(bed: ContainerdBed, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the real CLI (in a thread: it owns its event loop) and parse its JSON output."""
    import contextlib
    import io

    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main(
                [
                    "prune",
                    "--containerd-socket",
                    bed.address,
                    "--pod-log-dir",
                    str(bed.pod_log_dir),
                    "-o",
                    "json",
                    *args,
                ]
            )

    code = await asyncio.to_thread(run)
    return code, json.loads(out.getvalue())


async def _image_ids(bed: ContainerdBed) -> set[str]:
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        return {i.id for i in await cri.list_images()}


async def test_prune_reaches_low_watermark_oldest_unused_first_and_no_more(
    small_disk_bed: ContainerdBed, tmp_path: Path
) -> None:
    bed = small_disk_bed
    old = bed.builder.random_images("old", 4, 8 * MiB)  # each ~16 MiB on disk: its blob and its snapshot
    running, kept = bed.builder.random_images("keepme", 2, 8 * MiB)
    bed.import_images([*old, running, kept])
    await asyncio.sleep(2.2)
    young = bed.builder.random_images("young", 1, 8 * MiB)[0]
    bed.import_images([young])

    # Last used: old0 longest ago ... old3 most recently (the state file the agent keeps across restarts).
    state = tmp_path / "state.json"
    now = datetime.now(UTC)
    state.write_text(
        json.dumps({"lastUsed": {img.id: (now - timedelta(days=10 - i)).isoformat() for i, img in enumerate(old)}})
    )

    # Fill the disk so that reaching the low watermark takes about 2.5 images' worth.
    usage = bed.usage()
    capacity = usage.used + usage.available
    per_image = 16 * MiB
    target_used = int(0.60 * capacity + 2.5 * per_image)
    bed.fill(leave_available=capacity - target_used)
    assert bed.usage().used_percent > 75

    policy = _policy(
        tmp_path,
        {
            "thresholds": {"highPercent": 75, "lowPercent": 60},
            "images": {"minAge": "2s", "keep": ["example.com/keepme1:*"]},
        },
    )
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "busy")
        c = await start_container(cri, pod, "app", running.name, "sleep 3600")
        await wait_for_state(cri, c.id, "RUNNING")

        code, dry = await _prune(bed, "--policy", str(policy), "--state-file", str(state), "--dry-run")
        assert code == 0 and dry["dry_run"] is True
        assert await _image_ids(bed) >= {i.id for i in (*old, running, kept, young)}  # dry run removed nothing

        code, real = await _prune(bed, "--policy", str(policy), "--state-file", str(state))
        assert code == 0, real["errors"]
        removed = [a["id"] for a in real["actions"] if a["kind"] == "remove-image"]
        # Oldest unused first, and no more than needed: three of the four old images, in LRU order.
        assert removed == [old[0].id, old[1].id, old[2].id]
        assert [(a["kind"], a["id"]) for a in dry["actions"]] == [(a["kind"], a["id"]) for a in real["actions"]]
        assert all(a["outcome"] == "done" for a in real["actions"])
        assert real["file_system"]["used_percent_before"] > 75
        assert real["file_system"]["used_percent_after"] <= 60
        # Predicted bytes match the file system's gain within 5%.
        assert abs(real["reclaimed_bytes"] - real["planned_bytes"]) <= 0.05 * real["planned_bytes"]
        left = await _image_ids(bed)
        assert {running.id, kept.id, young.id, old[3].id} <= left  # in use, kept, young, not needed
        assert not left & {old[0].id, old[1].id, old[2].id}

        code, again = await _prune(bed, "--policy", str(policy), "--state-file", str(state))
        assert code == 0 and again["actions"] == [] and again["under_pressure"] is False
        await remove_all_pods(cri)


async def test_orphans_and_expired_leases_are_reclaimed_only_when_enabled(
    containerd_bed: ContainerdBed, tmp_path: Path
) -> None:
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (_, containerd):
        # containerd's own GC drops what an expired lease held whenever it runs, so the lease must outlive the
        # set-up below even on a loaded machine; it expires before the first prune.
        expires_at = time.monotonic() + 5
        expired = await containerd.create_lease("expired-pull", expire=timedelta(seconds=5))
        live = await containerd.create_lease("live-pull", expire=timedelta(hours=1))
        leaked_blob = await containerd.with_lease(expired.id).write_content(
            "leak-1", Layer.random(3 * MiB, "orph").blob
        )
        held_blob = await containerd.with_lease(live.id).write_content("held-1", Layer.random(2 * MiB, "held").blob)
        assert leaked_blob is not None and held_blob is not None
        mounts = await containerd.with_lease(expired.id).prepare_snapshot("leaked-snapshot")
        await asyncio.to_thread(Path(mounts[0].source, "junk.bin").write_bytes, Layer.random(4 * MiB, "junk").tar)
        await asyncio.sleep(max(0.0, expires_at - time.monotonic()) + 0.5)  # let the first lease expire

        disabled = _policy(
            tmp_path,
            {
                "leases": {"removeExpired": False},
                "snapshots": {"removeOrphans": False},
                "content": {"removeOrphans": False},
            },
            "off.yaml",
        )
        code, off = await _prune(bed, "--policy", str(disabled))
        assert code == 0 and off["actions"] == []

        code, report = await _prune(bed)
        assert code == 0, report["errors"]
        kinds = {(a["kind"], a["id"]) for a in report["actions"]}
        assert kinds == {("delete-lease", "expired-pull")}
        assert report["planned_bytes"] >= 7 * MiB
        assert abs(report["reclaimed_bytes"] - report["planned_bytes"]) <= 0.05 * report["planned_bytes"]
        with pytest.raises(NotFoundError):
            await containerd.content_info(leaked_blob.digest)
        with pytest.raises(NotFoundError):
            await containerd.stat_snapshot("leaked-snapshot")
        assert (await containerd.content_info(held_blob.digest)).size == held_blob.size  # a live lease holds it
        assert "live-pull" in {lease.id for lease in await containerd.list_leases()}


async def test_discard_unpacked_layers_keeps_the_running_image(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    bed = containerd_bed
    b = bed.builder
    app = b.build("example.com/discard:v1", [b.busybox_layer(), Layer.random(6 * MiB, "discard")])
    bed.import_images([app])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        pod = await run_pod(cri, bed.pod_log_dir, "discard")
        c = await start_container(cri, pod, "app", app.name, "sleep 3600")
        await wait_for_state(cri, c.id, "RUNNING")
        policy = _policy(tmp_path, {"content": {"discardUnpackedLayers": True}})
        code, report = await _prune(bed, "--policy", str(policy))
        assert code == 0, report["errors"]
        discarded = {a["id"] for a in report["actions"] if a["kind"] == "discard-layer"}
        assert app.layers[1].digest in discarded
        with pytest.raises(NotFoundError):
            await containerd.content_info(app.layers[1].digest)
        assert report["reclaimed_bytes"] >= 6 * MiB * 0.95
        # The image and its container are fine: still listed, still running, a new container starts from it.
        assert app.id in {i.id for i in await cri.list_images()}
        assert (await cri.container_status(c.id)).state == "RUNNING"
        c2 = await start_container(cri, pod, "again", app.name, "sleep 3600")
        await wait_for_state(cri, c2.id, "RUNNING")
        await remove_all_pods(cri)


async def test_prune_on_a_full_disk_still_frees_space(small_disk_bed: ContainerdBed) -> None:
    bed = small_disk_bed
    images = bed.builder.random_images("full", 3, 10 * MiB)
    bed.import_images(images)
    state = bed.disk / "state" / "last-used.json"  # on the full disk: saving it must fail with ENOSPC
    bed.fill(leave_available=0)
    with pytest.raises(OSError):
        (bed.disk / "probe").write_bytes(b"x" * (1 << 20))
    policy_dir = bed.base / "policy"
    policy_dir.mkdir()
    policy = _policy(policy_dir, {"images": {"minAge": "0s"}})
    code, report = await _prune(bed, "--policy", str(policy), "--state-file", str(state))
    assert code == 0, report["errors"]
    assert report["file_system"]["used_percent_before"] > 99
    # Enough unused images go to reach the default low watermark (75%), and the disk really gained that.
    assert report["file_system"]["used_percent_after"] <= 75
    assert report["planned_bytes"] >= report["target_bytes"] > 0
    assert abs(report["reclaimed_bytes"] - report["planned_bytes"]) <= 0.05 * report["planned_bytes"]
    assert any("could not save state" in w and "space" in w.lower() for w in report["warnings"]), report["warnings"]


async def test_inode_pressure_is_reclaimed_to_the_inode_low_watermark(tmp_path: Path, image_builder) -> None:  # type: ignore[no-untyped-def]
    """A file system short of inodes, not bytes: images of many small files are what must go."""
    with ContainerdBed(tmp_path / "bed", disk_size=256 * MiB, disk_inodes=8192, builder=image_builder) as bed:
        b = bed.builder
        many = [
            b.build(
                f"example.com/many{i}:v1",
                [b.busybox_layer(), Layer.from_files({f"f/{i}/{n}": b"x" for n in range(1500)})],
            )
            for i in range(4)
        ]
        bed.import_images(many)
        usage = bed.usage()
        assert usage.inodes_used / usage.inodes > 0.7 and usage.used_percent < 30  # inodes, not bytes, are short
        policy = _policy(
            tmp_path,
            {"thresholds": {"inodesHighPercent": 70, "inodesLowPercent": 50}, "images": {"minAge": "0s"}},
        )
        code, report = await _prune(bed, "--policy", str(policy))
        assert code == 0, report["errors"]
        assert report["under_pressure"] is True and report["target_bytes"] == 0
        removed = [a["id"] for a in report["actions"] if a["kind"] == "remove-image"]
        assert 1 <= len(removed) < len(many)  # enough to reach the inode low watermark, no more
        after = bed.usage()
        assert after.inodes_used / after.inodes <= 0.50
        code, again = await _prune(bed, "--policy", str(policy))
        assert code == 0 and again["actions"] == []


async def test_fewest_images_removes_one_large_image_where_lru_would_take_three(
    small_disk_bed: ContainerdBed, tmp_path: Path
) -> None:
    """images.selection FewestImages on a real store: the same need met with one removal instead of three, the
    running image and the base it shares with an unused one kept, the prediction what the file system gains."""
    bed = small_disk_bed
    b = bed.builder
    old = bed.builder.random_images("old", 4, 3 * MiB)  # ~6 MiB on disk each, the longest unused
    big = b.build("example.com/big:v1", [b.busybox_layer(), Layer.random(10 * MiB, "big")])  # ~20 MiB, used yesterday
    base = Layer.random(8 * MiB, "shared-base")
    running = b.build("example.com/running:v1", [b.busybox_layer(), base, Layer.random(MiB, "running")])
    sibling = b.build("example.com/sibling:v1", [b.busybox_layer(), base, Layer.random(MiB, "sibling")])
    bed.import_images([*old, big, running, sibling])
    state = tmp_path / "state.json"
    now = datetime.now(UTC)
    last_used = {img.id: now - timedelta(days=10 - i) for i, img in enumerate(old)}
    last_used |= {big.id: now - timedelta(days=1), sibling.id: now - timedelta(days=5)}
    state.write_text(json.dumps({"lastUsed": {k: v.isoformat() for k, v in last_used.items()}}))

    usage = bed.usage()
    capacity = usage.used + usage.available
    bed.fill(leave_available=capacity - int(0.60 * capacity + 15 * MiB))  # 15 MiB over the low watermark
    assert bed.usage().used_percent > 65
    thresholds = {"highPercent": 65, "lowPercent": 60}
    lru = _policy(tmp_path, {"thresholds": thresholds, "images": {"minAge": "0s"}}, "lru.yaml")
    fewest = _policy(
        tmp_path, {"thresholds": thresholds, "images": {"minAge": "0s", "selection": "FewestImages"}}, "fewest.yaml"
    )
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "busy")
        c = await start_container(cri, pod, "app", running.name, "sleep 3600")
        await wait_for_state(cri, c.id, "RUNNING")

        code, lru_plan = await _prune(bed, "--policy", str(lru), "--state-file", str(state), "--dry-run")
        assert code == 0
        assert [a["id"] for a in lru_plan["actions"] if a["kind"] == "remove-image"] == [i.id for i in old[:3]]

        code, real = await _prune(bed, "--policy", str(fewest), "--state-file", str(state))
        assert code == 0, real["errors"]
        removed = [a for a in real["actions"] if a["kind"] == "remove-image"]
        assert [a["id"] for a in removed] == [big.id]
        assert removed[0]["reason"] == "fewest-images-under-pressure" and removed[0]["outcome"] == "done"
        assert real["file_system"]["used_percent_after"] <= 60
        assert abs(real["reclaimed_bytes"] - real["planned_bytes"]) <= 0.05 * real["planned_bytes"]
        left = await _image_ids(bed)
        assert {running.id, sibling.id, *(i.id for i in old)} <= left and big.id not in left
        await remove_all_pods(cri)
