"""`NodeEngine` on the in-memory node (tests/support/fakeruntime.py): the run's rules, in milliseconds each.

What these pin needs a real containerd per case otherwise: the order a node spends its data in, targets on a disk
logs and images share, paused, dryRun, `should_stop`, a policy that changes mid-run, what protects an image, a
target reached or short. The same engine on a real containerd: tests/node/test_engine_real.py and the other
`*_real.py` tests (integration).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from node_janitor.node.engine import NodeEngine, PruneReport
from node_janitor.node.execute import ActionResult, Outcome
from node_janitor.node.last_used import LastUsedStore
from node_janitor.node.logs import LogActionResult
from node_janitor.node.plan import ActionKind, Plan
from support.enginebed import REMOVE_ALL_UNUSED, rules
from support.fakeruntime import (
    IMAGE_FS,
    SANDBOX_IMAGE,
    T0,
    FakeDisk,
    FakeHost,
    FakeImage,
    FakeRuntime,
    tree_bytes,
)
from support.logfakes import FakeClock

MiB = 1 << 20
PAST = T0.replace(year=2020)  # a lease that expired long ago (the executor re-checks against the real clock)
BASE = {"images": {"minAge": "0s"}}  # images old enough; removed for pressure only (LRU)


@dataclass
class Node:
    """One fake node: its runtime, disks, pod log directory and an engine on them."""

    tmp: Path
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0.replace(month=6)))
    runtime: FakeRuntime = field(init=False)
    host: FakeHost = field(default_factory=FakeHost)
    logs: Path = field(init=False)
    events: list[str] = field(default_factory=list)  # image and log results, in the order they came

    def __post_init__(self) -> None:
        self.runtime = FakeRuntime(clock=self.clock)
        self.logs = self.tmp / "pods"
        self.logs.mkdir()

    def disks(self, *, image: int, log: int | None = None, base: int = 0, log_base: int = 0) -> None:
        """The image disk (`image` bytes, `base` used by others); a log disk of its own of `log` bytes, or (None)
        the image disk holds the logs too."""
        disk = FakeDisk(image, base, [self.runtime.stored_bytes])
        self.host.mounts[IMAGE_FS] = disk
        if log is None:
            disk.holds.append(tree_bytes(self.logs))
            self.host.mounts[str(self.logs)] = disk
        else:
            self.host.mounts[str(self.logs)] = FakeDisk(log, log_base, [tree_bytes(self.logs)])

    def engine(self, **options: Any) -> NodeEngine:
        return NodeEngine(
            self.runtime.cri,
            self.runtime.containerd,
            pod_log_dir=self.logs,
            state=LastUsedStore(self.tmp / "state.json"),
            clock=self.clock,
            host=self.host,
            **options,
        )

    async def run(self, spec: dict[str, Any], **options: Any) -> PruneReport:
        def image(r: ActionResult) -> None:
            self.events.append(f"{r.action.kind} {r.outcome}")

        def log(r: LogActionResult) -> None:
            self.events.append(f"log {r.action.reason} {r.outcome}")

        report = await self.engine().run_once(rules(spec), on_result=image, on_log_result=log, **options)
        assert report.errors == [], report.errors
        return report

    def image(self, name: str, mib: int = 4, **options: Any) -> FakeImage:
        return self.runtime.add_image(f"example.com/{name}:v1", [("base", 2 * MiB), (name, mib * MiB)], **options)

    def pod(self, name: str) -> tuple[Any, Path]:
        """A pod sandbox and its log directory (kubelet's `<namespace>_<name>_<uid>`)."""
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
        sandbox = self.runtime.add_pod(name, uid)
        return sandbox, self.logs / f"default_{name}_{uid}"

    def removed(self) -> list[str]:
        """The image IDs CRI was asked to remove, in order."""
        return [c.split()[1] for c in self.runtime.calls if c.startswith("RemoveImage")]


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def rank(event: str) -> int:
    """Where an action belongs in the order a node spends its data (see ARCHITECTURE.md)."""
    order = [
        "log max-files",  # the logs' own rules first
        "delete-lease",  # garbage
        "delete-content",
        "remove-container",  # exited containers
        "remove-image",  # unused images
        "log log-fs-pressure",  # logs for their own disk's pressure, last
    ]
    return next(i for i, prefix in enumerate(order) if event.startswith(prefix))


async def test_a_run_spends_garbage_then_exited_containers_then_unused_images_then_logs(node: Node) -> None:
    rt = node.runtime
    old, used = node.image("old"), node.image("used")
    rt.add_orphan_blob("leftover", 3 * MiB)
    rt.add_lease("pull-1", [("content", rt.add_orphan_blob("in-lease", MiB))], expires_at=PAST)
    sandbox, pod_dir = node.pod("web")
    live = write(pod_dir / "app" / "0.log", 10_000)
    rt.add_container("app", used, pod=sandbox, name="app", log_path=str(live))
    rt.add_container("done", old, pod=sandbox, name="init", state="EXITED", finished_at=T0)
    for stamp in ("20260301-100000", "20260301-110000", "20260301-120000"):  # beyond maxFiles 2: two go
        write(pod_dir / "app" / f"0.log.{stamp}.000000", 40_000)
    node.disks(image=40 * MiB, log=1_000_000, log_base=800_000)  # the log disk (of logs' own) 93% full

    report = await node.run(
        {**REMOVE_ALL_UNUSED, "logs": {"maxFiles": 2, "compress": False}, "containers": {"removeExitedAfter": "0s"}}
    )

    assert [e.split()[0] for e in node.events] == [
        "log",  # maxFiles
        "log",
        "delete-lease",
        "delete-content",  # the orphan (the lease's blob went with the lease): containerd's collector
        "remove-container",
        "remove-image",  # the image only the exited container used
        "log",  # the log disk's own pressure: the rotated file left
    ], node.events
    assert [rank(e) for e in node.events] == sorted(rank(e) for e in node.events)
    assert all(e.endswith(" done") for e in node.events), node.events
    assert node.removed() == [old.id]
    assert live.exists() and not list((pod_dir / "app").glob("0.log.*"))
    # What is left on the log disk is the live log: the target is short, and said so, not chased.
    assert report.short == {"logs": node.host.statvfs("logs", str(node.logs)).used - 750_000} and report.short_bytes
    assert any(w.startswith("target not reached: logs") for w in report.warnings)


async def test_every_deletion_logs_its_reason_in_both_log_formats(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    """`--log-format text` and `json` (cli/logsetup.py): each action's line names its kind, what it removed, the
    reason it was planned for and its outcome; in JSON as keys."""
    import json
    import logging

    from node_janitor.cli.logsetup import JsonFormatter, TextFormatter

    rt = node.runtime
    old = node.image("old")
    rt.add_lease("pull-1", [("content", rt.add_orphan_blob("in-lease", MiB))], expires_at=PAST)
    sandbox, pod_dir = node.pod("web")
    live = write(pod_dir / "app" / "0.log", 10_000)
    rt.add_container("app", node.image("used"), pod=sandbox, name="app", log_path=str(live))
    rt.add_container("done", old, pod=sandbox, name="init", state="EXITED", finished_at=T0)
    for stamp in ("20260301-100000", "20260301-110000", "20260301-120000"):
        write(pod_dir / "app" / f"0.log.{stamp}.000000", 40_000)
    node.disks(image=40 * MiB)
    with caplog.at_level(logging.INFO, logger="node_janitor"):
        report = await node.run(
            {**REMOVE_ALL_UNUSED, "logs": {"maxFiles": 2, "compress": False}, "containers": {"removeExitedAfter": "0s"}}
        )
    done = [r for r in report.rows() if r["outcome"] == "done"]
    assert {r["kind"] for r in done} >= {"remove-image", "remove-container", "delete-lease", "remove-log"}, done
    records = [r for r in caplog.records if getattr(r, "reason", None) and getattr(r, "outcome", None) == "done"]
    assert sorted((r.kind, r.reason) for r in records) == sorted((d["kind"], d["reason"]) for d in done)  # type: ignore[attr-defined]
    for record in records:
        text = TextFormatter().format(record)
        assert f"kind={record.kind} " in text and f"reason={record.reason} " in text, text  # type: ignore[attr-defined]
        assert text.startswith("time=") and " level=INFO logger=node_janitor." in text, text
        line = JsonFormatter().format(record)
        assert "\n" not in line
        document = json.loads(line)
        assert document["reason"] == record.reason and document["kind"] == record.kind  # type: ignore[attr-defined]
        assert (
            document["outcome"] == "done"
            and document["level"] == "INFO"
            and document["msg"].startswith(("action kind=", "log action kind="))
        )
        assert ("id" in document) != ("path" in document), document  # what it removed: a runtime object or a file


async def test_paused_does_nothing_at_all_not_even_an_inventory(node: Node) -> None:
    node.image("old")
    node.runtime.add_orphan_blob("leftover", MiB)
    node.disks(image=10 * MiB)
    report = await node.engine().run_once(rules({**REMOVE_ALL_UNUSED, "paused": True}))
    assert report.paused and report.plan.actions == () and report.execution is None
    assert node.runtime.reads == 0 and node.runtime.calls == [] and node.host.measured == []
    assert not (node.tmp / "state.json").exists()


async def test_a_dry_run_plans_everything_and_sends_nothing(node: Node) -> None:
    rt = node.runtime
    old = node.image("old")
    orphan = rt.add_orphan_blob("leftover", MiB)
    _, pod_dir = node.pod("web")
    for stamp in ("20260301-100000", "20260301-110000"):
        write(pod_dir / "app" / f"0.log.{stamp}.000000", 4096)
    node.disks(image=10 * MiB)
    before = dict(rt.blobs)

    report = await node.run({**REMOVE_ALL_UNUSED, "dryRun": True, "logs": {"maxFiles": 1, "compress": False}})

    assert report.dry_run and report.execution is None and report.short == {}
    kinds = {a.kind for a in report.plan.actions}
    assert {ActionKind.REMOVE_IMAGE, ActionKind.DELETE_CONTENT} <= kinds and report.logs and report.logs.rules
    assert rt.calls == [] and rt.blobs == before and orphan in rt.blobs and old.id in rt.image_ids()
    assert len(list((pod_dir / "app").iterdir())) == 2  # the log rules planned, nothing removed
    assert (node.tmp / "state.json").exists()  # last use is the agent's own file: remembered in a dry run too


async def test_on_a_shared_disk_what_the_log_rules_freed_is_off_the_image_target(node: Node) -> None:
    """Images and logs on one disk: the logs' own rules run first and what they freed shrinks the image target;
    the shortfall is measured once, for the image file system."""
    images = [node.image(name, mib=2) for name in ("a", "b", "c")]  # each frees 3 MiB (unpacked + blob) alone
    _, pod_dir = node.pod("web")
    for i in range(3):  # maxFiles 1: the two older go, 2 MiB
        write(pod_dir / "app" / f"0.log.20260301-1{i}0000.000000", MiB)
    size = 40 * MiB
    used = node.runtime.stored_bytes() + tree_bytes(node.logs)()
    node.disks(image=size, base=int(size * 0.86) - used)  # 86% full; low 75%: 4.4 MiB to free, two images' worth

    report = await node.run({**BASE, "logs": {"maxFiles": 1, "compress": False}})

    assert report.logs is not None and report.logs.freed_bytes == 2 * MiB
    assert report.plan.target.bytes == int(size * 0.86) - int(size * 0.75) - 2 * MiB  # the image target, shrunk
    assert len(node.removed()) == 1 and node.removed()[0] in {i.id for i in images}  # one image, not two
    assert report.short == {"imagefs": 0}  # measured once, as the image file system


async def test_on_a_disk_of_their_own_logs_pay_nothing_for_the_image_disk(node: Node) -> None:
    """The same node with the logs on a disk of their own: the image target is whole, two images go."""
    for name in ("a", "b", "c"):
        node.image(name, mib=2)
    _, pod_dir = node.pod("web")
    for i in range(3):
        write(pod_dir / "app" / f"0.log.20260301-1{i}0000.000000", MiB)
    size = 40 * MiB
    node.disks(image=size, base=int(size * 0.86) - node.runtime.stored_bytes(), log=100 * MiB)

    report = await node.run({**BASE, "logs": {"maxFiles": 1, "compress": False}})

    assert report.logs is not None and report.logs.freed_bytes == 2 * MiB
    assert report.plan.target.bytes == int(size * 0.86) - int(size * 0.75)
    assert len(node.removed()) == 2
    assert report.short == {"imagefs": 0}  # the log disk had no target


async def test_nothing_more_is_sent_once_should_stop_says_so(node: Node) -> None:
    for name in ("a", "b", "c", "d"):
        node.image(name)
    node.disks(image=100 * MiB)
    stop = False

    def sent(call: str) -> None:
        nonlocal stop
        assert not stop or call == "GC", f"{call} sent after should_stop said stop"
        stop = stop or call.startswith("RemoveImage")

    node.runtime.before_call = sent
    report = await node.engine().run_once(rules(REMOVE_ALL_UNUSED), should_stop=lambda: stop)

    assert len(node.removed()) == 1
    assert report.execution is not None and report.execution.not_sent == 3
    assert "stopped before 3 of 4 actions were sent" in report.errors


async def test_paused_mid_run_skips_every_next_action(node: Node) -> None:
    """`current_rules` is read right before each action: paused after the first removal, the rest are skipped
    (images and logs alike), and reported so."""
    rt = node.runtime
    for name in ("a", "b"):
        node.image(name)
    sandbox, pod_dir = node.pod("web")
    done = rt.add_container("done", node.image("c"), pod=sandbox, name="init", state="EXITED", finished_at=T0)
    rotated = write(pod_dir / "app" / "0.log.20260301-100000.000000", 4096)
    node.disks(image=100 * MiB, log=100_000, log_base=90_000)  # the log disk's pressure: after the images
    spec = {**REMOVE_ALL_UNUSED, "containers": {"removeExitedAfter": "0s"}}
    now = {"value": rules(spec)}
    rt.before_call = lambda call: now.update(value=rules({**spec, "paused": True}))  # paused as the first goes

    report = await node.engine().run_once(rules(spec), current_rules=lambda: now["value"])

    assert rt.calls[0] == f"RemoveContainer {done.record.id}" and node.removed() == []
    assert report.execution is not None
    outcomes = [(r.action.kind, r.outcome, r.message) for r in report.execution.results]
    assert outcomes[0][:2] == (ActionKind.REMOVE_CONTAINER, Outcome.DONE)
    assert all(o == Outcome.SKIPPED and m == "the policy is paused now" for _, o, m in outcomes[1:]) and outcomes[1:]
    assert report.logs is not None and [(r.action.reason, r.outcome) for r in report.logs.results] == [
        ("log-fs-pressure", Outcome.SKIPPED)  # the log disk's pressure, after the images: skipped too
    ]
    assert rotated.exists()


async def test_a_keep_pattern_added_mid_run_protects_the_next_image(node: Node) -> None:
    images = {node.image("a").id, node.image("b").id}
    node.disks(image=100 * MiB)
    keep: list[str] = []
    node.runtime.before_call = lambda call: keep.append("example.com/*")  # as the first removal is sent
    spec = REMOVE_ALL_UNUSED

    report = await node.engine().run_once(
        rules(spec), current_rules=lambda: rules({"images": {**spec["images"], "keep": keep}})
    )

    assert len(node.removed()) == 1
    (second,) = images - set(node.removed())
    assert second in node.runtime.image_ids() and "kept by pattern 'example.com/*'" in report.skipped[second]


async def test_a_workload_ref_protected_mid_run_protects_the_next_image(node: Node) -> None:
    """The operator's protected set is a callable, read again right before each removal."""
    a, b = node.image("a"), node.image("b")
    node.disks(image=100 * MiB)
    protected: list[str] = []
    node.runtime.before_call = lambda call: protected.extend([a.ref, b.ref])  # as the first removal is sent

    report = await node.engine().run_once(rules(REMOVE_ALL_UNUSED), protected_images=lambda: protected)

    assert len(node.removed()) == 1
    (second,) = {a.id, b.id} - set(node.removed())
    assert second in node.runtime.image_ids() and report.skipped[second] == "protected in the cluster now"


async def test_protected_images_are_never_removed(node: Node) -> None:
    """A keep pattern, the operator's workload refs, CRI's pinned, a container's (running or exited) and the sandbox
    image each protect an image; the one unprotected image goes."""
    rt = node.runtime
    free = node.image("free")
    kept, workload, pinned = node.image("kept"), node.image("workload"), node.image("pinned", pinned=True)
    running, exited = node.image("running"), node.image("exited")
    pause = rt.add_image(SANDBOX_IMAGE, [("pause", MiB)])
    sandbox, _ = node.pod("web")
    rt.add_container("r", running, pod=sandbox, name="r")
    rt.add_container("x", exited, pod=sandbox, name="x", state="EXITED", finished_at=T0)
    node.disks(image=100 * MiB, base=90 * MiB)  # under pressure too

    report = await node.engine().run_once(
        rules({"images": {**REMOVE_ALL_UNUSED["images"], "keep": ["example.com/kept:*"]}}),
        protected_images=["example.com/workload:v1"],
    )

    assert node.removed() == [free.id]
    skipped = report.skipped
    assert "kept by pattern" in skipped[kept.id]
    assert skipped[workload.id] == "in use in the cluster"
    assert skipped[pinned.id] == "pinned by the runtime"
    assert skipped[running.id] == skipped[exited.id] == skipped[pause.id] == "in use by a container"
    assert rt.image_ids() == {kept.id, workload.id, pinned.id, running.id, exited.id, pause.id}


async def test_the_sandbox_image_is_kept_even_when_no_pod_uses_it(node: Node) -> None:
    pause, free = node.runtime.add_image(SANDBOX_IMAGE, [("pause", MiB)]), node.image("free")
    node.disks(image=100 * MiB)
    report = await node.engine().run_once(rules(REMOVE_ALL_UNUSED))
    assert node.removed() == [free.id] and report.skipped[pause.id] == "sandbox (pause) image"


async def test_an_image_the_runtime_configuration_pins_is_kept(node: Node) -> None:
    """Where CRI neither flags an image pinned nor names it the sandbox image (containerd 2.x's Status does not),
    what runtime discovery read from the configuration (`pinned_images`, the sandbox image) protects it: at plan
    time, and again right before a removal (an image that got the name after the plan)."""
    configured, free = node.image("configured"), node.image("free")
    node.disks(image=100 * MiB)
    engine = node.engine(configured_images=["example.com/configured:v1", "example.com/renamed:v1"])
    report = await engine.run_once(rules(REMOVE_ALL_UNUSED))
    assert node.removed() == [free.id]
    assert report.skipped[configured.id] == "pinned in the runtime's configuration"
    assert report.inventory.configured_images == ("example.com/configured:v1", "example.com/renamed:v1")

    late = node.image("late")  # named after the plan as the configuration pins: the executor's re-check keeps it
    report = await engine.run_once(
        rules(REMOVE_ALL_UNUSED), on_plan=lambda plan: node.runtime.add_extra_name(late, "example.com/renamed:v1")
    )
    assert [a.id for a in report.plan.actions if a.kind is ActionKind.REMOVE_IMAGE] == [late.id]
    assert late.id in node.runtime.image_ids()
    assert report.skipped[late.id] == "pinned in the runtime's configuration"


async def test_an_image_a_container_started_using_after_planning_is_skipped(node: Node) -> None:
    rt = node.runtime
    a = node.image("a")
    sandbox, _ = node.pod("web")
    node.disks(image=100 * MiB)

    def started(plan: Plan) -> None:  # the kubelet starts a container on it between the plan and the removal
        rt.add_container("late", a, pod=sandbox, name="late")

    report = await node.engine().run_once(rules(REMOVE_ALL_UNUSED), on_plan=started)

    assert [a.kind for a in report.plan.actions] == [ActionKind.REMOVE_IMAGE] and node.removed() == []
    assert report.skipped[a.id] == "now in use by container late"


async def test_an_image_only_mounted_as_a_volume_is_in_use(node: Node) -> None:
    """KEP-4639: a pod's image volume runs in no container; CRI ContainerStatus lists it among the mounts."""
    rt = node.runtime
    app, weights, free = node.image("app"), node.image("weights", mib=8), node.image("free")
    sandbox, _ = node.pod("model")
    rt.add_container("serve", app, pod=sandbox, name="serve", mounts=[weights])
    node.disks(image=100 * MiB, base=90 * MiB)  # under pressure: everything unprotected goes

    report = await node.run(REMOVE_ALL_UNUSED)

    assert node.removed() == [free.id]
    assert report.skipped[weights.id] == report.skipped[app.id] == "in use by a container"
    assert rt.image_ids() == {app.id, weights.id}


async def test_log_paths_and_image_mounts_cost_one_container_status_per_container(node: Node) -> None:
    """The log janitor (so the agent's rotator) and the image-mount check share one ContainerStatus cache: on a
    real containerd the agent's rotator had asked already, and a run asked each container again (test_agent_shared_
    logs.py caught it)."""
    rt = node.runtime
    app, weights, free = node.image("app"), node.image("weights"), node.image("free")
    sandbox, _ = node.pod("model")
    rt.add_container("serve", app, pod=sandbox, name="serve", mounts=[weights])
    rt.add_container("side", app, pod=sandbox, name="side")
    node.disks(image=100 * MiB)
    engine = node.engine()
    asked: list[str] = []
    status = rt.cri.container_status

    async def counted(container_id: str) -> Any:
        asked.append(container_id)
        return await status(container_id)

    rt.cri.container_status = counted  # type: ignore[method-assign]
    spec = {**REMOVE_ALL_UNUSED, "logs": {"maxSize": "1Mi"}}

    await engine.log_janitor.log_paths.update(rt.cri, await rt.cri.list_containers())  # the rotator's check
    first = await engine.run_once(rules(spec))
    second = await engine.run_once(rules(spec))

    assert sorted(asked) == ["serve", "side"]
    assert node.removed() == [free.id] and first.skipped[weights.id] == "in use by a container"
    assert second.skipped[weights.id] == "in use by a container"


async def test_an_image_a_container_mounted_after_planning_is_skipped(node: Node) -> None:
    rt = node.runtime
    app, weights = node.image("app"), node.image("weights")
    sandbox, _ = node.pod("model")
    rt.add_container("serve", app, pod=sandbox, name="serve")
    node.disks(image=100 * MiB)

    def started(plan: Plan) -> None:  # the kubelet starts a container mounting it between the plan and the removal
        rt.add_container("late", app, pod=sandbox, name="late", mounts=[weights])

    report = await node.engine().run_once(rules(REMOVE_ALL_UNUSED), on_plan=started)

    assert [a.id for a in report.plan.actions if a.kind is ActionKind.REMOVE_IMAGE] == [weights.id]
    assert node.removed() == [] and report.skipped[weights.id] == "now mounted as a volume by container late"


async def test_an_image_is_not_removed_while_what_a_container_mounts_cannot_be_told(node: Node) -> None:
    """A container whose ContainerStatus fails may mount any image: the inventory says so, and every image removal
    waits (it is asked again at the next run)."""
    rt = node.runtime
    app, weights = node.image("app"), node.image("weights")
    sandbox, _ = node.pod("model")
    rt.add_container("serve", app, pod=sandbox, name="serve", mounts=[weights])
    rt.status_failures.add("serve")
    node.disks(image=100 * MiB)

    first = await node.engine().run_once(rules(REMOVE_ALL_UNUSED))

    assert any("cannot tell which images 1 container(s) mount" in w for w in first.inventory.warnings)
    assert node.removed() == [] and weights.id in rt.image_ids()
    assert first.skipped[weights.id].startswith("cannot tell whether a container mounts it as a volume")
    rt.status_failures.clear()  # the runtime answers again: the mount is seen, the image is in use
    second = await node.engine().run_once(rules(REMOVE_ALL_UNUSED))
    assert node.removed() == [] and second.skipped[weights.id] == "in use by a container"


async def test_a_reachable_target_is_reached_and_exactly_what_was_planned_is_freed(node: Node) -> None:
    rt = node.runtime
    for name in ("a", "b", "c"):
        node.image(name, mib=3)
    size = 40 * MiB
    node.disks(image=size, base=int(size * 0.9) - rt.stored_bytes(), log=100 * MiB)

    report = await node.run(BASE)

    assert report.plan.target.under_pressure and report.execution is not None
    assert report.execution.reclaimed_bytes == report.plan.planned_bytes  # the graph's promise, to the byte
    assert report.short == {"imagefs": 0} and not [w for w in report.warnings if "target not reached" in w]
    after = node.host.statvfs("imagefs", IMAGE_FS)
    assert after.used <= int(size * 0.75)


async def test_an_unreachable_target_is_reported_short_not_chased(node: Node) -> None:
    rt = node.runtime
    sandbox, pod_dir = node.pod("web")
    live = write(pod_dir / "app" / "0.log", 4096)
    rt.add_container("app", node.image("used", mib=3), pod=sandbox, name="app", log_path=str(live))
    free = node.image("free", mib=1)
    size = 40 * MiB
    node.disks(image=size, base=int(size * 0.95) - rt.stored_bytes())  # logs on the same disk

    report = await node.run(BASE)

    assert node.removed() == [free.id]
    short = node.host.statvfs("imagefs", IMAGE_FS).used - int(size * 0.75)
    assert report.short == {"imagefs": short} and short > 0 and report.short_bytes == short
    assert any(w.startswith("target not reached: imagefs") for w in report.warnings)
    assert live.exists()  # a container's log is never spent for pressure images caused


async def test_an_image_disk_that_cannot_be_measured_after_planning_is_said_and_the_run_goes_on(node: Node) -> None:
    free = node.image("a")
    node.disks(image=10 * MiB, base=9 * MiB, log=100 * MiB)
    report = await node.engine().run_once(rules(BASE), on_plan=lambda plan: node.host.fail.add(IMAGE_FS))
    assert node.removed() == [free.id]  # removed all the same
    assert f"cannot stat {IMAGE_FS}: Input/output error" in report.warnings and report.short == {}
    assert [e for e in report.errors if e.startswith("measuring the file system")] != []


async def test_a_collection_that_fails_after_the_records_went_is_asked_for_again(node: Node) -> None:
    """containerd answered a removal "gc failed: unknown" on a full disk in the suite (its metadata store could
    not grow): the records were gone, nothing was freed, and the old executor reported an error and moved on,
    leaving the space held until containerd's next collection. Now the collection is asked for again."""
    rt = node.runtime
    for name in ("a", "b", "c"):
        node.image(name, mib=3)
    size = 40 * MiB
    node.disks(image=size, base=int(size * 0.9) - rt.stored_bytes(), log=100 * MiB)
    rt.gc_failures = 1

    report = await node.run(BASE)

    assert report.execution is not None and report.execution.reclaimed_bytes == report.plan.planned_bytes > 0
    assert report.short == {"imagefs": 0}
    assert rt.gc_failures == 0 and rt.calls.count("GC") >= len(node.removed()) + 1
    assert len(node.removed()) == len(set(node.removed()))  # RemoveImage never sent twice: only the collection


async def test_a_collection_that_keeps_failing_is_one_clear_error(node: Node) -> None:
    rt = node.runtime
    only = node.image("only", mib=3)
    size = 40 * MiB
    node.disks(image=size, base=int(size * 0.9) - rt.stored_bytes(), log=100 * MiB)
    rt.gc_failures = 100

    report = await node.engine().run_once(rules(BASE))

    assert only.id not in rt.image_ids()  # the records went; the space did not
    assert report.errors and all("gc failed" in e for e in report.errors), report.errors
    assert any("garbage collection failed 4 times, so its space is not freed yet" in e for e in report.errors)
    assert report.short["imagefs"] > 0


async def test_a_run_reclaims_room_for_a_pull_in_flight_before_it_lands(node: Node) -> None:
    """At 70% with an ingest 25 MiB short of its total, the projected use is above highPercent: the run's target
    counts the bytes still to come, and the disk ends at or below the low watermark with them landed."""
    rt = node.runtime
    for name in ("a", "b", "c", "d"):
        node.image(name, mib=6)
    size = 100 * MiB
    rt.add_ingest("pull-layer", 5 * MiB, 30 * MiB, updated_at=node.clock())
    node.disks(image=size, base=int(size * 0.70) - rt.stored_bytes(), log=100 * MiB)
    assert node.host.statvfs("imagefs", IMAGE_FS).used_percent < 85

    report = await node.run(BASE)

    assert report.plan.target.pending_bytes == 25 * MiB and report.plan.target.under_pressure
    assert report.plan.reaches_target and report.execution is not None
    landed = node.host.statvfs("imagefs", IMAGE_FS).used + 25 * MiB
    assert landed <= int(size * 0.75)
    assert report.to_json()["pending_bytes"] == 25 * MiB
