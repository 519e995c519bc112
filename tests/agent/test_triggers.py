"""The triggers (`agent.triggers`), without I/O: coalescing in the run queue, the pressure target, the watermark
check, the monitor's and the watches' decisions (`Triggers`), re-arming after a run, and the cron schedule
(`Scheduler`) against a clock the test steps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from node_janitor.agent.backoff import TargetBackoff, runtime_fingerprint
from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.report import RunOutcome
from node_janitor.agent.store import AgentStore
from node_janitor.agent.triggers import (
    RETRY_SECONDS,
    PendingRun,
    RunQueue,
    Scheduler,
    Triggers,
    above,
    pressure_rules,
)
from node_janitor.api.policy import PolicyRules, Thresholds
from node_janitor.node.inventory import FileSystemEntry, Inventory
from node_janitor.node.plan import PlanSettings, plan_target
from support.poll import async_wait_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _fs(used_percent: float, inodes_percent: float = 0.0, name: str = "imagefs") -> FileSystemEntry:
    size = 1000 * 4096
    used = int(size * used_percent / 100)
    return FileSystemEntry(name, "/x", size, used, size - used, inodes=1000, inodes_used=int(10 * inodes_percent))


def _policy(tmp_path: Path, policy: dict[str, Any], *, generation: int = 1) -> PolicyHolder:
    """A policy holder that has listed this NodeCleanup spec.policy."""
    holder = PolicyHolder("n", AgentStore(tmp_path / "state"))
    holder.observe({"metadata": {"name": "n", "generation": generation}, "spec": {"nodeName": "n", "policy": policy}})
    return holder


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


async def test_the_schedule_fires_at_its_minute_in_utc(tmp_path: Path) -> None:
    moments = iter([datetime(2026, 12, 1, 3, 59, 59, 900000, tzinfo=UTC), datetime(2026, 12, 1, 4, 0, 1, tzinfo=UTC)])
    queue = RunQueue()
    scheduler = asyncio.create_task(
        Scheduler(_policy(tmp_path, {"schedule": "0 4 * * *"}), queue, lambda: next(moments)).run()
    )
    try:
        pending = await asyncio.wait_for(queue.take(), 5)  # 0.1 s to 04:00 UTC
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

    queue = RunQueue()
    scheduler = asyncio.create_task(Scheduler(_policy(tmp_path, {"schedule": "0 4 * * *"}), queue, clock).run())
    try:
        first = await asyncio.wait_for(queue.take(), 5)
        assert first.triggers == {"schedule"} and reads >= 3  # fired at the reading of 04:00:00.01, not before
        queue.done()

        async def settled() -> bool:  # it read the stepped-back clock and waits for tomorrow, or fired again
            return reads >= 4 or queue.pending

        await async_wait_for("the scheduler to read the clock again", settled, 5)
        assert not queue.pending
    finally:
        scheduler.cancel()
        await asyncio.gather(scheduler, return_exceptions=True)


# ---- Triggers: the monitor's and the watches' decisions (no I/O: file systems, policy and clock are given) ------

POLICY = {"thresholds": {"highPercent": 80, "lowPercent": 60}}


def _triggers() -> Triggers:
    return Triggers(RunQueue(), TargetBackoff())


async def _taken(triggers: Triggers) -> set[str] | None:
    """The triggers of the run queued (taken and done), or None when nothing is queued."""
    if not triggers.queue.pending:
        return None
    pending = await triggers.queue.take()
    triggers.queue.done()
    return set(pending.triggers)


def _check(triggers: Triggers, policy: PolicyHolder, used: float, now: float, *, runtime_up: bool = True) -> bool:
    return triggers.check([_fs(used)], policy, runtime_up=runtime_up, runtime=None, now=now)


def _outcome(removed: bool, errors: tuple[str, ...] = ()) -> RunOutcome:
    rows = ({"outcome": "done", "kind": "remove-image", "id": "sha256:a", "bytes": 1},) if removed else ()
    return RunOutcome("watermark", NOW, 0.1, False, None, errors, None, rows)


async def test_the_watermark_fires_above_high_and_waits_after_a_run_that_freed_nothing(tmp_path: Path) -> None:
    triggers, policy = _triggers(), _policy(tmp_path, POLICY)
    assert not _check(triggers, policy, 79, now=0) and await _taken(triggers) is None
    _check(triggers, policy, 81, now=1)
    assert await _taken(triggers) == {"watermark"}
    rules = policy.applied
    triggers.after_run(PendingRun(frozenset({"watermark"})), _outcome(removed=False), [_fs(81)], rules, now=2)
    _check(triggers, policy, 81, now=2 + RETRY_SECONDS - 1)
    assert await _taken(triggers) is None  # never a loop of empty runs
    _check(triggers, policy, 81, now=2 + RETRY_SECONDS)
    assert await _taken(triggers) == {"watermark"}
    triggers.after_run(PendingRun(frozenset({"watermark"})), _outcome(removed=True), [_fs(81)], rules, now=40)
    _check(triggers, policy, 81, now=41)
    assert await _taken(triggers) == {"watermark"}  # it freed something: the next one at once
    triggers.after_run(PendingRun(frozenset({"watermark"})), _outcome(removed=False), [_fs(81)], rules, now=42)
    policy.observe({"metadata": {"name": "n", "generation": 2},
                    "spec": {"nodeName": "n", "policy": {**POLICY, "dryRun": True}}})  # fmt: skip
    triggers.policy_changed()
    _check(triggers, policy, 81, now=43)
    assert await _taken(triggers) == {"watermark"}  # a new policy may act where the last could not


async def test_the_watermark_never_fires_while_a_run_is_queued_or_going_on(tmp_path: Path) -> None:
    triggers, policy = _triggers(), _policy(tmp_path, POLICY)
    triggers.queue.add("schedule")
    _check(triggers, policy, 90, now=0)
    assert await triggers.queue.take() == PendingRun(frozenset({"schedule"}))
    _check(triggers, policy, 90, now=1)  # running
    assert not triggers.queue.pending
    triggers.queue.done()


@pytest.mark.parametrize(
    ("policy", "settled", "runtime_up"),
    [({**POLICY, "paused": True}, True, True), (POLICY, False, True), (POLICY, True, False)],
    ids=["paused", "not-listed-yet", "containerd-down"],
)
async def test_nothing_fires_while_paused_unlisted_or_without_containerd(
    tmp_path: Path, policy: dict[str, Any], settled: bool, runtime_up: bool
) -> None:
    holder = _policy(tmp_path, policy) if settled else PolicyHolder("n", AgentStore(tmp_path / "state"))
    triggers = _triggers()
    triggers.node([{"type": "DiskPressure", "status": "True"}])  # the watch's trigger is queued regardless
    assert await _taken(triggers) == {"pressure"}
    _check(triggers, holder, 99, now=0, runtime_up=runtime_up)
    assert await _taken(triggers) is None


async def test_disk_pressure_fires_when_it_turns_true_and_again_only_while_unmet(tmp_path: Path) -> None:
    triggers, policy = _triggers(), _policy(tmp_path, POLICY)
    assert triggers.node([{"type": "DiskPressure", "status": "True"}])
    assert not triggers.node([{"type": "DiskPressure", "status": "True"}])  # still True: not again
    assert await _taken(triggers) == {"pressure"}
    rules = policy.applied
    pressure = PendingRun(frozenset({"pressure"}))
    triggers.after_run(pressure, _outcome(removed=True), [_fs(70)], rules, now=10)  # above low: unmet
    _check(triggers, policy, 70, now=10 + RETRY_SECONDS - 1)
    assert await _taken(triggers) is None
    _check(triggers, policy, 70, now=10 + RETRY_SECONDS)
    assert await _taken(triggers) == {"pressure"}
    triggers.after_run(pressure, _outcome(removed=True), [_fs(55)], rules, now=50)  # reached the low watermark
    _check(triggers, policy, 55, now=1000)
    assert await _taken(triggers) is None  # DiskPressure stays True: the kubelet's thresholds are not ours
    assert not triggers.node([{"type": "DiskPressure", "status": "False"}])
    assert triggers.node([{"type": "DiskPressure", "status": "True"}])  # turning True again
    assert await _taken(triggers) == {"pressure"}


async def test_a_run_request_fires_once_and_not_again_after_a_restart() -> None:
    triggers = _triggers()
    assert triggers.request("t1") and not triggers.request("t1")
    assert await triggers.queue.take() == PendingRun(frozenset({"request"}), "t1")
    triggers.queue.done()
    restarted = _triggers()  # a new agent: the token its status.lastRun answered is not asked again
    assert not restarted.request("t1", answered="t1") and not restarted.queue.pending
    assert restarted.request("t2", answered="t1")
    assert not triggers.request(None)


async def test_an_unreachable_target_blocks_until_something_changes_and_ends_below_low(tmp_path: Path) -> None:
    triggers, policy = _triggers(), _policy(tmp_path, POLICY)
    triggers.node([{"type": "DiskPressure", "status": "True"}])
    assert await _taken(triggers) == {"pressure"}
    assert triggers.target.record(5000, "short", policy.held, [_fs(85)], now=0.0)
    runtime = runtime_fingerprint([("c1", "RUNNING")], ["sha256:a"])
    assert not triggers.check([_fs(85)], policy, runtime_up=True, runtime=runtime, now=1)
    assert await _taken(triggers) is None  # reported, not chased
    changed = runtime_fingerprint([("c1", "RUNNING")], ["sha256:a", "sha256:new"])
    assert not triggers.check([_fs(85)], policy, runtime_up=True, runtime=changed, now=2)
    assert triggers.target.history == ["an image arrived"]
    assert await _taken(triggers) == {"watermark", "pressure"}  # both try again
    assert triggers.check([_fs(50)], policy, runtime_up=True, runtime=None, now=3)  # below low: the episode ends
    assert triggers.target.episode is None
    assert not triggers.check([_fs(50)], policy, runtime_up=True, runtime=None, now=4)  # ended once
