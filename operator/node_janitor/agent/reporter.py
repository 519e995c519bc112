"""What the agent says: its NodeCleanup's status (conditions, usage, lastRun, heartbeat; sent when something
changed and on the heartbeat, with its 404/403/422 handling), the Events on its Node, and the run metrics. Saved
to the state dir too, so a restarted agent starts from what it last reported."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from node_janitor.agent.events import EventRecorder, is_transient
from node_janitor.agent.kube import NODE_CLEANUPS, AgentKube, KubeError
from node_janitor.agent.metrics import AgentMetrics, share_out
from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.report import (
    MAX_MESSAGE,
    ConditionBook,
    RunOutcome,
    build_file_systems,
    build_last_run,
    build_usage_status,
    run_event,
    target_unreachable_event,
)
from node_janitor.agent.status_gate import StatusGate
from node_janitor.agent.store import AgentStore
from node_janitor.node.inventory import FileSystemEntry
from node_janitor.node.usage import ROW_TYPES, DiskReport

log = logging.getLogger(__name__)

EVENT_NAMESPACE = "default"  # where the kubelet puts Node events too
STATUS_COALESCE = 30.0
"""At most one status write per this many seconds for what is not urgent (`status_gate`)."""
STATUS_HEARTBEAT = 300.0
"""The status heartbeat when the agent's Lease is renewed (its liveness signal)."""


class Reporter:
    """The status, the Events and the run metrics of one agent. `runtime_error` says why containerd is unreachable
    (None: it answers); `rotator_failure` the log rotator's failures in a row and the last error (None: healthy)."""

    def __init__(
        self,
        node_name: str,
        kube: AgentKube,
        store: AgentStore,
        policy: PolicyHolder,
        metrics: AgentMetrics,
        *,
        clock: Callable[[], datetime],
        runtime_error: Callable[[], str | None],
        rotator_failure: Callable[[], tuple[int, str] | None],
    ) -> None:
        self.node_name, self.kube, self.store, self.policy, self.metrics = node_name, kube, store, policy, metrics
        self.clock, self.runtime_error, self.rotator_failure = clock, runtime_error, rotator_failure
        self.conditions = ConditionBook()
        self.usage: dict[str, Any] = {}
        self.last_run: dict[str, Any] | None = None
        self.last_outcome: RunOutcome | None = None
        self.recorder = EventRecorder(
            kube,
            EVENT_NAMESPACE,
            on_result=lambda reason, result: metrics.events.labels(reason, result).inc(),
            on_error=metrics.errors.labels("apiserver").inc,
        )
        self.events = self.recorder.pending  # waiting for the apiserver (rate-limited, aggregated when sent)
        self.node_uid: str | None = None
        self.status_refused: str | None = None
        self.dirty = asyncio.Event()
        self.gate = StatusGate(coalesce=STATUS_COALESCE, heartbeat=STATUS_HEARTBEAT)
        status = store.load_status()
        if status:
            self.last_run = status.get("lastRun")
            self.conditions = ConditionBook(status.get("conditions") or [])
            self.usage = {k: v for k, v in status.items() if k not in ("lastRun", "conditions")}

    def changed(self) -> None:
        """Something worth sending: the reporter loop sends the status soon."""
        self.dirty.set()

    def adopt(self, status: dict[str, Any]) -> None:
        """The NodeCleanup's status as listed: its conditions are kept when the agent has none of its own (their
        transition times stay)."""
        if not self.conditions.to_status() and status.get("conditions"):
            self.conditions = ConditionBook(status["conditions"])

    # ---- what happened ----------------------------------------------------------------------------------

    def record_run(self, outcome: RunOutcome) -> None:
        """A finished run: its metrics, its log lines, status.lastRun and its Event."""
        m = self.metrics
        m.runs.labels(outcome.trigger, str(outcome.dry_run).lower()).inc()
        m.run_duration.observe(outcome.duration_seconds)
        m.last_run_timestamp.set(time.time())
        m.last_run_reclaimed.set(outcome.reclaimed_bytes)
        m.last_run_planned.set(outcome.planned_bytes)
        self._count_runtime_reclaimed(outcome)
        if outcome.all_errors:
            m.errors.labels("run").inc(len(outcome.all_errors))
        log.info(
            "run done trigger=%s dryRun=%s actions=%d planned_bytes=%d reclaimed_bytes=%d errors=%d seconds=%.2f",
            outcome.trigger,
            outcome.dry_run,
            len(outcome.rows if outcome.dry_run else outcome.done),
            outcome.planned_bytes,
            outcome.reclaimed_bytes,
            len(outcome.all_errors),
            outcome.duration_seconds,
        )
        for error in outcome.all_errors:
            log.warning("run error trigger=%s: %s", outcome.trigger, error)
        for warning in outcome.report.warnings if outcome.report else ():
            log.warning("run warning trigger=%s: %s", outcome.trigger, warning)
        self.last_outcome = outcome
        self.last_run = build_last_run(outcome)
        event = run_event(outcome, self.node_name, self.node_uid, self.clock())
        if event is not None:
            self.recorder.record(event)

    def count(self, kind: str, outcome: str, reason: str, freed: int = 0) -> None:
        """One action of a run or of the log rotator (`node_janitor_actions_total`); `freed`: the bytes it freed,
        measured (a log action's; the runtime's actions are measured together, at the end of their run)."""
        self.metrics.actions.labels(kind, outcome, reason).inc()
        if outcome == "done" and freed > 0:
            self.metrics.reclaimed_bytes.labels(kind).inc(freed)

    def _count_runtime_reclaimed(self, outcome: RunOutcome) -> None:
        """The image file system's measured gain of a run (containerd frees blobs and snapshots in its GC, for
        every action at once), into `node_janitor_reclaimed_bytes_total` by kind, in proportion to the planned
        sizes of the runtime actions done; log actions were counted one by one."""
        execution = outcome.report.execution if outcome.report is not None and not outcome.dry_run else None
        if execution is None:
            return
        planned: dict[str, int] = {}
        for result in execution.results:
            if str(result.outcome) == "done":
                kind = str(result.action.kind)
                planned[kind] = planned.get(kind, 0) + max(0, result.action.bytes)
        for kind, freed in share_out(execution.reclaimed_bytes, planned).items():
            self.metrics.reclaimed_bytes.labels(kind).inc(freed)

    def target_unreachable(self, message: str) -> None:
        """The Event of a new episode of an unreachable target."""
        self.recorder.record(target_unreachable_event(message, self.node_name, self.node_uid, self.clock()))
        log.warning("target unreachable: %s", message)

    def note_target(self, short: int, message: str) -> None:
        """The TargetReached condition and the short-bytes gauge."""
        self.metrics.target_short.set(short)
        reason = "TargetUnreachable" if short else "Reached"
        self.conditions.set("TargetReached", not short, reason, message, self.policy.held.generation, self.clock())
        self.dirty.set()

    def measured(self, report: DiskReport) -> None:
        """The df numbers, measured now."""
        self.usage.update(build_usage_status(report))
        self.metrics.observe_reclaimable({name: report.rows[name].reclaimable for name in ROW_TYPES})

    def measured_file_systems(self, file_systems: list[FileSystemEntry]) -> None:
        """Only the file systems could be measured (containerd away): the last known ones stay if none."""
        self.usage["fileSystems"] = build_file_systems(file_systems) or self.usage.get("fileSystems", [])

    # ---- the status ---------------------------------------------------------------------------------------

    def update_conditions(self) -> None:
        now, held = self.clock(), self.policy.held
        generation, book, rules = held.generation, self.conditions, self.policy.applied
        runtime_error = self.runtime_error()
        if held.spec_error:
            book.set("Ready", False, "InvalidSpec", f"paused: {held.spec_error}", generation, now)
        elif runtime_error is not None:
            book.set("Ready", False, "RuntimeUnavailable", f"containerd unreachable: {runtime_error}", generation, now)
        elif rules.paused and not (self.policy.settled and held.valid):
            book.set("Ready", True, "Paused", self.policy.describe(), generation, now)
        elif rules.paused:
            book.set(
                "Ready", True, "Paused", f"spec generation {generation} is paused: nothing is removed", generation, now
            )
        else:
            mode = " (dry run: nothing is removed)" if rules.dry_run else ""
            book.set("Ready", True, "Applying", f"applying spec generation {generation}{mode}", generation, now)
        last_errors = self.last_outcome.all_errors if self.last_outcome else []
        rotator = self.rotator_failure()
        if runtime_error is not None:
            book.set(
                "Degraded", True, "RuntimeUnavailable", f"containerd unreachable: {runtime_error}", generation, now
            )
        elif last_errors:
            book.set(
                "Degraded",
                True,
                "RunErrors",
                f"last run: {len(last_errors)} error(s): {last_errors[0]}",
                generation,
                now,
            )
        elif rotator is not None:
            failures, error = rotator
            book.set(
                "Degraded",
                True,
                "LogRotatorFailed",
                f"the log rotator failed {failures} time(s) in a row, restarted with backoff: {error}",
                generation,
                now,
            )
        elif self.status_refused is not None:
            book.set(
                "Degraded",
                True,
                "StatusRefused",
                f"the apiserver refused the full status (only conditions and heartbeat sent): {self.status_refused}",
                generation,
                now,
            )
        else:
            book.set("Degraded", False, "AsExpected", "containerd answers; the last run had no errors", generation, now)

    def status_document(self) -> dict[str, Any]:
        self.update_conditions()
        status: dict[str, Any] = {**self.usage, "conditions": self.conditions.to_status()}
        generation = self.policy.held.generation
        if generation is not None:
            status["observedGeneration"] = generation
        if self.last_run is not None:
            status["lastRun"] = self.last_run
        status["heartbeatTime"] = self.clock().isoformat().replace("+00:00", "Z")
        return status

    def save(self) -> None:
        self.store.save_status(self.status_document())

    async def loop(
        self,
        heartbeat_interval: float,
        refresh_usage: Callable[[], Awaitable[None]],
        running: Callable[[], bool],
        status_heartbeat: Callable[[], float] | None = None,
    ) -> None:
        """Measures the usage every `heartbeat_interval` (unless a run is going on) and sends the status when
        `status_gate` says so: at once, coalesced, or on the heartbeat (`status_heartbeat()` seconds, default the
        measuring interval); the queued Events go at once. What could not be sent (apiserver away, no NodeCleanup
        yet) is sent as soon as it can be."""
        loop = asyncio.get_running_loop()
        self.gate.coalesce = min(self.gate.coalesce, heartbeat_interval)
        next_measure = loop.time()
        retry, wait = 0.5, 0.0
        while True:
            timeout = max(0.0, min(next_measure - loop.time(), wait))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), timeout)
            self.dirty.clear()
            if loop.time() >= next_measure:
                next_measure = loop.time() + heartbeat_interval
                if not running():
                    await refresh_usage()
            heartbeat = status_heartbeat() if status_heartbeat is not None else heartbeat_interval
            due = self.gate.due_in(self.status_document(), loop.time(), heartbeat) if self.policy.exists else math.inf
            if await self.send(status=due <= 0):
                retry = 0.5
                wait = due if due > 0 else self.gate.due_in(self.status_document(), loop.time(), heartbeat)
            else:
                await asyncio.sleep(retry)
                retry = min(retry * 2, 10.0)
                self.dirty.set()

    def resend(self) -> None:
        """The stored status is gone (a NodeCleanup made again): the whole status goes at once."""
        self.gate.forget()
        self.dirty.set()

    async def send(self, status: bool = True) -> bool:
        """The status first (it must never wait behind an Event; only the Events when `status` is False), then the
        queued Events. False: try again."""
        try:
            if self.policy.exists and status:
                document = self.status_document()
                await self.kube.patch_status(NODE_CLEANUPS, self.node_name, document)
                self.gate.sent(document, asyncio.get_running_loop().time())
                if self.status_refused is not None:
                    self.status_refused = None
                    self.dirty.set()  # Degraded clears in the next one
        except KubeError as exc:
            if exc.status == 404:
                self.policy.exists = False  # deleted meanwhile: the watch says when there is one again
            elif is_transient(exc.status):
                self.metrics.errors.labels("apiserver").inc()
                log.warning("status report failed: %s", exc)
                return False
            else:
                self.metrics.errors.labels("apiserver").inc()
                await self._send_heartbeat_only(exc)
        return await self.recorder.flush()  # aggregated and rate-limited like client-go's (agent/events.py)

    async def _send_heartbeat_only(self, refusal: KubeError) -> None:
        """The full status was refused for good (400/422: invalid, e.g. a field over a limit of an older CRD): the
        conditions, saying so, and the heartbeat still go, and the Events are not held back. The full status is
        tried again with the next change or heartbeat."""
        self.status_refused = str(refusal)[:MAX_MESSAGE]
        log.error("status refused, sending conditions and heartbeat only: %s", refusal)
        document = self.status_document()
        minimal: dict[str, Any] = {
            k: document[k] for k in ("conditions", "observedGeneration", "heartbeatTime") if k in document
        }
        self.gate.sent(document, asyncio.get_running_loop().time())  # the full one is tried again on the heartbeat
        try:
            await self.kube.patch_status(NODE_CLEANUPS, self.node_name, minimal)
        except KubeError as exc:
            self.metrics.errors.labels("apiserver").inc()
            log.error("heartbeat refused too: %s", exc)
