"""The agent's pure parts: trigger coalescing, the pressure target, the watermark check, conditions, the report
shapes and the state dir's atomic writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from node_janitor.agent.node_agent import AgentConfig, NodeAgent
from node_janitor.agent.report import ConditionBook, RunOutcome, build_last_run, run_event
from node_janitor.agent.store import AgentStore, write_atomically
from node_janitor.agent.triggers import RunQueue, above, pressure_rules
from node_janitor.api.nodecleanup import NodeCleanupStatus
from node_janitor.api.policy import PolicyRules, Thresholds
from node_janitor.node.inventory import FileSystemEntry, Inventory
from node_janitor.node.plan import PlanSettings, plan_target
from support.poll import async_wait_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _fs(used_percent: float, inodes_percent: float = 0.0, name: str = "imagefs") -> FileSystemEntry:
    size = 1000 * 4096
    used = int(size * used_percent / 100)
    return FileSystemEntry(name, "/x", size, used, size - used, inodes=1000, inodes_used=int(10 * inodes_percent))


async def test_triggers_during_a_run_coalesce_into_one_more_run() -> None:
    queue = RunQueue()
    queue.add("startup")
    first = await queue.take()
    assert first.triggers == {"startup"} and queue.running and queue.busy
    queue.add("watermark")
    queue.add("schedule")
    queue.add("request", run_request="t1")
    queue.add("request", run_request="t2")
    queue.done()
    second = await queue.take()
    assert second.triggers == {"watermark", "schedule", "request"} and second.run_request == "t2"
    assert second.trigger == "request"  # the most specific names the run
    queue.done()
    assert not queue.busy
    waiter = asyncio.create_task(queue.take())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.add("pressure")
    assert (await asyncio.wait_for(waiter, 1)).pressure


async def test_a_follow_up_run_aims_at_the_low_watermark_once_and_never_in_a_dry_run() -> None:
    queue = RunQueue()
    queue.add("request", run_request="dry-run:1")
    queue.add("watermark", follow_up=True)
    follow = await queue.take()
    assert follow.triggers == {"watermark"} and follow.follow_up and follow.to_low and not follow.pressure
    queue.done()
    dry = await queue.take()
    assert dry.dry_run_request and not dry.follow_up and not dry.to_low
    queue.done()
    queue.add("watermark")
    plain = await queue.take()
    assert not plain.follow_up and not plain.to_low  # the flag went with the run it was added for


async def test_a_dry_run_request_never_rides_along_a_real_run() -> None:
    queue = RunQueue()
    queue.add("watermark")
    queue.add("request", run_request="dry-run:abc")
    real = await queue.take()
    assert real.triggers == {"watermark"} and real.run_request is None and not real.dry_run_request
    queue.done()
    dry = await queue.take()
    assert dry.triggers == {"request"} and dry.dry_run_request and dry.run_request == "dry-run:abc"


async def test_a_real_request_is_never_lost_behind_a_dry_run_request() -> None:
    queue = RunQueue()
    queue.add("request", run_request="real-1")
    queue.add("request", run_request="dry-run:2")  # before the real one was taken
    real = await queue.take()
    assert real.run_request == "real-1" and not real.dry_run_request
    queue.done()
    dry = await queue.take()
    assert dry.run_request == "dry-run:2" and dry.triggers == {"request"}
    queue.done()
    assert not queue.busy
    queue.add("request", run_request="dry-run:3")  # a dry-run request first, then a real one and a watermark
    queue.add("request", run_request="real-4")
    queue.add("watermark")
    first = await queue.take()
    assert first.run_request == "real-4" and first.triggers == {"request", "watermark"}
    queue.done()
    second = await queue.take()
    assert second.run_request == "dry-run:3" and second.triggers == {"request"}


def test_pressure_rules_reclaim_to_the_low_watermark_below_the_high_one() -> None:
    rules = PolicyRules(thresholds=Thresholds(high_percent=90, low_percent=50))
    inventory = Inventory(taken_at=NOW, file_systems=(_fs(60),))
    assert plan_target(inventory, PlanSettings.from_rules(rules)).bytes == 0
    target = plan_target(inventory, PlanSettings.from_rules(pressure_rules(rules)))
    assert target.bytes == int(1000 * 4096 * 0.10)  # 60% -> 50%
    at_low = Inventory(taken_at=NOW, file_systems=(_fs(50),))
    assert plan_target(at_low, PlanSettings.from_rules(pressure_rules(rules))).bytes == 0
    assert rules.thresholds.high_percent == 90  # the held policy is untouched


def test_above_checks_space_and_inodes() -> None:
    t = Thresholds(high_percent=80, low_percent=60, inodes_high_percent=90, inodes_low_percent=70)
    assert not above([_fs(79, 50)], t)
    assert above([_fs(81, 50)], t) and above([_fs(10, 95)], t)
    assert above([_fs(65)], t, low=True) and not above([_fs(60)], t, low=True)
    assert above([_fs(10), _fs(85, name="logs")], t)


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


def test_state_writes_are_atomic_with_unique_temporary_names(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "state")
    store.save_policy({"nodeName": "n", "policy": {"dryRun": True}}, 3)
    assert store.load_policy() == {"spec": {"nodeName": "n", "policy": {"dryRun": True}}, "generation": 3}
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["policy.json"]  # no temporary file left
    (tmp_path / "state" / "status.json").write_text("{not json")
    assert store.load_status() is None  # unreadable: ignored with a warning
    store.forget_policy()
    assert store.load_policy() is None


def test_a_refused_write_is_a_warning_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    warning = write_atomically(blocker / "x.json", {"a": 1})  # its parent is a file: ENOTDIR, even for root
    assert warning is not None and "could not write" in warning
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]


async def test_the_schedule_fires_at_its_minute_in_utc(tmp_path: Path) -> None:
    moments = iter([datetime(2026, 12, 1, 3, 59, 59, 900000, tzinfo=UTC), datetime(2026, 12, 1, 4, 0, 1, tzinfo=UTC)])
    agent = NodeAgent(AgentConfig("n", state_dir=tmp_path), cast(Any, None), clock=lambda: next(moments))
    agent._on_nodecleanup("LIST", {"metadata": {"name": "n", "generation": 1},
                                   "spec": {"nodeName": "n", "policy": {"schedule": "0 4 * * *"}}})  # fmt: skip
    scheduler = asyncio.create_task(agent._scheduler())
    try:
        pending = await asyncio.wait_for(agent.queue.take(), 5)  # 0.1 s to 04:00 UTC
        assert pending.triggers == {"schedule"}
    finally:
        scheduler.cancel()
        await asyncio.gather(scheduler, return_exceptions=True)


async def test_a_wall_clock_stepped_back_never_fires_a_minute_twice(tmp_path: Path) -> None:
    """NTP steps the clock back while the agent waits for 04:00, and again right after it fired: 04:00 fires
    once, when the wall clock reaches it (a wait measured once, then trusted, fired it early and then again)."""
    readings = [
        datetime(2026, 12, 1, 3, 59, 59, 900000, tzinfo=UTC),
        datetime(2026, 12, 1, 3, 59, 59, 950000, tzinfo=UTC),  # stepped back during the 0.1 s wait
        datetime(2026, 12, 1, 4, 0, 0, 10000, tzinfo=UTC),
        datetime(2026, 12, 1, 3, 59, 59, 990000, tzinfo=UTC),  # stepped back again after 04:00 fired
    ]
    reads = 0

    def clock() -> datetime:
        nonlocal reads
        reads += 1
        return readings[min(reads, len(readings)) - 1]

    agent = NodeAgent(AgentConfig("n", state_dir=tmp_path), cast(Any, None), clock=clock)
    agent._on_nodecleanup(
        "LIST",
        {"metadata": {"name": "n", "generation": 1}, "spec": {"nodeName": "n", "policy": {"schedule": "0 4 * * *"}}},
    )
    scheduler = asyncio.create_task(agent._scheduler())
    try:
        first = await asyncio.wait_for(agent.queue.take(), 5)
        assert first.triggers == {"schedule"} and reads >= 3  # fired at the reading of 04:00:00.01, not before
        agent.queue.done()

        async def settled() -> bool:  # it read the stepped-back clock and waits for tomorrow, or fired again
            return reads >= 4 or agent.queue.pending

        await async_wait_for("the scheduler to read the clock again", settled, 5)
        assert not agent.queue.pending
    finally:
        scheduler.cancel()
        await asyncio.gather(scheduler, return_exceptions=True)
