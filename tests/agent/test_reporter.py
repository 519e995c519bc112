"""The reporter (`agent.reporter`) with an in-memory apiserver (`support.agentbed.MemoryKube`): the conditions it
derives, the status it sends and how it answers the apiserver's refusals, the Events, the run metrics; and the
report shapes it sends (`agent.report`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from node_janitor.agent.kube import KubeError
from node_janitor.agent.metrics import AgentMetrics
from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.report import ConditionBook, RunOutcome, build_last_run, run_event
from node_janitor.agent.reporter import Reporter
from node_janitor.agent.store import AgentStore
from node_janitor.api.nodecleanup import NodeCleanupStatus
from support.agentbed import MemoryKube

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Health:
    """What the reporter asks the agent's other parts: containerd's error, the log rotator's failures."""

    runtime_error: str | None = None
    rotator: tuple[int, str] | None = None


def _reporter(tmp_path: Path, kube: MemoryKube, health: Health | None = None) -> Reporter:
    health = health or Health()
    store = AgentStore(tmp_path / "state")
    policy = PolicyHolder("n", store)
    policy.observe({"metadata": {"name": "n", "generation": 3}, "spec": {"nodeName": "n", "policy": {}}})
    return Reporter(
        "n", kube, store, policy, AgentMetrics(), clock=lambda: NOW,
        runtime_error=lambda: health.runtime_error, rotator_failure=lambda: health.rotator,
    )  # fmt: skip


def _condition(status: dict[str, Any], type_: str) -> tuple[str, str, str]:
    c = next(c for c in status["conditions"] if c["type"] == type_)
    return c["status"], c["reason"], c["message"]


def _sample(reporter: Reporter, name: str, **labels: str) -> float:
    return next(
        s.value for m in reporter.metrics.registry.collect() for s in m.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )  # fmt: skip


async def test_a_refused_status_holds_back_neither_the_events_nor_the_heartbeat(tmp_path: Path) -> None:
    kube = MemoryKube(refuse_status=KubeError("status: 422 imageRefs: Too many: 5001: must have at most 5000", 422))
    reporter = _reporter(tmp_path, kube)
    reporter.usage = {"imageRefs": ["a:1"], "imageCount": 1}
    reporter.events.append({"kind": "Event", "reason": "CleanupDone"})
    assert await asyncio.wait_for(reporter.send(), 5)  # no retry loop in front of the Events
    assert [e["reason"] for e in kube.events] == ["CleanupDone"]
    (heartbeat,) = kube.patches
    assert set(heartbeat) <= {"conditions", "observedGeneration", "heartbeatTime"} and heartbeat["heartbeatTime"]
    status, reason, message = _condition(heartbeat, "Degraded")
    assert (status, reason) == ("True", "StatusRefused") and "422" in message
    # An answer worth retrying (here: credentials being rotated) is retried, and the Events wait for it.
    kube.refuse_status = KubeError("status: 401 Unauthorized", 401)
    reporter.events.append({"kind": "Event", "reason": "CleanupFailed"})
    assert not await reporter.send() and len(kube.events) == 1
    # Once the apiserver takes the full status again, Degraded clears.
    kube.refuse_status = None
    assert await reporter.send() and "imageRefs" in kube.patches[-1]
    assert await reporter.send()
    assert _condition(kube.patches[-1], "Degraded")[0] == "False"
    assert _sample(reporter, "node_janitor_errors_total", source="apiserver") == 2


async def test_a_deleted_nodecleanup_is_no_longer_reported_into(tmp_path: Path) -> None:
    kube = MemoryKube(refuse_status=KubeError("status: 404 not found", 404))
    reporter = _reporter(tmp_path, kube)
    reporter.usage = {"imageRefs": []}
    reporter.events.append({"kind": "Event", "reason": "CleanupDone"})
    assert await reporter.send() and not reporter.policy.exists  # the watch says when there is one again
    assert kube.events and not kube.patches
    kube.refuse_status = None
    assert await reporter.send() and not kube.patches  # nothing to report into


async def test_a_forbidden_event_is_dropped_and_never_blocks_the_status(tmp_path: Path) -> None:
    class Forbidding(MemoryKube):
        async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
            raise KubeError("events is forbidden", 403)

    kube = Forbidding()
    reporter = _reporter(tmp_path, kube)
    reporter.events.append({"kind": "Event", "reason": "CleanupDone"})
    assert await reporter.send() and not reporter.events and len(kube.patches) == 1


def test_the_conditions_say_what_is_wrong_most_urgent_first(tmp_path: Path) -> None:
    health = Health()
    reporter = _reporter(tmp_path, MemoryKube(), health)
    status = reporter.status_document()
    assert _condition(status, "Ready") == ("True", "Applying", "applying spec generation 3")
    assert _condition(status, "Degraded")[:2] == ("False", "AsExpected") and status["observedGeneration"] == 3
    health.rotator = (3, "OSError: No space left on device")
    degraded = _condition(reporter.status_document(), "Degraded")
    assert degraded[:2] == ("True", "LogRotatorFailed") and "3 time(s)" in degraded[2]
    reporter.record_run(RunOutcome.of("watermark", NOW, 0.5, False, None, ["containerd: socket gone"]))
    assert _condition(reporter.status_document(), "Degraded")[:2] == ("True", "RunErrors")
    health.runtime_error = "connection refused"
    status = reporter.status_document()
    assert _condition(status, "Ready")[:2] == ("False", "RuntimeUnavailable")
    assert _condition(status, "Degraded")[:2] == ("True", "RuntimeUnavailable")


def test_a_run_is_counted_reported_and_saved_for_the_next_agent(tmp_path: Path) -> None:
    reporter = _reporter(tmp_path, MemoryKube())
    reporter.node_uid = "uid-1"
    reporter.record_run(RunOutcome.of("pressure", NOW, 0.5, False, None, ["containerd: socket gone"]))
    reporter.note_target(0, "the last run reached its target")
    assert _sample(reporter, "node_janitor_runs_total", trigger="pressure", dry_run="false") == 1
    assert _sample(reporter, "node_janitor_errors_total", source="run") == 1
    (event,) = reporter.events
    assert event["reason"] == "CleanupFailed" and event["involvedObject"]["uid"] == "uid-1"
    reporter.save()
    again = _reporter(tmp_path, MemoryKube())  # a restarted agent starts from what it last reported
    assert again.last_run == reporter.last_run and again.last_run is not None
    assert again.last_run["trigger"] == "pressure"
    assert _condition(again.status_document(), "TargetReached")[:2] == ("True", "Reached")


def test_listed_conditions_are_adopted_only_when_the_agent_has_none(tmp_path: Path) -> None:
    reporter = _reporter(tmp_path, MemoryKube())
    listed = {"type": "Ready", "status": "True", "reason": "Applying", "message": "m", "observedGeneration": 1,
              "lastTransitionTime": "2026-11-30T00:00:00Z"}  # fmt: skip
    reporter.adopt({"conditions": [listed]})
    ready = reporter.conditions.get("Ready")
    assert ready is not None and ready.last_transition_time == datetime(2026, 11, 30, tzinfo=UTC)
    reporter.adopt({"conditions": [{**listed, "reason": "Paused"}]})
    assert reporter.conditions.get("Ready").reason == "Applying"  # type: ignore[union-attr]


def test_condition_transition_time_changes_only_with_its_status() -> None:
    book = ConditionBook()
    book.set("Ready", True, "Applying", "applying spec generation 1", 1, NOW)
    book.set("Ready", True, "Applying", "applying spec generation 2", 2, NOW + timedelta(minutes=1))
    ready = book.get("Ready")
    assert ready is not None and ready.last_transition_time == NOW and ready.observed_generation == 2
    book.set("Ready", False, "RuntimeUnavailable", "down", 2, NOW + timedelta(minutes=2))
    assert book.get("Ready").last_transition_time == NOW + timedelta(minutes=2)  # type: ignore[union-attr]
    again = ConditionBook(book.to_status())  # kept across restarts through the status
    assert again.get("Ready") == book.get("Ready")


def test_a_failed_run_is_a_valid_status_and_a_warning_event() -> None:
    outcome = RunOutcome.of("watermark", NOW, 0.5, False, None, ["containerd: socket gone"])
    last = build_last_run(outcome)
    assert last["runRequest"] is None and last["errors"] == ["containerd: socket gone"] and last["actions"] == 0
    NodeCleanupStatus.model_validate({"lastRun": {k: v for k, v in last.items() if v is not None}})
    event = run_event(outcome, "node-a", "uid-1", NOW)
    assert event is not None and event["type"] == "Warning" and event["reason"] == "CleanupFailed"
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "uid-1"}
    quiet = RunOutcome.of("schedule", NOW, 0.1, False, None)
    assert run_event(quiet, "node-a", None, NOW) is None  # nothing removed, nothing failed: no Event


def test_reclaimed_bytes_count_what_the_disk_gained_not_what_was_planned(tmp_path: Path) -> None:
    """The runtime's actions planned 300 MiB (two images, a container); the image file system gained 200 MiB: the
    counter says 200 MiB, like status.lastRun and node_janitor_last_run_reclaimed_bytes, shared out by kind in
    proportion to the planned sizes. Each action is counted with the reason it was planned for."""
    from node_janitor.node.engine import PruneReport
    from node_janitor.node.execute import ActionResult, ExecutionResult
    from node_janitor.node.inventory import FileSystemEntry, Inventory
    from node_janitor.node.outcome import Outcome
    from node_janitor.node.plan import Action, ActionKind, Plan, Reason, Target

    mib = 1 << 20
    actions = (
        Action(ActionKind.REMOVE_IMAGE, "sha256:a", Reason.LEAST_RECENTLY_USED, 200 * mib),
        Action(ActionKind.REMOVE_IMAGE, "sha256:b", Reason.MAX_UNUSED_AGE, 50 * mib),
        Action(ActionKind.REMOVE_CONTAINER, "c1", Reason.EXITED_CONTAINER, 50 * mib),
        Action(ActionKind.REMOVE_IMAGE, "sha256:c", Reason.LEAST_RECENTLY_USED, 70 * mib),
    )
    results = [ActionResult(a, Outcome.DONE) for a in actions[:3]] + [ActionResult(actions[3], Outcome.SKIPPED)]
    before = FileSystemEntry("imagefs", "/var/lib/containerd", 1000 * mib, 900 * mib, 100 * mib)
    after = FileSystemEntry("imagefs", "/var/lib/containerd", 1000 * mib, 700 * mib, 300 * mib)
    report = PruneReport(
        plan=Plan(actions, Target()),
        dry_run=False,
        inventory=Inventory(taken_at=NOW),
        execution=ExecutionResult(results=results, before=before, after=after),
    )
    reporter = _reporter(tmp_path, MemoryKube())
    for result in results:  # as the runner counts them, one by one
        reporter.count(str(result.action.kind), str(result.outcome), str(result.action.reason))
    reporter.record_run(RunOutcome.of("watermark", NOW, 1.0, False, report))

    assert _sample(reporter, "node_janitor_last_run_reclaimed_bytes") == 200 * mib
    assert reporter.last_run is not None and reporter.last_run["reclaimedBytes"] == 200 * mib
    by_kind = {
        kind: _sample(reporter, "node_janitor_reclaimed_bytes_total", kind=kind)
        for kind in ("remove-image", "remove-container")
    }
    assert by_kind == {"remove-image": 174_762_667, "remove-container": 34_952_533}  # 5 : 1, the odd byte to images
    assert sum(by_kind.values()) == 200 * mib  # (the old counter: 300 MiB, what was planned)
    done = "node_janitor_actions_total"
    assert _sample(reporter, done, kind="remove-image", outcome="done", reason="lru-under-pressure") == 1
    assert _sample(reporter, done, kind="remove-image", outcome="done", reason="unused-too-long") == 1
    assert _sample(reporter, done, kind="remove-container", outcome="done", reason="exited-container") == 1
    assert _sample(reporter, done, kind="remove-image", outcome="skipped", reason="lru-under-pressure") == 1


def test_share_out_adds_up_to_the_total() -> None:
    from node_janitor.agent.metrics import share_out

    assert share_out(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert share_out(7, {"a": 0, "b": 5}) == {"b": 7}
    assert share_out(0, {"a": 5}) == {} and share_out(5, {"a": 0}) == {}
