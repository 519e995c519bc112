"""The runner (`agent.runner`) with a scripted engine and an in-memory apiserver: one run at a time with what the
queue coalesced, SIGTERM stops it after the removal in flight, a paused policy skips all but a request, the
follow-up rule (at most MAX_FOLLOW_UPS) and the unreachable target reported once per episode."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.agent.backoff import RuntimeFingerprint, TargetBackoff
from node_janitor.agent.metrics import AgentMetrics
from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.reporter import Reporter
from node_janitor.agent.runner import Runner
from node_janitor.agent.runtime_link import RuntimeLink
from node_janitor.agent.store import AgentStore
from node_janitor.agent.triggers import MAX_FOLLOW_UPS, PendingRun, RunQueue, Triggers
from node_janitor.api.policy import PolicyRules
from node_janitor.node.engine import ProtectedImages, PruneReport
from node_janitor.node.execute import ActionResult, ExecutionResult, Outcome
from node_janitor.node.inventory import FileSystemEntry, Inventory
from node_janitor.node.logs import LogActionResult
from node_janitor.node.plan import Action, ActionKind, Plan, Reason, Target
from node_janitor.runtime import RuntimeClientError
from support.agentbed import MemoryKube
from support.poll import async_wait_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SIZE = 1000 * 4096


def _fs(used_percent: float) -> FileSystemEntry:
    used = int(SIZE * used_percent / 100)
    return FileSystemEntry("imagefs", "/x", SIZE, used, SIZE - used)


def _action(n: int) -> Action:
    return Action(ActionKind.REMOVE_IMAGE, f"sha256:{n}", Reason.LEAST_RECENTLY_USED, bytes=100)


def _report(*, actions: int = 1, target: int = 0, short: int = 0, removed: bool = True) -> PruneReport:
    """A run's report: `actions` planned (all done if `removed`) against a `target`, `short` bytes left above low."""
    planned = tuple(_action(n) for n in range(actions))
    results = [ActionResult(a, Outcome.DONE) for a in planned] if removed else []
    return PruneReport(
        Plan(planned, Target(bytes=target)), False, Inventory(taken_at=NOW, file_systems=(_fs(85),)),
        ExecutionResult(results=results), short={"imagefs": short} if short else {},
    )  # fmt: skip


class Engine:
    """Scripted `run_once`: each call pops the next report (or raises it), sending its actions one by one the way
    the executor does: `should_stop` asked before each, `on_result` after. `during(n)` runs after action n."""

    def __init__(self, *reports: PruneReport | Exception) -> None:
        self.reports = list(reports)
        self.calls: list[PolicyRules] = []
        self.headrooms: list[int] = []
        self.sent: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()
        self.release.set()
        self.during: Callable[[int], None] = lambda n: None

    async def run_once(
        self,
        rules: PolicyRules,
        *,
        dry_run: bool,
        protected_images: ProtectedImages,
        on_result: Callable[[ActionResult], None],
        on_log_result: Callable[[LogActionResult], None],
        should_stop: Callable[[], bool],
        current_rules: Callable[[], PolicyRules],
        headroom: int = 0,
    ) -> PruneReport:
        self.calls.append(rules)
        self.headrooms.append(headroom)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            report = self.reports.pop(0)
            if isinstance(report, Exception):
                raise report
            for n, action in enumerate(report.plan.actions):
                if should_stop():
                    break
                self.sent.append(action.id)
                self.during(n)
                on_result(ActionResult(action, Outcome.DONE))
            return report
        finally:
            self.running -= 1


class Bed:
    """A Runner wired to real parts (queue, triggers, target backoff, reporter on a MemoryKube) and `engine`."""

    def __init__(self, tmp_path: Path, engine: Engine, policy: dict[str, Any] | None = None) -> None:
        store = AgentStore(tmp_path / "state")
        self.policy = PolicyHolder("n", store)
        self.policy.observe({"metadata": {"name": "n", "generation": 1},
                             "spec": {"nodeName": "n", "policy": policy or {}}})  # fmt: skip
        self.kube, self.engine, self.used = MemoryKube(), engine, 85.0
        self.queue, self.target = RunQueue(), TargetBackoff()
        self.triggers = Triggers(self.queue, self.target)
        self.reporter = Reporter("n", self.kube, store, self.policy, AgentMetrics(), clock=lambda: NOW,
                                 runtime_error=lambda: None, rotator_failure=lambda: None)  # fmt: skip
        self.link = RuntimeLink("unused.sock", "k8s.io")
        self.link.up.set()
        self.stopping = asyncio.Event()
        self.holds: list[bool] = []
        self.runner = Runner(
            policy=self.policy, queue=self.queue, triggers=self.triggers, target=self.target, reporter=self.reporter,
            link=self.link, engine=lambda: engine, clock=lambda: NOW, stopping=self.stopping, settled=_nothing,
            hold_rotator=self._hold, file_systems=lambda: [_fs(self.used)], runtime_fingerprint=_no_runtime,
            refresh_usage=_nothing,
        )  # fmt: skip

    async def _hold(self, hold: bool) -> None:
        self.holds.append(hold)

    def events(self) -> list[str]:
        return [e["reason"] for e in self.reporter.events]

    def errors(self) -> list[str]:
        assert self.reporter.last_run is not None
        return list(self.reporter.last_run["errors"])


async def _nothing() -> None:
    pass


async def _no_runtime() -> RuntimeFingerprint | None:
    return None


async def test_sigterm_stops_the_run_after_the_removal_in_flight(tmp_path: Path) -> None:
    engine = Engine(_report(actions=3))
    bed = Bed(tmp_path, engine)
    engine.during = lambda n: bed.stopping.set() if n == 1 else None  # SIGTERM while the second removal is in flight
    await bed.runner.run(PendingRun(frozenset({"watermark"})))
    assert engine.sent == ["sha256:0", "sha256:1"]  # nothing more sent
    assert bed.errors() == ["interrupted by SIGTERM after the removal in flight"]
    assert bed.holds == [True]  # the rotator is stopped for the run


async def test_runs_never_overlap_and_triggers_meanwhile_coalesce_into_one_more(tmp_path: Path) -> None:
    engine = Engine(_report(), _report())
    engine.release.clear()
    bed = Bed(tmp_path, engine)
    loop = asyncio.create_task(bed.runner.loop())
    try:
        bed.queue.add("startup")
        await async_wait_for("the first run to start", lambda: _true(engine.running == 1), 5)
        bed.queue.add("watermark")
        bed.queue.add("schedule")
        bed.queue.add("request", run_request="t1")
        engine.release.set()
        await async_wait_for("both runs", lambda: _true(len(engine.calls) == 2 and not bed.queue.busy), 5)
        assert engine.most_at_once == 1
        assert bed.reporter.last_run is not None and bed.reporter.last_run["trigger"] == "request"
        assert bed.reporter.last_run["runRequest"] == "t1"
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value


async def test_a_paused_policy_skips_every_run_but_a_request(tmp_path: Path) -> None:
    engine = Engine(_report(actions=0))
    bed = Bed(tmp_path, engine, {"paused": True})
    await bed.runner.run(PendingRun(frozenset({"watermark"})))
    assert not engine.calls and bed.reporter.last_run is None
    await bed.runner.run(PendingRun(frozenset({"request"}), "t1"))  # answered (`node-janitor run --wait`)
    assert len(engine.calls) == 1 and bed.reporter.last_run is not None and engine.calls[0].paused


async def test_containerd_going_away_mid_run_is_an_error_and_takes_the_link_down(tmp_path: Path) -> None:
    bed = Bed(tmp_path, Engine(RuntimeClientError("socket closed")))
    bed.link.error = None
    await bed.runner.run(PendingRun(frozenset({"watermark"})))
    assert bed.errors() == ["containerd: socket closed"] and bed.link.error == "socket closed"
    assert not bed.link.up.is_set() and bed.events() == ["CleanupFailed"]


async def test_a_run_that_covered_its_target_and_fell_short_is_followed_up_at_most_max_times(tmp_path: Path) -> None:
    covered = _report(target=100, short=50)  # planned 100 of 100, removed it, still 50 above low
    engine = Engine(*[covered] * (MAX_FOLLOW_UPS + 1))
    bed = Bed(tmp_path, engine)
    pending = PendingRun(frozenset({"request"}), "t1")
    for n in range(MAX_FOLLOW_UPS):
        await bed.runner.run(pending)
        pending = await bed.queue.take()
        bed.queue.done()
        assert pending == PendingRun(frozenset({"watermark"}), follow_up=True) and pending.to_low
        assert bed.runner.follow_ups == n + 1 and bed.target.episode is None
    assert engine.calls[1].thresholds.high_percent < engine.calls[0].thresholds.high_percent  # aims at low
    await bed.runner.run(pending)  # the last one falls short too: now the target rules apply
    assert not bed.queue.pending and bed.runner.follow_ups == 0
    assert bed.target.blocked and bed.events().count("TargetUnreachable") == 1


async def test_an_unreachable_target_is_reported_once_per_episode(tmp_path: Path) -> None:
    stuck = _report(actions=1, target=500, short=400)  # planned 100 of 500: nothing more it may remove
    engine = Engine(stuck, stuck, _report(actions=0))
    bed = Bed(tmp_path, engine)
    await bed.runner.run(PendingRun(frozenset({"watermark"})))
    assert bed.target.blocked and bed.events() == ["CleanupDone", "TargetUnreachable"]
    ready = bed.reporter.conditions.get("TargetReached")
    assert ready is not None and (ready.status, ready.reason) == ("False", "TargetUnreachable")
    await bed.runner.run(PendingRun(frozenset({"pressure"})))  # the episode goes on: no second Event
    assert bed.events().count("TargetUnreachable") == 1
    assert bed.triggers.pressure_retry_at is None  # blocked: no pressure retry either
    bed.used = 50.0
    await bed.runner.run(PendingRun(frozenset({"schedule"})))  # reached (no target): the episode ends
    ready = bed.reporter.conditions.get("TargetReached")
    assert bed.target.episode is None and ready is not None and ready.status == "True"


async def test_a_predicted_run_reclaims_to_low_and_leaves_room_for_what_lands_while_it_runs(tmp_path: Path) -> None:
    engine = Engine(_report(), _report())
    bed = Bed(tmp_path, engine, {"thresholds": {"highPercent": 75, "lowPercent": 60}})
    thresholds = bed.policy.applied.thresholds
    for i in range(8):  # 1% of the disk a second, sampled every quarter second
        bed.triggers.fill.observe([_fs(50 + i * 0.25)], thresholds, 100.0 + i * 0.25)
    await bed.runner.run(PendingRun(frozenset({"prediction"})))
    expected = bed.triggers.fill.headroom(thresholds)
    assert expected > 0 and engine.headrooms == [expected]
    assert engine.calls[0].thresholds.high_percent < 61  # to the low watermark, as a pressure run
    await bed.runner.run(PendingRun(frozenset({"watermark"})))
    assert engine.headrooms[-1] == 0  # a watermark run is no forecast: the pulls in flight only (the engine's)
