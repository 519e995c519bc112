"""When the agent runs. The trigger sources feed one RunQueue: the monitor's disk check (`Triggers.check`: the
high watermark on the projected use (used + what pulls in flight still bring), the fill-rate prediction
(`fillrate.FillPredictor`), a DiskPressure retry, an unreachable target released by `backoff.TargetBackoff`), the
watches (`Triggers.request` for spec.runRequest, `Triggers.node` for the Node's DiskPressure), the cron schedule
(`Scheduler`) and the startup run. Triggers coalesce in the queue; `Triggers.after_run` re-arms them. No I/O: the
agent feeds in the file systems, the runtime's fingerprint, the policy and the monotonic clock (the Scheduler
reads the wall clock it is given)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from node_janitor.agent.backoff import RuntimeFingerprint, TargetBackoff
from node_janitor.agent.fillrate import FillPredictor, projected
from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.report import RunOutcome
from node_janitor.api.nodecleanup import RunTrigger, is_dry_run_request
from node_janitor.api.policy import PolicyRules, Thresholds
from node_janitor.node.inventory import FileSystemEntry

log = logging.getLogger(__name__)

# What lastRun.trigger says when several triggers coalesced into one run: the most specific first.
TRIGGER_ORDER: tuple[RunTrigger, ...] = ("request", "pressure", "watermark", "prediction", "schedule", "startup")
PRESSURE_MARGIN = 0.001
"""A pressure run's high watermark sits this far above the low one (percent): it reclaims to the low watermark
whenever the disk is above it."""
MAX_FOLLOW_UPS = 3
"""Runs in a row that may follow a run whose plan covered its target yet left the disk above the low watermark (the
disk filled while it ran, or removals freed less than measured): each plans again on what is there now."""
RETRY_SECONDS = 30.0
"""After a run that removed nothing and left the disk above its watermark (or a pressure run that left DiskPressure
unmet), how long that trigger waits before it fires again (never a loop of empty runs)."""
SCHEDULE_RECHECK = 60.0
"""Seconds: the longest the scheduler waits without reading the wall clock again (NTP may step it meanwhile)."""


@dataclass(frozen=True)
class PendingRun:
    triggers: frozenset[RunTrigger]
    run_request: str | None = None
    follow_up: bool = False
    """Planned again after a run that fell short of the low watermark it had covered: it aims at the low
    watermark though the disk may be below the high one now (as a pressure run does)."""

    @property
    def dry_run_request(self) -> bool:
        return is_dry_run_request(self.run_request)

    @property
    def trigger(self) -> RunTrigger:
        return next(t for t in TRIGGER_ORDER if t in self.triggers)

    @property
    def pressure(self) -> bool:
        return "pressure" in self.triggers

    @property
    def to_low(self) -> bool:
        """Reclaims down to the low watermark whenever the disk is above it (`pressure_rules`)."""
        return self.pressure or self.follow_up or "prediction" in self.triggers


class RunQueue:
    """Triggers that arrive while a run is going on (or pending) coalesce into one more run. Real run requests
    coalesce into the newest; a dry-run request waits beside them (never replacing a real one) for a run of its
    own."""

    def __init__(self) -> None:
        self._triggers: set[RunTrigger] = set()
        self._run_request: str | None = None
        self._dry_run_request: str | None = None
        self._follow_up = False
        self._wake = asyncio.Event()
        self.running = False

    def add(self, trigger: RunTrigger, run_request: str | None = None, *, follow_up: bool = False) -> None:
        self._triggers.add(trigger)
        self._follow_up = self._follow_up or follow_up
        if run_request is not None:
            if is_dry_run_request(run_request):
                self._dry_run_request = run_request
            else:
                self._run_request = run_request
        self._wake.set()

    @property
    def pending(self) -> bool:
        return bool(self._triggers)

    @property
    def busy(self) -> bool:
        return self.running or self.pending

    async def take(self) -> PendingRun:
        """Wait for a trigger; returns everything pending (and marks a run as going on). A dry-run request
        never rides along a real run: the other triggers (and a real request) run first, the dry-run request
        stays pending for the next."""
        while not self._triggers:
            self._wake.clear()
            await self._wake.wait()
        return self.take_nowait()

    def take_nowait(self) -> PendingRun:
        """`take` when something is pending (IndexError when nothing is)."""
        if not self._triggers:
            raise IndexError("no run is pending")
        if self._run_request is not None or self._dry_run_request is None:
            pending = PendingRun(frozenset(self._triggers), self._run_request, self._follow_up)
            self._run_request, self._follow_up = None, False
            self._triggers = {"request"} if self._dry_run_request is not None else set()
        elif others := self._triggers - {"request"}:
            pending = PendingRun(frozenset(others), follow_up=self._follow_up)
            self._triggers -= others
            self._follow_up = False
        else:
            pending = PendingRun(frozenset(self._triggers), self._dry_run_request)
            self._triggers.clear()
            self._dry_run_request = None
        self.running = True
        return pending

    def done(self) -> None:
        self.running = False


def pressure_rules(rules: PolicyRules) -> PolicyRules:
    """`rules` with the high watermarks just above the low ones: the node's DiskPressure asks for the low
    watermark even when the disk is below the high one (the kubelet's thresholds are not ours). Built without
    validation on purpose (the API's percentages are integers; the planner's are floats)."""
    t = rules.thresholds
    thresholds = t.model_copy(
        update={
            "high_percent": t.low_percent + PRESSURE_MARGIN,
            "inodes_high_percent": t.inodes_low_percent + PRESSURE_MARGIN,
        }
    )
    return rules.model_copy(update={"thresholds": thresholds})


def above(file_systems: Iterable[FileSystemEntry], thresholds: Thresholds, *, low: bool = False) -> bool:
    """Whether a file system is above the high watermark (space or inodes), or with `low`, above the low one."""
    space = thresholds.low_percent if low else thresholds.high_percent
    inodes = thresholds.inodes_low_percent if low else thresholds.inodes_high_percent
    return any(fs.used_percent > space or (fs.inodes > 0 and fs.inodes_used_percent > inodes) for fs in file_systems)


class Triggers:
    """The monitor's and the watches' decisions: which trigger goes into the queue, and when. The unreachable
    target's episode is `target`'s; while it blocks, neither the watermark nor a pressure retry fires."""

    def __init__(self, queue: RunQueue, target: TargetBackoff) -> None:
        self.queue, self.target = queue, target
        self.disk_pressure: bool | None = None
        self.watermark_blocked_until = 0.0  # monotonic: no watermark run before (0: none blocked)
        self.pressure_retry_at: float | None = None  # monotonic: the next pressure run while DiskPressure stays
        self.unguarded_above = False  # above the watermark with no policy to act on (logged once per crossing)
        self.answered_request: str | None = None  # the last spec.runRequest a run answered (or was queued for)
        self.fill = FillPredictor()  # the file systems' fill rates and the prediction trigger's hysteresis

    # ---- the watches ------------------------------------------------------------------------------------

    def request(self, token: str | None, answered: str | None = None) -> bool:
        """The NodeCleanup's run request `token` (api.nodecleanup.requested_run) and the one its status.lastRun
        answered: a token not answered yet queues a run (answered by it, in status.lastRun.runRequest). True when it
        did."""
        if answered and self.answered_request is None:
            self.answered_request = answered
        if not token or token == self.answered_request:
            return False
        self.answered_request = token
        log.info("run requested token=%s dryRun=%s", token, is_dry_run_request(token))
        self.queue.add("request", run_request=token)
        return True

    def node(self, conditions: Iterable[Mapping[str, Any]]) -> bool:
        """The Node's conditions: DiskPressure turning True queues a pressure run. True when it did."""
        pressure = any(c.get("type") == "DiskPressure" and c.get("status") == "True" for c in conditions)
        fired = pressure and not self.disk_pressure
        if fired:
            log.info("node condition DiskPressure=True: reclaiming to the low watermark")
            self.pressure_retry_at = None
            self.queue.add("pressure")
        self.disk_pressure = pressure
        return fired

    def policy_changed(self) -> None:
        """A new policy may act where the last one could not: the watermark fires again at once."""
        self.watermark_blocked_until = 0.0

    # ---- the monitor ------------------------------------------------------------------------------------

    def check(
        self,
        file_systems: list[FileSystemEntry],
        policy: PolicyHolder,
        *,
        runtime_up: bool,
        runtime: RuntimeFingerprint | None,
        now: float,
        pending: int = 0,
    ) -> bool:
        """One monitor tick: the file systems measured now, `runtime` the runtime's fingerprint (only asked for
        while the target blocks), `now` monotonic, `pending` the bytes pulls in flight still bring to the image file
        system (counted as used: the projected use). Returns True when an unreachable target's episode ended (every
        file system below its low watermark again): the caller reports the target reached."""
        rules = policy.applied
        self.fill.observe(file_systems, rules.thresholds, now, pending, removing=self.queue.running)
        file_systems = projected(file_systems, pending)
        if policy.settled and rules.paused:  # measured and reported (/metrics, this log), not acted on
            unguarded = above(file_systems, rules.thresholds)
            if unguarded and not self.unguarded_above:
                log.warning("file system above highPercent=%s, not acting: %s", rules.thresholds.high_percent,
                            policy.describe())  # fmt: skip
            self.unguarded_above = unguarded
        else:
            self.unguarded_above = False
        if rules.paused or not runtime_up:
            return False
        ended = False
        if self.target.episode is not None and not above(file_systems, rules.thresholds, low=True):
            self.target.end()  # the disk is below its low watermark again, whatever freed it
            ended = True
        if self.target.blocked and runtime is not None:
            self.target.note_runtime(runtime)
        if (why := self.target.changed(policy.held, file_systems, runtime, now)) is not None:
            log.info("target was unreachable; %s: trying again", why)
            self.watermark_blocked_until = 0.0
            if self.disk_pressure:
                self.pressure_retry_at = now
        if self.target.blocked:
            return ended  # reported, not chased: nothing changed since a run found nothing more it may remove
        if not above(file_systems, rules.thresholds):
            self.watermark_blocked_until = 0.0
        elif not self.queue.busy and now >= self.watermark_blocked_until:
            log.info("file system above highPercent=%s: reclaiming", rules.thresholds.high_percent)
            self.queue.add("watermark")
        if not self.queue.busy and now >= self.watermark_blocked_until and self.fill.due(rules.thresholds):
            forecast = self.fill.forecast
            assert forecast is not None  # due() says so only with one
            log.info(
                "image file system filling at %.0f bytes/s, %.1f%% projected: evictionPercent=%s in %.1f s: "
                "reclaiming ahead",
                forecast.rate,
                forecast.used_percent,
                rules.thresholds.eviction_percent,
                forecast.seconds_to_eviction,
            )
            self.queue.add("prediction")
        if self.disk_pressure and self.pressure_retry_at is not None and now >= self.pressure_retry_at:
            self.pressure_retry_at = None
            self.queue.add("pressure")
        return ended

    def after_run(
        self,
        pending: PendingRun,
        outcome: RunOutcome,
        file_systems: list[FileSystemEntry],
        rules: PolicyRules,
        now: float,
    ) -> None:
        """Re-arming after a run (`file_systems` measured right after it): one that freed nothing and left the disk
        above its watermark waits RETRY_SECONDS before the next watermark run; a pressure run that left the disk
        above its low watermark (or had errors) is tried again after RETRY_SECONDS, unless the target blocks. The
        run's duration is what the prediction expects a run to take."""
        self.fill.note_run(outcome.duration_seconds)
        if above(file_systems, rules.thresholds) and not outcome.removed_something:
            self.watermark_blocked_until = now + RETRY_SECONDS
        if pending.pressure:
            unmet = above(file_systems, rules.thresholds, low=True) or bool(outcome.all_errors)
            self.pressure_retry_at = now + RETRY_SECONDS if unmet and not self.target.blocked else None


class Scheduler:
    """spec.policy.schedule: fires once at each minute the cron schedule names, by the wall clock (UTC) `clock`.
    The wait itself is monotonic and reads the wall clock again at least every SCHEDULE_RECHECK seconds, so a clock
    that NTP steps neither delays a slot by the step nor fires one twice (a slot fired is never aimed at again)."""

    def __init__(self, policy: PolicyHolder, queue: RunQueue, clock: Callable[[], datetime]) -> None:
        self.policy, self.queue, self.clock = policy, queue, clock
        self._changed = asyncio.Event()

    def policy_changed(self) -> None:
        """Aim again with the policy as it is now."""
        self._changed.set()

    async def run(self) -> None:
        slot: datetime | None = None  # the minute aimed at, kept until it fires or the policy changes
        fired: datetime | None = None
        while True:
            self._changed.clear()
            schedule = self.policy.applied.cron_schedule
            if schedule is None:
                slot = None
                await self._changed.wait()
                continue
            now = self.clock()
            if slot is None:
                slot = schedule.next_after(max(now, fired) if fired is not None else now)
            remaining = (slot - now).total_seconds()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, SCHEDULE_RECHECK))
                if self._changed.is_set():
                    slot = None  # aim again with the new policy
                continue
            fired, slot = slot, None
            log.info("schedule %r fired", self.policy.held.rules.schedule)
            self.queue.add("schedule")
