"""The executor's safety rules against a real containerd."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.devbed import ContainerdBed, Layer, OciImage
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.collect import CollectOptions, collect_inventory
from node_janitor.node.execute import ActionResult
from node_janitor.node.outcome import Outcome
from node_janitor.node.plan import Action, ActionKind, Plan, PlanSettings, Reason, Target, plan_cleanup
from node_janitor.runtime import CriClient, open_runtime
from support.enginebed import execute
from support.poll import async_wait_for

pytestmark = pytest.mark.containerd
MiB = 1 << 20


async def test_an_image_that_became_used_after_planning_is_skipped(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    b = bed.builder
    late = b.build("example.com/late:v1", [b.busybox_layer(), Layer.random(2 * MiB, "late")])
    idle = b.build("example.com/idle:v1", [b.busybox_layer(), Layer.random(2 * MiB, "idle")])
    bed.import_images([late, idle])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        settings = PlanSettings(min_age=timedelta(0))
        plan = plan_cleanup(inventory, settings, datetime.now(UTC), target=Target(bytes=1 << 40))
        assert {a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE} == {late.id, idle.id}

        # Between planning and execution, a pod starts a container from `late`.
        pod = await run_pod(cri, bed.pod_log_dir, "race")
        c = await start_container(cri, pod, "late", late.name, "sleep 3600")
        await wait_for_state(cri, c.id, "RUNNING")

        result = await execute(cri, containerd, plan, inventory)
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
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        plan = Plan(
            actions=(
                Action(ActionKind.DELETE_CONTENT, "not-a-digest", Reason.ORPHAN, 10),  # containerd refuses it
                Action(ActionKind.REMOVE_IMAGE, idle.id, Reason.LEAST_RECENTLY_USED, 6 * MiB),
                Action(ActionKind.DELETE_LEASE, "no-such-lease", Reason.EXPIRED_LEASE, 0),  # gone: counts as done
            ),
            target=Target(bytes=1),
        )
        result = await execute(cri, containerd, plan, inventory)
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
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        plan = plan_cleanup(inventory, PlanSettings(min_age=timedelta(0)), datetime.now(UTC), target=Target(1 << 40))
        assert app.id in {a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE}
        await containerd.create_container("short-name-user", "app:v2")
        result = await execute(cri, containerd, plan, inventory)
        outcome = next(r for r in result.results if r.action.id == app.id)
        assert outcome.outcome is Outcome.SKIPPED and "short-name-user" in outcome.message
        assert app.id in {i.id for i in await cri.list_images()}
        await containerd.delete_container("short-name-user")


async def test_a_kept_name_given_since_planning_keeps_the_image(containerd_bed: ContainerdBed) -> None:
    """RemoveImage takes every name an image has when it runs: the names are read again right before."""
    bed = containerd_bed
    b = bed.builder
    app = b.build("example.com/retag:v1", [b.busybox_layer(), Layer.random(1 * MiB, "retag")])
    bed.import_images([app])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        settings = PlanSettings(min_age=timedelta(0), keep=("example.com/platform/*",))
        plan = plan_cleanup(inventory, settings, datetime.now(UTC), target=Target(1 << 40))
        assert app.id in {a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE}
        record = await containerd.get_image(app.name)
        await containerd.create_image("example.com/platform/retag:v1", record.target)  # `ctr images tag`
        result = await execute(cri, containerd, plan, inventory, keep=settings.keep)
        outcome = next(r for r in result.results if r.action.id == app.id)
        assert outcome.outcome is Outcome.SKIPPED and "example.com/platform/*" in outcome.message
        assert {"example.com/retag:v1", "example.com/platform/retag:v1"} <= {
            r.name for r in await containerd.list_images()
        }


async def test_a_tag_pulled_again_since_planning_keeps_its_new_image(containerd_bed: ContainerdBed) -> None:
    """The plan names the image by `:latest`; before it runs, `:latest` is pulled again (imagePullPolicy: Always)
    and names a new image. Removing the old one leaves the tag with the new one."""
    bed = containerd_bed
    b = bed.builder
    old = b.build("example.com/moved:latest", [b.busybox_layer(), Layer.random(1 * MiB, "moved-old")])
    new = b.build("example.com/moved:latest", [b.busybox_layer(), Layer.random(1 * MiB, "moved-new")])
    bed.import_images([old])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        assert "example.com/moved:latest" in inventory.image_by_id()[old.id].names
        plan = plan_cleanup(inventory, PlanSettings(min_age=timedelta(0)), datetime.now(UTC), target=Target(1 << 40))
        assert old.id in {a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE}

        bed.import_images([new])  # the tag now names `new`; `old` keeps its ID record only

        async def cri_sees_the_move() -> bool:
            tags = {i.id: i.repo_tags for i in await cri.list_images()}
            return "example.com/moved:latest" in tags.get(new.id, []) and not tags.get(old.id)

        await async_wait_for("CRI to see the tag on the new image", cri_sees_the_move)
        result = await execute(cri, containerd, plan, inventory)
        outcome = next(r for r in result.results if r.action.id == old.id)
        assert outcome.outcome is Outcome.DONE
        assert (await containerd.get_image("example.com/moved:latest")).target.digest == new.manifest_digest
        assert "example.com/moved:latest" in outcome.message and new.manifest_digest in outcome.message
        left = {i.id: i.repo_tags for i in await cri.list_images()}
        assert old.id not in left and list(left[new.id]) == ["example.com/moved:latest"]


async def test_a_multi_platform_image_is_one_image_under_the_id_cri_reports(containerd_bed: ContainerdBed) -> None:
    """Two platforms of one image present (the arm64 one first in the index): its records belong to the ID CRI
    reports (linux/amd64 here), so a running container keeps the image and every name of it."""
    bed = containerd_bed
    b = bed.builder
    arm = b.build("example.com/multi:v1", [b.busybox_layer(), Layer.random(1 * MiB, "multi-arm")], architecture="arm64")
    amd = b.build("example.com/multi:v1", [b.busybox_layer(), Layer.random(1 * MiB, "multi-amd")])
    multi = b.index("example.com/multi:v1", [arm, amd])
    bed.import_images([multi], all_platforms=True)
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        assert {arm.manifest_digest, amd.manifest_digest} <= {c.digest for c in await containerd.list_content()}
        assert multi.id == amd.id in {i.id for i in await cri.list_images()}
        pod = await run_pod(cri, bed.pod_log_dir, "multi")
        c = await start_container(cri, pod, "multi", multi.name, "sleep 3600")
        await wait_for_state(cri, c.id, "RUNNING")

        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        plan = plan_cleanup(inventory, PlanSettings(min_age=timedelta(0)), datetime.now(UTC), target=Target(1 << 40))
        await execute(cri, containerd, plan, inventory)
        assert (await containerd.get_image("example.com/multi:v1")).target.digest == multi.manifest_digest
        assert (await cri.container_status(c.id)).state == "RUNNING"
        assert not {a.id for a in plan.actions} & {amd.id, arm.id}
        mine = [i for i in inventory.images if "example.com/multi:v1" in i.names]
        assert [i.id for i in mine] == [amd.id] and arm.id not in inventory.image_by_id()
        await remove_all_pods(cri)


async def test_a_layer_a_pull_leased_since_planning_is_not_discarded(containerd_bed: ContainerdBed) -> None:
    from node_janitor.runtime import LeaseResource

    bed = containerd_bed
    b = bed.builder
    own = Layer.random(2 * MiB, "discard-late")
    app = b.build("example.com/discard-late:v1", [b.busybox_layer(), own])
    bed.import_images([app])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        plan = plan_cleanup(inventory, PlanSettings(discard_unpacked_layers=True), datetime.now(UTC))
        assert own.digest in {a.id for a in plan.actions if a.kind is ActionKind.DISCARD_LAYER}
        pull = await containerd.create_lease("late-pull", expire=timedelta(hours=1))
        await containerd.add_lease_resource(pull.id, LeaseResource(id=own.digest, type="content"))
        result = await execute(cri, containerd, plan, inventory)
        outcome = next(r for r in result.results if r.action.id == own.digest)
        assert outcome.outcome is Outcome.SKIPPED and "late-pull" in outcome.message
        assert (await containerd.content_info(own.digest)).size == len(own.blob)


async def test_a_lease_that_is_not_expired_any_more_is_kept(containerd_bed: ContainerdBed) -> None:
    """containerd has no lease update: a lease of the same ID made again since planning is someone's new one."""
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        # Planned while "reused" was expired (containerd may collect an expired lease at any moment, so the plan
        # is written out rather than waited for); by execution, a new lease of that ID exists.
        plan = Plan(
            actions=(
                Action(ActionKind.DELETE_LEASE, "reused", Reason.EXPIRED_LEASE, 0),
                Action(ActionKind.DELETE_LEASE, "gone-meanwhile", Reason.EXPIRED_LEASE, 0),
            ),
            target=Target(),
        )
        await containerd.create_lease("reused", expire=timedelta(hours=1))
        result = await execute(cri, containerd, plan, inventory)
        assert [r.outcome for r in result.results] == [Outcome.SKIPPED, Outcome.DONE]
        assert "reused" in {x.id for x in await containerd.list_leases()}


async def test_image_removals_overlap_but_keep_the_plans_order(containerd_bed: ContainerdBed) -> None:
    """Consecutive image removals are in flight together (containerd coalesces the synchronous collections each
    RemoveImage waits for); an action between them still waits for what the plan put before it, and runs before
    what comes after: the image of an exited container is removable only once that container is gone. Results
    come in plan order. The CRI client is the real one, wrapped to count the RemoveImage calls in flight."""
    bed = containerd_bed
    b = bed.builder
    first = [b.build(f"example.com/overlap{i}:v1", [Layer.random(1 * MiB, f"overlap{i}")]) for i in range(4)]
    used = b.build("example.com/overlap-used:v1", [b.busybox_layer(), Layer.random(1 * MiB, "overlap-used")])
    last = [b.build(f"example.com/overlap-last{i}:v1", [Layer.random(1 * MiB, f"overlap-last{i}")]) for i in range(2)]
    bed.import_images([*first, used, *last])
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        pod = await run_pod(cri, bed.pod_log_dir, "overlap")
        done = await start_container(cri, pod, "done", used.name, "true")
        await wait_for_state(cri, done.id, "EXITED")
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )

        def remove(image_id: str) -> Action:
            return Action(ActionKind.REMOVE_IMAGE, image_id, Reason.LEAST_RECENTLY_USED, MiB)

        plan = Plan(
            actions=(
                *(remove(i.id) for i in first),
                Action(ActionKind.REMOVE_CONTAINER, done.id, Reason.EXITED_CONTAINER, 0),
                remove(used.id),
                *(remove(i.id) for i in last),
            ),
            target=Target(bytes=1),
        )
        in_flight = peak = 0
        remove_image = cri.remove_image

        async def counting(image_id: str, *, missing_ok: bool = False) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await remove_image(image_id, missing_ok=missing_ok)
            finally:
                in_flight -= 1

        cri.remove_image = counting  # type: ignore[method-assign]
        reported: list[str] = []
        result = await execute(cri, containerd, plan, inventory, on_result=lambda r: reported.append(r.action.id))
        assert [r.action for r in result.results] == list(plan.actions)
        assert reported == [a.id for a in plan.actions]
        assert [r.outcome for r in result.results] == [Outcome.DONE] * len(plan.actions), result.errors
        assert peak > 1  # the four first removals overlapped
        left = {i.id for i in await cri.list_images()}
        assert left.isdisjoint(i.id for i in [*first, used, *last])
        await remove_all_pods(cri)


async def test_image_concurrency_must_be_positive(containerd_bed: ContainerdBed) -> None:
    async with open_runtime(containerd_bed.address, containerd_bed.namespace) as (cri, containerd):
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=containerd_bed.namespace, pod_log_dir=containerd_bed.pod_log_dir)
        )
        with pytest.raises(ValueError, match="at least 1"):
            await execute(cri, containerd, Plan(actions=(), target=Target()), inventory, image_concurrency=0)


class _Stop(Exception):
    pass


def _small_images(bed: ContainerdBed, prefix: str, n: int) -> list[OciImage]:
    b = bed.builder
    images = [b.build(f"example.com/{prefix}{i}:v1", [Layer.random(256 * 1024, f"{prefix}{i}")]) for i in range(n)]
    bed.import_images(images)
    return images


def _removals_recorded(cri: CriClient, images: list[OciImage]) -> tuple[Plan, list[str]]:
    """A plan removing `images`, and the list of image IDs CRI RemoveImage is called with, in call order."""
    plan = Plan(
        actions=tuple(Action(ActionKind.REMOVE_IMAGE, i.id, Reason.LEAST_RECENTLY_USED, 1) for i in images),
        target=Target(bytes=1),
    )
    sent: list[str] = []
    remove_image = cri.remove_image

    async def recording(image_id: str, *, missing_ok: bool = False) -> None:
        sent.append(image_id)
        await remove_image(image_id, missing_ok=missing_ok)

    cri.remove_image = recording  # type: ignore[method-assign]
    return plan, sent


async def test_a_run_asked_to_stop_finishes_what_is_in_flight_and_starts_nothing_more(
    containerd_bed: ContainerdBed,
) -> None:
    """on_result raising (the agent's SIGTERM) stops the run: removals already sent finish and are reported in
    the result, removals still waiting for their turn are never sent, and nothing after them starts."""
    bed = containerd_bed
    images = _small_images(bed, "stop", 12)
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        plan, sent = _removals_recorded(cri, images)
        notified: list[str] = []

        def stop_after_first(result: ActionResult) -> None:
            notified.append(result.action.id)
            raise _Stop

        with pytest.raises(_Stop):
            await execute(cri, containerd, plan, inventory, on_result=stop_after_first, image_concurrency=3)
        assert notified == [images[0].id]
        at_stop = list(sent)
        await asyncio.sleep(1)  # nothing goes on in the background after apply() has returned
        assert sent == at_stop
        assert 1 <= len(sent) < len(images)  # the first window and what took a slot before the stop, not the rest
        ours = {i.id for i in images}
        left = {i.id for i in await cri.list_images()} & ours
        assert left == ours - set(sent)  # what was sent was done; nothing else was touched


async def test_should_stop_is_asked_before_each_send_and_stops_at_once(containerd_bed: ContainerdBed) -> None:
    """`should_stop` (the agent's SIGTERM flag) is read right before each action is sent: once it is true nothing
    more is sent, what was sent finishes, and the result says how many were not sent."""
    bed = containerd_bed
    images = _small_images(bed, "halt", 10)
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        plan, sent = _removals_recorded(cri, images)
        result = await execute(
            cri, containerd, plan, inventory, image_concurrency=4, should_stop=lambda: len(sent) >= 3
        )
        assert len(sent) == 3 and sorted(r.action.id for r in result.results) == sorted(sent)  # plan order
        assert all(r.outcome is Outcome.DONE for r in result.results)
        assert result.not_sent == len(images) - 3 and "stopped before 7 of 10 actions were sent" in result.errors
        ours = {i.id for i in images}
        assert {i.id for i in await cri.list_images()} & ours == ours - set(sent)
