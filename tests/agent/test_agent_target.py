"""A target no run can reach is reported, not chased (issue 18): on a disk that a file which is no log fills past
the high watermark, with a running container's live log and an exited container's log on it, the real agent
removes no log, says so once (the TargetReached condition, the short-bytes gauge, one TargetUnreachable Event)
and runs again only when something changes (here: the policy stops keeping an image)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.runtime import open_runtime
from support.agentbed import (
    AgentFactory,
    MiB,
    apply_nodecleanup,
    build_images,
    condition,
    fill_to_percent,
    image_ids,
    import_one_by_one,
    node_events,
    status,
    wait_for,
)
from support.inotify import OnDelete
from support.kube import ControlPlane
from support.logbed import check_numbered, stdout_messages

pytestmark = [pytest.mark.containerd, pytest.mark.kube]

POLICY = {
    "thresholds": {"highPercent": 75, "lowPercent": 60},
    "images": {"minAge": "0s"},
    "logs": {"maxSize": "100Mi", "compress": False},
}
WRITER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"  # a line every 0.1 s


REMOVED = "node_janitor_actions_total"


def _runs(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("node_janitor_runs_total{"))


def _unreachable_events(kube: ControlPlane, node: str) -> list[dict[str, Any]]:
    return [e for e in node_events(kube, node) if e["reason"] == "TargetUnreachable"]


async def test_an_unreachable_target_is_reported_once_and_retried_only_when_something_changes(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = small_disk_bed
    in_use, spare = build_images(bed, "target", 2)
    bed.import_images([in_use, spare])
    apply_nodecleanup(kube, node_name, {**POLICY, "images": {"minAge": "0s", "keep": [spare.name]}})
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "app")
        done = await start_container(cri, pod, "done", in_use.name, "echo bye")
        writer = await start_container(cri, pod, "app", in_use.name, WRITER)
        await wait_for_state(cri, done.id, "EXITED")
        await wait_for_state(cri, writer.id, "RUNNING")
        fill_to_percent(bed, 85)  # a file that is no log, which the agent cannot remove

        agent = agents.start(node_name, bed, monitor_interval="200ms")
        # Ten monitor ticks and more after the first run, above the high watermark: no run, no log touched (the
        # old agent removed the exited container's log, then rotated the live one away, on every tick).
        wait_for("the first run's report", lambda: status(kube, node_name).get("lastRun"))  # startup (+ watermark)
        lines = len(stdout_messages([writer.log_path]))
        wait_for("20 more lines (2 s)", lambda: len(stdout_messages([writer.log_path])) >= lines + 20)
        assert _runs(agent.metrics()) == 1, agent.metrics()
        assert sorted(p.name for p in writer.log_path.parent.iterdir()) == ["0.log"]
        assert check_numbered(stdout_messages([writer.log_path]))[0] == 0  # every line since the start, one file
        assert done.log_path.exists() and b"bye" in done.log_path.read_bytes()

        st = wait_for(
            "the unreachable target in the status",
            lambda: s if condition(s := status(kube, node_name), "TargetReached").get("status") == "False" else None,
            30,
        )
        reached = condition(st, "TargetReached")
        assert reached["reason"] == "TargetUnreachable" and "above the low watermark" in reached["message"]
        wait_for("the TargetUnreachable Event", lambda: _unreachable_events(kube, node_name))
        assert agent.metrics()["node_janitor_target_short_bytes"] > 0

        # Something changes (the policy no longer keeps the spare image): one run removes it, and is short still:
        # no second TargetUnreachable Event; then no run again while nothing changes.
        apply_nodecleanup(kube, node_name, POLICY)
        wait_for("the spare image removed", lambda: agent.metric(REMOVED, kind="remove-image", outcome="done") == 1)
        assert spare.id not in await image_ids(bed)
        # (the action is counted as it is done, the run when its report is written: wait for the report)
        runs = wait_for("the second run's report", lambda: (n := _runs(agent.metrics())) >= 2 and n)
        assert runs == 2
        lines = len(stdout_messages([writer.log_path]))
        wait_for("20 more lines (2 s)", lambda: len(stdout_messages([writer.log_path])) >= lines + 20)
        assert _runs(agent.metrics()) == runs
        st = status(kube, node_name)
        assert condition(st, "TargetReached")["status"] == "False"
        assert len(_unreachable_events(kube, node_name)) == 1
        assert sorted(p.name for p in writer.log_path.parent.iterdir()) == ["0.log"]

        # The disk is freed by someone else: the episode ends.
        bed.drain()
        wait_for(
            "TargetReached again",
            lambda: condition(status(kube, node_name), "TargetReached").get("status") == "True",
            30,
        )
        assert agent.metrics()["node_janitor_target_short_bytes"] == 0
        assert done.log_path.exists() and _runs(agent.metrics()) == runs
        await remove_all_pods(cri)


async def test_an_image_reaching_min_age_is_the_change_that_ends_the_wait(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    """Time alone makes an image younger than minAge removable: the agent tries again when it reaches minAge,
    not after the 5 min fallback."""
    bed = small_disk_bed
    in_use, young = build_images(bed, "young", 2)
    apply_nodecleanup(kube, node_name, {**POLICY, "images": {"minAge": "8s"}})
    bed.import_images([in_use])
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "app")
        c = await start_container(cri, pod, "app", in_use.name, "sleep 3600")
        await wait_for_state(cri, c.id, "RUNNING")
        fill_to_percent(bed, 80)
        bed.import_images([young])
        imported = time.monotonic()
        agent = agents.start(node_name, bed, monitor_interval="200ms")
        wait_for("the TargetUnreachable Event", lambda: _unreachable_events(kube, node_name), 30)
        # (the deadline is the bound: 60 s is far from the 300 s fallback; a tight upper bound on the wall clock,
        # 14 s, failed once on a loaded machine)
        wait_for(
            "the image removed once it reached minAge",
            lambda: agent.metric(REMOVED, kind="remove-image", outcome="done") == 1,
            60,
        )
        took = time.monotonic() - imported
        assert took >= 8, f"removed {took:.1f}s after its import, before its minAge (8s)"
        assert young.id not in await image_ids(bed)
        assert len(_unreachable_events(kube, node_name)) == 1
        await remove_all_pods(cri)


async def test_a_disk_that_fills_during_the_run_is_planned_again_not_called_unreachable(
    kube: ControlPlane, small_disk_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    """The disk fills while a watermark run removes images (here 16 MiB written the instant the first blob is
    deleted, with containerd stopped meanwhile so that it lands mid-run): the run's plan covered its way to the low
    watermark on what it measured, and removable images remain. The old agent called that an unreachable target
    (condition, Event) and waited for a change that never came, the disk left above its low watermark; it failed
    that way in the helm e2e test (the ballast still being written when the watermark fired). Now another run
    plans again on what is there and brings the disk under the low watermark."""
    bed = small_disk_bed
    images = build_images(bed, "spill", 5)  # each ~16 MiB on disk: its blob and its snapshot
    import_one_by_one(bed, images)
    policy = {"thresholds": {"highPercent": 75, "lowPercent": 50}, "images": {"minAge": "0s"}}
    apply_nodecleanup(kube, node_name, {**policy, "logs": {"enabled": False}})
    fill_to_percent(bed, 80)
    pid = bed.pid
    assert pid is not None

    def spill() -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            with (bed.disk / "spill").open("wb") as f:
                for _ in range(16):
                    f.write(os.urandom(MiB))
                os.fsync(f.fileno())
        finally:
            os.kill(pid, signal.SIGCONT)

    seen = Counter(d for image in images for d in image.blobs)
    ours = {d.removeprefix("sha256:") for d, n in seen.items() if n == 1}
    blobs = bed.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    with OnDelete(blobs, ours, spill) as spilled:
        agent = agents.start(node_name, bed, monitor_interval="200ms")
        wait_for("the first removal", spilled.fired.is_set, 30)
    wait_for("the disk under its low watermark", lambda: bed.usage().used_percent <= 50, 30)
    assert "planning again (1 of 3)" in agent.log()
    # The follow-up run is counted when it ends, after its removals brought the disk down (it failed once that way).
    runs = wait_for("the follow-up run counted", lambda: r if (r := _runs(agent.metrics())) >= 2 else None)
    assert runs <= 4, agent.metrics()
    remaining = await image_ids(bed)
    assert {i.id for i in images} & remaining, "only as much as needed: the newest stay"
    st = wait_for("a report after the last run", lambda: s if (s := status(kube, node_name)).get("lastRun") else None)
    assert condition(st, "TargetReached").get("status") != "False", st
    assert not _unreachable_events(kube, node_name)
    assert agent.metrics().get("node_janitor_target_short_bytes", 0) == 0
