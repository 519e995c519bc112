"""The executor's safety rules against a real containerd."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.collector import statvfs_entry
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.executor import Executor, Outcome
from node_janitor.node import open_runtime, take_inventory
from node_janitor.planner import Action, ActionKind, Plan, PlanSettings, Reason, Target, plan_cleanup

pytestmark = pytest.mark.containerd
MiB = 1 << 20


async def test_an_image_that_became_used_after_planning_is_skipped(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    b = bed.builder
    late = b.build("example.com/late:v1", [b.busybox_layer(), Layer.random(2 * MiB, "late")])
    idle = b.build("example.com/idle:v1", [b.busybox_layer(), Layer.random(2 * MiB, "idle")])
    bed.import_images([late, idle])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await take_inventory(cri, containerd, bed.namespace, bed.pod_log_dir)
        settings = PlanSettings(min_age=timedelta(0))
        plan = plan_cleanup(inventory, settings, datetime.now(UTC), target=Target(bytes=1 << 40))
        assert {a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE} == {late.id, idle.id}

        # Between planning and execution, a pod starts a container from `late`.
        pod = await run_pod(cri, bed.pod_log_dir, "race")
        c = await start_container(cri, pod, "late", late.name, "sleep 3600")
        await wait_for_state(cri, c.id, "RUNNING")

        fs_path = inventory.file_system("imagefs").path  # type: ignore[union-attr]
        result = await Executor(cri, containerd, lambda: statvfs_entry("imagefs", fs_path)).apply(plan, inventory)
        outcomes = {r.action.id: r for r in result.results}
        assert outcomes[late.id].outcome is Outcome.SKIPPED and c.id in outcomes[late.id].message
        assert outcomes[idle.id].outcome is Outcome.DONE
        left = {i.id for i in await cri.list_images()}
        assert late.id in left and idle.id not in left
        assert (await cri.container_status(c.id)).state == "RUNNING"
        await remove_all_pods(cri)


async def test_one_failed_action_does_not_stop_the_run(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    b = bed.builder
    idle = b.build("example.com/idle2:v1", [b.busybox_layer(), Layer.random(3 * MiB, "idle2")])
    bed.import_images([idle])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await take_inventory(cri, containerd, bed.namespace, bed.pod_log_dir)
        fs_path = inventory.file_system("imagefs").path  # type: ignore[union-attr]
        plan = Plan(
            actions=(
                Action(ActionKind.DELETE_CONTENT, "not-a-digest", Reason.ORPHAN, 10),  # containerd refuses it
                Action(ActionKind.REMOVE_IMAGE, idle.id, Reason.LEAST_RECENTLY_USED, 6 * MiB),
                Action(ActionKind.DELETE_LEASE, "no-such-lease", Reason.EXPIRED_LEASE, 0),  # gone: counts as done
            ),
            target=Target(bytes=1),
        )
        result = await Executor(cri, containerd, lambda: statvfs_entry("imagefs", fs_path)).apply(plan, inventory)
        assert [r.outcome for r in result.results] == [Outcome.FAILED, Outcome.DONE, Outcome.DONE]
        assert len(result.errors) == 1 and "not-a-digest" in result.errors[0]
        assert idle.id not in {i.id for i in await cri.list_images()}
        assert result.reclaimed_bytes >= 5 * MiB  # the image's blobs and snapshots really went


async def test_the_last_recheck_compares_normalised_names(containerd_bed: ContainerdBed) -> None:
    """A plain containerd container made after planning names the image in its short form (`app:v2`, as
    nerdctl users type it): it still uses docker.io/library/app:v2."""
    bed = containerd_bed
    b = bed.builder
    app = b.build("docker.io/library/app:v2", [b.busybox_layer(), Layer.random(1 * MiB, "short")])
    bed.import_images([app])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await take_inventory(cri, containerd, bed.namespace, bed.pod_log_dir)
        plan = plan_cleanup(inventory, PlanSettings(min_age=timedelta(0)), datetime.now(UTC), target=Target(1 << 40))
        assert app.id in {a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE}
        await containerd.create_container("short-name-user", "app:v2")
        fs_path = inventory.file_system("imagefs").path  # type: ignore[union-attr]
        result = await Executor(cri, containerd, lambda: statvfs_entry("imagefs", fs_path)).apply(plan, inventory)
        outcome = next(r for r in result.results if r.action.id == app.id)
        assert outcome.outcome is Outcome.SKIPPED and "short-name-user" in outcome.message
        assert app.id in {i.id for i in await cri.list_images()}
        await containerd.delete_container("short-name-user")
