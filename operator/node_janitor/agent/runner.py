"""The agent's runs: one at a time, each taking everything queued (`triggers.RunQueue` coalesces), running the
engine (`NodeEngine.run_once`, `node-janitor prune`'s code path) with the policy held, and stopping on SIGTERM:
nothing more is sent after the removal in flight (RunInterrupted). After a run: the follow-up rule (a run whose
plan covered its target and fell short is followed by another, at most MAX_FOLLOW_UPS in a row), the
unreachable-target bookkeeping (`backoff.TargetBackoff`: reported once, retried when something changes), the
triggers re-armed, and the outcome handed to the reporter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Protocol

from node_janitor.agent.backoff import RuntimeFingerprint, TargetBackoff
from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.report import RunOutcome
from node_janitor.agent.reporter import Reporter
from node_janitor.agent.runtime_link import RuntimeLink
from node_janitor.agent.triggers import MAX_FOLLOW_UPS, PendingRun, RunQueue, Triggers, pressure_rules
from node_janitor.api.nodecleanup import RunTrigger
from node_janitor.api.policy import PolicyRules
from node_janitor.api.units import format_bytes
from node_janitor.node.engine import NodeEngine, ProtectedImages, PruneReport
from node_janitor.node.execute import ActionResult
from node_janitor.node.inventory import FileSystemEntry
from node_janitor.node.logs import LogActionResult
from node_janitor.runtime import RuntimeClientError

log = logging.getLogger(__name__)

STOP_GRACE = 3.0
"""On SIGTERM, how long the removal in flight may take before the run is cancelled."""


class RunEngine(Protocol):
    """What a run calls (`node.engine.NodeEngine` is the real one)."""

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
        headroom: int,
    ) -> PruneReport: ...


def _satisfies_run_engine(engine: NodeEngine) -> RunEngine:
    return engine  # mypy checks that NodeEngine is a RunEngine


class RunInterrupted(Exception):
    """SIGTERM arrived: the run stops after the removal in flight."""


class Runner:
    """Runs what the queue holds. Its ports: `engine()` the engine of the current containerd connection,
    `hold_rotator(hold)` syncs the log rotator (stopped during a run), `file_systems()` measures them now,
    `runtime_fingerprint()` asks the runtime, `refresh_usage()` measures the status's df numbers, `settled()`
    waits until the policy may be acted on, `stopping` is set by SIGTERM."""

    def __init__(
        self,
        *,
        policy: PolicyHolder,
        queue: RunQueue,
        triggers: Triggers,
        target: TargetBackoff,
        reporter: Reporter,
        link: RuntimeLink,
        engine: Callable[[], RunEngine],
        clock: Callable[[], datetime],
        stopping: asyncio.Event,
        pod_images: Callable[[], Iterable[str]] = tuple,
        settled: Callable[[], Awaitable[None]],
        hold_rotator: Callable[[bool], Awaitable[None]],
        file_systems: Callable[[], list[FileSystemEntry]],
        runtime_fingerprint: Callable[[], Awaitable[RuntimeFingerprint | None]],
        refresh_usage: Callable[[], Awaitable[None]],
    ) -> None:
        self.policy, self.queue, self.triggers, self.target = policy, queue, triggers, target
        self.reporter, self.link, self.engine, self.clock = reporter, link, engine, clock
        self.stopping, self.settled, self.hold_rotator = stopping, settled, hold_rotator
        self.pod_images = pod_images
        """The images of the pods bound to this node (`agent.pods`): protected like the operator's."""
        self.file_systems, self.runtime_fingerprint, self.refresh_usage = (
            file_systems,
            runtime_fingerprint,
            refresh_usage,
        )
        self.follow_ups = 0  # runs in a row planned again after one that covered its target and fell short
        self.task: asyncio.Task[None] | None = None  # the run going on

    async def loop(self) -> None:
        # No run acts on a saved policy while a fresh one may be one LIST away: the admin may have added a keep
        # pattern or set dryRun while the agent was away. Triggers queue (and coalesce) meanwhile; after
        # INITIAL_LIST_WAIT without an answer from the apiserver, the saved policy it is.
        await self.settled()
        while True:
            pending = await self.queue.take()
            try:
                await self.link.up.wait()  # a run needs containerd; triggers wait for it to come back
                self.task = asyncio.create_task(self.run(pending))
                await self.task
            finally:
                self.task = None
                self.queue.done()
            await self.hold_rotator(False)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """At shutdown (`stopping` set): the run going on may finish its removal in flight for `grace` seconds,
        then it is cancelled."""
        run = self.task
        if run is not None and not run.done():
            try:
                await asyncio.wait_for(asyncio.shield(run), grace)
            except (TimeoutError, Exception):
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run

    def on_result(self, result: ActionResult) -> None:
        self.reporter.count(str(result.action.kind), str(result.outcome), str(result.action.reason))
        if self.stopping.is_set():
            raise RunInterrupted

    def on_log_result(self, result: LogActionResult) -> None:
        # Counted by the shared janitor's own callback (the rotator's too); this one only stops.
        if self.stopping.is_set():
            raise RunInterrupted

    async def run(self, pending: PendingRun) -> None:
        held, applied = self.policy.held, self.policy.applied
        trigger: RunTrigger = pending.trigger
        if applied.paused and pending.run_request is None:
            log.info("run skipped trigger=%s: %s", trigger, "paused" if held.valid else self.policy.describe())
            return
        # A request under a paused policy is still answered (`node-janitor run --wait` waits for it): the engine
        # does nothing at all under paused, so the answer is a run with no action.
        rules = pressure_rules(applied) if pending.to_low else applied
        dry_run = applied.dry_run or pending.dry_run_request
        await self.hold_rotator(True)
        started, clock = self.clock(), time.monotonic()
        log.info(
            "run start trigger=%s triggers=%s dryRun=%s generation=%s",
            trigger,
            ",".join(sorted(pending.triggers)),
            dry_run,
            held.generation,
        )
        report, errors = None, []
        try:
            report = await self.engine().run_once(
                rules,
                dry_run=dry_run,
                protected_images=lambda: (*self.policy.held.protected_images, *self.pod_images()),
                on_result=self.on_result,
                on_log_result=self.on_log_result,
                should_stop=self.stopping.is_set,  # nothing more is sent once SIGTERM arrives
                current_rules=lambda: self.policy.applied,  # paused, dryRun, keep, logs.enabled: before each action
                headroom=self.headroom(pending, applied),
            )
        except RunInterrupted:
            errors.append("interrupted by SIGTERM after the removal in flight")
        except RuntimeClientError as exc:
            errors.append(f"containerd: {exc}")
            await self.link.down(str(exc))
        except asyncio.CancelledError:
            errors.append("cancelled at shutdown")
            raise
        except Exception as exc:  # a bug must not kill the agent: report it
            log.exception("run failed")
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            outcome = RunOutcome.of(
                trigger, started, time.monotonic() - clock, dry_run, report, errors, pending.run_request
            )
            self.finish(outcome, pending)
        if self.target.blocked and (runtime := await self.runtime_fingerprint()) is not None:
            self.target.note_runtime(runtime)  # what a change is measured against: the runtime right after the run
        await self.refresh_usage()

    def headroom(self, pending: PendingRun, rules: PolicyRules) -> int:
        """A predicted run leaves room for what lands while it runs (the fill rate's bytes); other runs count the
        pulls in flight only (the engine's inventory): a watermark run is no forecast."""
        return self.triggers.fill.headroom(rules.thresholds) if "prediction" in pending.triggers else 0

    def finish(self, outcome: RunOutcome, pending: PendingRun, now: float | None = None) -> None:
        """A run ended (`now`: monotonic). Re-arming: a run that freed nothing and left the disk above its
        watermark waits before the next try; a run that could remove nothing more (no error, still above the low
        watermark) is reported once and not tried again until something changes (`TargetBackoff`); a run whose
        plan covered its target and fell short anyway is followed by another (`follow_up`)."""
        self.reporter.record_run(outcome)
        file_systems = self.file_systems()
        rules = self.policy.applied
        now = time.monotonic() if now is None else now
        report = outcome.report
        if self.follow_up(outcome):
            pass  # not unreachable: another run plans again on what is there now
        elif report is not None and not outcome.dry_run and not outcome.all_errors and not report.paused:
            short = report.short_bytes
            message = ""
            if short:
                where = ", ".join(f"{name} {format_bytes(n)}" for name, n in sorted(report.short.items()) if n)
                message = (
                    f"{outcome.trigger} run left {format_bytes(short)} above the low watermark ({where}): nothing "
                    "more may be removed (what is left is in use, protected, or logs within their own rules); next "
                    "try when the policy, the disk's usage or the runtime's containers or images change"
                )
            eligible = report.next_eligible
            eligible_in = (eligible - self.clock()).total_seconds() + 1.0 if eligible is not None else None
            if self.target.record(short, message, self.policy.held, file_systems, now, eligible_in):
                self.reporter.target_unreachable(message)
            reached = "the last run reached its target" if report.short else "no file system was above its watermark"
            self.reporter.note_target(short, message or reached)
        self.triggers.after_run(pending, outcome, file_systems, rules, now)
        self.reporter.save()
        self.reporter.changed()

    def follow_up(self, outcome: RunOutcome) -> bool:
        """A run whose plan covered the image file system's way down to the low watermark, that removed something
        and still left it above: the disk filled while it ran (a pod writing, an image pulled), or the removals
        freed less than measured. Something more may well be removable: that is no unreachable target, so another
        run plans again on what is there now, at most MAX_FOLLOW_UPS in a row (then the target rules apply).
        True when it queued one."""
        report = outcome.report
        if (
            report is None
            or outcome.dry_run
            or outcome.all_errors
            or not report.short.get("imagefs")
            or not (report.plan.target.under_pressure and report.plan.reaches_target)
            or not outcome.removed_something
            or self.follow_ups >= MAX_FOLLOW_UPS
        ):
            self.follow_ups = 0
            return False
        self.follow_ups += 1
        log.info(
            "%s run covered its target but left %s above the low watermark (the disk filled meanwhile, or freed "
            "less than measured): planning again (%d of %d)",
            outcome.trigger,
            format_bytes(report.short["imagefs"]),
            self.follow_ups,
            MAX_FOLLOW_UPS,
        )
        self.queue.add("watermark" if outcome.trigger == "request" else outcome.trigger, follow_up=True)
        return True
