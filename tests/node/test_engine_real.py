"""`NodeEngine` on a real containerd: protections per image ID over every name, names normalised, paused,
dry runs that write nothing, a protected set that changes mid-run, containers the kubelet removed first."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from node_janitor.devbed import ContainerdBed, ImageBuilder, Layer, OciImage
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.engine import NodeEngine
from node_janitor.node.last_used import LastUsedStore
from node_janitor.node.logs import LogActionResult
from node_janitor.node.outcome import Outcome
from node_janitor.node.plan import ActionKind
from node_janitor.runtime import ContainerdClient, CriClient, open_runtime
from support.enginebed import REMOVE_ALL_UNUSED, rules

pytestmark = pytest.mark.containerd
MiB = 1 << 20


def _image(bed: ContainerdBed, name: str, seed: str) -> OciImage:
    b = bed.builder
    return b.build(name, [b.busybox_layer(), Layer.random(1 * MiB, seed)])


async def _alias(containerd: ContainerdClient, existing: str, alias: str) -> None:
    """A second name for an image, as `ctr images tag` (or Docker in containerd) makes it."""
    record = await containerd.get_image(existing)
    await containerd.create_image(alias, record.target)


async def _ids(cri: CriClient) -> set[str]:
    return {i.id for i in await cri.list_images()}


@pytest.fixture
async def engine(containerd_bed: ContainerdBed) -> AsyncIterator[NodeEngine]:
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        yield NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        await remove_all_pods(cri)


async def test_an_image_with_one_kept_name_is_kept_whole_and_listed_once(
    containerd_bed: ContainerdBed, engine: NodeEngine
) -> None:
    bed = containerd_bed
    app, other = _image(bed, "example.com/app:v1", "app"), _image(bed, "example.com/other:v1", "other")
    bed.import_images([app, other])
    await _alias(engine.containerd, "example.com/app:v1", "example.com/platform/app:v1")
    await _alias(engine.containerd, "example.com/app:v1", "app:v2")  # stored as given, CRI says docker.io/...

    report = await engine.build_disk_report()
    assert [i.id for i in report.images].count(app.id) == 1  # one row per image ID, whatever its names
    assert len(report.images) == len({i.id for i in report.images})
    row = next(i for i in report.images if i.id == app.id)
    assert {"example.com/app:v1", "example.com/platform/app:v1"} <= set(row.refs)
    kept = await engine.build_disk_report(keep=["example.com/platform/*"])  # df --policy: kept is not reclaimable
    assert kept.rows["images"].reclaimable == report.rows["images"].reclaimable - row.unique_size

    result = await engine.run_once(
        rules({**REMOVE_ALL_UNUSED, "images": {**REMOVE_ALL_UNUSED["images"], "keep": ["example.com/platform/*"]}})
    )
    assert not result.errors
    removed = [a.id for a in result.plan.actions if a.kind is ActionKind.REMOVE_IMAGE]
    assert removed == [other.id]
    assert "kept by pattern 'example.com/platform/*'" in result.plan.skipped[app.id]
    left = await _ids(engine.cri)
    assert app.id in left and other.id not in left
    names = {r.name for r in await engine.containerd.list_images()}
    assert {"example.com/app:v1", "example.com/platform/app:v1", "app:v2"} <= names


async def test_two_spellings_of_one_name_on_two_images_stay_apart(
    containerd_bed: ContainerdBed, engine: NodeEngine
) -> None:
    """`app:v2` (as `ctr images tag` writes it) and `docker.io/library/app:v2` may name different images: each
    record belongs to the image its config is, so removing one never takes the other's record."""
    bed = containerd_bed
    one, two = _image(bed, "docker.io/library/app:v2", "one"), _image(bed, "example.com/two:v1", "two")
    bed.import_images([one, two])
    await _alias(engine.containerd, "example.com/two:v1", "app:v2")
    inventory = await engine.take_inventory()
    groups = {i.id: set(i.names) for i in inventory.images}
    assert "app:v2" in groups[two.id] and "app:v2" not in groups[one.id]
    spec = {"images": {**REMOVE_ALL_UNUSED["images"], "keep": ["example.com/*"]}}
    result = await engine.run_once(rules(spec))
    assert [a.id for a in result.plan.actions if a.kind is ActionKind.REMOVE_IMAGE] == [one.id]
    assert not result.errors
    names = {r.name for r in await engine.containerd.list_images()}
    assert {"app:v2", "example.com/two:v1"} <= names and "docker.io/library/app:v2" not in names


async def test_a_keep_pattern_matches_the_familiar_and_the_full_form(
    containerd_bed: ContainerdBed, engine: NodeEngine
) -> None:
    bed = containerd_bed
    short, full = _image(bed, "docker.io/library/nginx:1.25", "nginx"), _image(bed, "redis:7", "redis")
    gone = _image(bed, "example.com/gone:v1", "gone")
    bed.import_images([short, full, gone])
    spec = {"images": {**REMOVE_ALL_UNUSED["images"], "keep": ["nginx:*", "docker.io/library/redis:*"]}}
    result = await engine.run_once(rules(spec))
    assert not result.errors
    assert [a.id for a in result.plan.actions if a.kind is ActionKind.REMOVE_IMAGE] == [gone.id]
    assert {short.id, full.id} <= await _ids(engine.cri)


async def test_the_sandbox_image_under_its_short_name_is_never_removed(
    tmp_path: Path, image_builder: ImageBuilder
) -> None:
    # The CRI config says `pause:3.6`; containerd and CRI name the image docker.io/library/pause:3.6.
    with ContainerdBed(tmp_path / "bed", disk_size=256 * MiB, sandbox_image="pause:3.6", builder=image_builder) as bed:
        idle = _image(bed, "example.com/idle:v1", "idle")
        bed.import_images([idle])
        async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
            # As a pull by CRI leaves it: the record is the full name, only the CRI config says `pause:3.6`.
            bed.import_images([image_builder.pause_image("docker.io/library/pause:3.6")])
            await containerd.delete_image("pause:3.6")
            engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
            pause_id = next(i.id for i in await cri.list_images() if i.id != idle.id)
            result = await engine.run_once(rules(REMOVE_ALL_UNUSED))
            assert not result.errors
            assert [a.id for a in result.plan.actions if a.kind is ActionKind.REMOVE_IMAGE] == [idle.id]
            if bed.binaries.major >= 2:
                # containerd 2.x's CRI reports its sandbox image pinned (TESTBED.md) and no longer says which it is
                # (its verbose Status carries the runtime plugin's config only): pinned is what protects it.
                assert result.plan.skipped[pause_id] == "pinned by the runtime"
                assert result.inventory.sandbox_image == ""
            else:
                assert result.plan.skipped[pause_id] == "sandbox (pause) image"
            assert pause_id in await _ids(cri)
            # ... and a pod still starts.
            pod = await run_pod(cri, bed.pod_log_dir, "after")
            assert pod.sandbox_id
            await remove_all_pods(cri)


async def test_paused_does_nothing_at_all(containerd_bed: ContainerdBed, engine: NodeEngine, tmp_path: Path) -> None:
    bed = containerd_bed
    idle = _image(bed, "example.com/idle:v1", "idle")
    bed.import_images([idle])
    state = tmp_path / "state.json"
    engine.state = LastUsedStore(state)
    result = await engine.run_once(rules({**REMOVE_ALL_UNUSED, "paused": True}))
    assert result.paused and result.plan.actions == () and not result.errors
    assert result.to_json()["paused"] is True
    assert idle.id in await _ids(engine.cri)
    assert not state.exists()


async def test_a_dry_run_remembers_last_use_and_removes_nothing(
    containerd_bed: ContainerdBed, engine: NodeEngine, tmp_path: Path
) -> None:
    """Images used while runs are dry must not look unused once real runs start: a dry run saves last use (the
    agent's own file), and writes nothing to the runtime."""
    bed = containerd_bed
    app, idle = _image(bed, "example.com/app:v1", "app"), _image(bed, "example.com/idle:v1", "idle")
    bed.import_images([app, idle])
    pod = await run_pod(engine.cri, bed.pod_log_dir, "used")
    c = await start_container(engine.cri, pod, "app", app.name, "sleep 3600")
    await wait_for_state(engine.cri, c.id, "RUNNING")
    state = tmp_path / "state.json"
    engine.state = LastUsedStore(state)
    result = await engine.run_once(rules(REMOVE_ALL_UNUSED), dry_run=True)
    assert result.dry_run and result.execution is None and idle.id in {a.id for a in result.plan.actions}
    assert {app.id, idle.id} <= await _ids(engine.cri)  # nothing removed
    remembered = set(json.loads(state.read_text())["lastUsed"])
    assert app.id in remembered and idle.id not in remembered


async def test_a_disk_report_remembers_last_use(
    containerd_bed: ContainerdBed, engine: NodeEngine, tmp_path: Path
) -> None:
    """The agent's heartbeat (`df`), which runs on a paused node too, saves last use: an image used only between
    two runs is remembered even if its container is gone by the next run."""
    bed = containerd_bed
    job = _image(bed, "example.com/job:v1", "job")
    bed.import_images([job])
    pod = await run_pod(engine.cri, bed.pod_log_dir, "between")
    c = await start_container(engine.cri, pod, "job", job.name, "true")
    await wait_for_state(engine.cri, c.id, "EXITED")
    state = tmp_path / "state.json"
    engine.state = LastUsedStore(state)
    await engine.build_disk_report()
    remembered = LastUsedStore(state).load()[0]
    assert job.id in remembered
    await remove_all_pods(engine.cri)  # the kubelet removes the container
    await engine.run_once(rules({"paused": True}))
    again = await engine.build_disk_report()
    assert LastUsedStore(state).load()[0][job.id] == remembered[job.id]
    row = next(i for i in again.images if i.id == job.id)
    assert row.last_used == remembered[job.id]


async def test_an_image_protected_after_planning_is_skipped(containerd_bed: ContainerdBed, engine: NodeEngine) -> None:
    """The agent's spec can change mid-run: the executor asks for the protected set right before each removal."""
    bed = containerd_bed
    first, second = _image(bed, "example.com/a:v1", "a"), _image(bed, "example.com/b:v1", "b")
    bed.import_images([first, second])
    calls = 0

    def protected() -> list[str]:
        nonlocal calls
        calls += 1
        return [] if calls == 1 else ["example.com/b:v1"]  # planned unprotected, protected at execution

    result = await engine.run_once(rules(REMOVE_ALL_UNUSED), protected_images=protected)
    assert result.execution is not None
    outcomes = {r.action.id: r for r in result.execution.results}
    assert {first.id, second.id} <= set(outcomes)
    assert outcomes[second.id].outcome is Outcome.SKIPPED and "protected" in outcomes[second.id].message
    assert outcomes[first.id].outcome is Outcome.DONE
    assert "protected" in result.to_json()["skipped"][second.id]  # `skipped` says why it is still there
    left = await _ids(engine.cri)
    assert second.id in left and first.id not in left


async def test_an_exited_container_the_kubelet_removed_first_is_done(
    containerd_bed: ContainerdBed, engine: NodeEngine
) -> None:
    bed = containerd_bed
    job = _image(bed, "example.com/job:v1", "job")
    bed.import_images([job])
    pod = await run_pod(engine.cri, bed.pod_log_dir, "jobs")
    c = await start_container(engine.cri, pod, "job", job.name, "true")
    await wait_for_state(engine.cri, c.id, "EXITED")
    await asyncio.sleep(1.1)

    planned = False
    kubelet_removed = False
    remove, status = engine.cri.remove_container, engine.cri.container_status

    def on_plan(plan: Any) -> None:
        nonlocal planned
        planned = any(a.kind is ActionKind.REMOVE_CONTAINER and a.id == c.id for a in plan.actions)

    async def status_after_the_kubelet(container_id: str) -> Any:
        nonlocal kubelet_removed
        if planned and not kubelet_removed:  # between planning and execution, the kubelet's GC gets there first
            await remove(container_id)
            kubelet_removed = True
        return await status(container_id)

    engine.cri.container_status = status_after_the_kubelet  # type: ignore[method-assign]
    exited_after = rules({"containers": {"removeExitedAfter": "1s"}, "images": {"minAge": "1h"}})
    result = await engine.run_once(exited_after, on_plan=on_plan)
    assert planned and kubelet_removed
    assert result.execution is not None and not result.errors, result.errors
    (item,) = [r for r in result.execution.results if r.action.kind is ActionKind.REMOVE_CONTAINER]
    assert item.outcome is Outcome.DONE


async def test_two_runs_never_interleave(engine: NodeEngine) -> None:
    steps: list[str] = []
    take = engine.take_inventory

    async def inventory(now: datetime | None = None) -> Any:
        steps.append("inventory")
        return await take(now)

    engine.take_inventory = inventory  # type: ignore[method-assign]
    runs = [
        engine.run_once(rules({}), on_plan=lambda plan: steps.append("plan")),
        engine.run_once(rules({}), on_plan=lambda plan: steps.append("plan")),
    ]
    results = await asyncio.gather(*runs)
    assert all(not r.errors for r in results)
    assert steps == ["inventory", "plan", "inventory", "plan"]


async def test_logs_disabled_mid_run_stop_the_next_log_action(engine: NodeEngine, tmp_path: Path) -> None:
    """The agent's policy as of now (`current_rules`) is read before each log action: logs disabled after the first
    of three extraPaths removals leave the other two files where they are."""
    extra = tmp_path / "extra"
    extra.mkdir()
    files = [extra / f"{i}.log" for i in range(3)]
    for f in files:
        f.write_bytes(b"x" * 4096)
        os.utime(f, (time.time() - 7200, time.time() - 7200))
    policy = rules({"images": {"enabled": False}, "logs": {"extraPaths": [{"glob": f"{extra}/*.log", "maxAge": "1h"}]}})
    live = [policy]
    seen: list[LogActionResult] = []

    def on_log_result(result: LogActionResult) -> None:
        seen.append(result)
        live[0] = rules({"logs": {"enabled": False}})  # the admin disables logs after the first removal

    report = await engine.run_once(policy, on_log_result=on_log_result, current_rules=lambda: live[0])
    assert [r.outcome for r in seen] == [Outcome.DONE, Outcome.SKIPPED, Outcome.SKIPPED], report.to_json()
    assert seen[1].message == "logs are disabled by the policy now"
    assert sum(f.exists() for f in files) == 2
