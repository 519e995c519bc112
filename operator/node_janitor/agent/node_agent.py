"""The node agent: one per node (a DaemonSet). It watches only its own NodeCleanup and Node, monitors the image and
pod log file systems, runs the engine on the triggers below, runs the fast log rotation loop beside it, and reports
into its NodeCleanup's status, Events on its Node and /metrics.

Triggers: a file system above the high watermark (space or inodes; checked every monitor interval), the Node's
DiskPressure turning True (reclaims to the low watermark), a new spec.runRequest token, spec.policy.schedule (cron,
UTC), and once at startup. Runs never overlap; triggers during a run coalesce into one more run. After a run that
removed nothing and left the disk above its watermark, that trigger waits RETRY_SECONDS before it fires again
(never a loop of empty runs); a DiskPressure that stays True after a run reached the low watermark fires no more.
A run that ends above the low watermark with nothing more it may remove (no error) is reported once (condition
TargetReached=False/TargetUnreachable, node_janitor_target_short_bytes, one TargetUnreachable Event per episode)
and neither trigger fires again until something changes: the policy, the runtime's containers, a new image, the
disk's usage by 5% of its size, an image kept for minAge reaching it, or a delay doubling from 5 min to 1 h
(`backoff.TargetBackoff`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.agent.adapter import build_engine, build_rotator
from node_janitor.agent.backoff import RuntimeFingerprint, TargetBackoff, runtime_fingerprint
from node_janitor.agent.kube import NODE_CLEANUPS, NODES, KubeClient, KubeError, follow_object
from node_janitor.agent.metrics import AgentMetrics
from node_janitor.agent.policy import HeldPolicy, PolicyHolder
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
from node_janitor.agent.store import AgentStore
from node_janitor.agent.triggers import MAX_FOLLOW_UPS, PendingRun, RunQueue, above, pressure_rules
from node_janitor.api.nodecleanup import RunTrigger, is_dry_run_request
from node_janitor.api.units import format_bytes
from node_janitor.http_endpoint import Endpoint, serve_health
from node_janitor.node.collect import statvfs_entry
from node_janitor.node.engine import NodeEngine, policy_halt
from node_janitor.node.execute import ActionResult
from node_janitor.node.inventory import FileSystemEntry
from node_janitor.node.last_used import LastUsedStore
from node_janitor.node.logs import LogActionResult, LogRotator, RunLock
from node_janitor.runtime import DEFAULT_CONTAINERD_ADDRESS, ContainerdClient, CriClient, RuntimeClientError

log = logging.getLogger(__name__)

RETRY_SECONDS = 30.0
PROBE_TIMEOUT = 5.0
INITIAL_LIST_WAIT = 5.0
"""At startup, how long any run waits for the NodeCleanup to be listed (else: the saved policy)."""
STOP_GRACE = 3.0
"""On SIGTERM, how long the removal in flight may take before the run is cancelled."""
EVENT_NAMESPACE = "default"  # where the kubelet puts Node events too
ROTATOR_BACKOFF = (1.0, 300.0)
"""A dead log rotator is restarted after the first delay, doubled after each failure in a row up to the second."""
ROTATOR_HEALTHY = 60.0
"""A rotator that has run this long has recovered: its failures are forgotten (and the condition clears)."""


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    containerd_socket: str = DEFAULT_CONTAINERD_ADDRESS
    namespace: str = "k8s.io"
    pod_log_dir: Path = Path("/var/log/pods")
    kubelet_root: Path = Path("/var/lib/kubelet")
    state_dir: Path = Path("/var/lib/node-janitor")
    metrics_port: int = 9743
    metrics_host: str = "0.0.0.0"
    monitor_interval: float = 2.0
    heartbeat_interval: float = 60.0
    extra_paths_within: tuple[str, ...] | None = None
    """The node directories extraPaths rules may reach (the ones the pod mounts); None: anywhere."""


SCHEDULE_RECHECK = 60.0
"""Seconds: the longest the scheduler waits without reading the wall clock again (NTP may step it meanwhile)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AgentStartError(Exception):
    """The agent cannot start (one line for the user)."""


class RunInterrupted(Exception):
    """SIGTERM arrived: the run stops after the removal in flight."""


class RuntimeLink:
    """The clients on containerd's socket, reconnected after containerd went away (a fresh channel, not gRPC's
    slow reconnect backoff); `generation` counts connections."""

    def __init__(self, socket: str, namespace: str) -> None:
        self.socket, self.namespace = socket, namespace
        self.cri: CriClient | None = None
        self.containerd: ContainerdClient | None = None
        self.error: str | None = "not connected yet"
        self.generation = 0
        self.image_fs_path: str | None = None
        self.up = asyncio.Event()

    async def probe(self) -> bool:
        try:
            if self.cri is None or self.containerd is None:
                cri, containerd = CriClient(self.socket), ContainerdClient(self.socket, namespace=self.namespace)
                cri.open()
                containerd.open()
                self.cri, self.containerd = cri, containerd
                self.generation += 1
            await asyncio.wait_for(self.cri.version(), PROBE_TIMEOUT)
            if self.image_fs_path is None:
                info = await asyncio.wait_for(self.cri.image_fs_info(), PROBE_TIMEOUT)
                self.image_fs_path = next((u.mountpoint for u in info.image_filesystems if u.mountpoint), None)
        except (RuntimeClientError, TimeoutError) as exc:
            await self.down(str(exc) or "containerd did not answer in time")
            return False
        if self.error is not None:
            log.info("containerd reachable socket=%s", self.socket)
        self.error = None
        self.up.set()
        return True

    async def down(self, error: str) -> None:
        if self.error is None:
            log.warning("containerd unreachable socket=%s: %s", self.socket, error)
        self.error = error
        await self.close()

    async def close(self) -> None:
        self.up.clear()
        cri, containerd, self.cri, self.containerd = self.cri, self.containerd, None, None
        for client in (cri, containerd):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()


@dataclass
class _RunningRotator:
    key: tuple[Any, ...]
    rotator: LogRotator
    stop: asyncio.Event
    task: asyncio.Task[None]
    started: float


@dataclass
class RotatorHealth:
    """The log rotator's failures in a row (it died, or could not be built) and when it may start again."""

    failures: int = 0
    error: str | None = None
    restart_at: float = 0.0

    def failed(self, error: str, now: float) -> float:
        self.failures += 1
        self.error = error[:MAX_MESSAGE]
        first, cap = ROTATOR_BACKOFF
        delay = min(cap, first * 2.0 ** min(self.failures - 1, 30))
        self.restart_at = now + delay
        return delay


class NodeAgent:
    def __init__(self, config: AgentConfig, kube: KubeClient, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config
        self.kube = kube
        self.clock = clock
        self.store = AgentStore(config.state_dir)
        self.last_used = LastUsedStore(self.store.last_used_path)
        self.metrics = AgentMetrics()
        self.link = RuntimeLink(config.containerd_socket, config.namespace)
        self.queue = RunQueue()
        self.policy = PolicyHolder(config.node_name, self.store)
        self.conditions = ConditionBook()
        self._usage: dict[str, Any] = {}
        self._last_run: dict[str, Any] | None = None
        self._last_outcome: RunOutcome | None = None
        self._events: deque[dict[str, Any]] = deque(maxlen=50)
        self._engine_of: tuple[int, NodeEngine] | None = None
        self._stopping = asyncio.Event()
        self._dirty = asyncio.Event()
        self._policy_changed = asyncio.Event()
        self._listed = asyncio.Event()
        self._unguarded_above = False  # above the watermark with no policy to act on (logged once per crossing)
        self._answered_request: str | None = None
        self._node_uid: str | None = None
        self._disk_pressure: bool | None = None
        self._watermark_blocked_until = 0.0
        self._pressure_retry_at: float | None = None
        self._rotator: _RunningRotator | None = None
        self.run_lock = RunLock(self.store.run_lock_path)  # shared with the other agent of a surge rollout
        self.rotator_health = RotatorHealth()
        self._status_refused: str | None = None
        self.target = TargetBackoff()  # a target no run can reach: reported once, retried when something changes
        self._follow_ups = 0  # runs in a row planned again after one that covered its target and fell short
        self._rotator_lock = asyncio.Lock()
        self._api_reachable = False
        self._run_task: asyncio.Task[None] | None = None
        self._load_state()

    # ---- state ----------------------------------------------------------------------------------------------

    @property
    def held(self) -> HeldPolicy:
        return self.policy.held

    @property
    def spec_error(self) -> str | None:
        return self.policy.held.spec_error

    def _load_state(self) -> None:
        status = self.store.load_status()
        if status:
            self._last_run = status.get("lastRun")
            self._answered_request = (self._last_run or {}).get("runRequest")  # not asked again after a restart
            self.conditions = ConditionBook(status.get("conditions") or [])
            self._usage = {k: v for k, v in status.items() if k not in ("lastRun", "conditions")}
        log.info("policy source=%s generation=%s", self.held.source, self.held.generation)

    def ready(self) -> tuple[bool, str]:
        if self.link.error is not None:
            return False, f"containerd unreachable: {self.link.error}"
        return True, f"ready: containerd answers, {self.policy.describe()}"

    # ---- the Kubernetes side ---------------------------------------------------------------------------------

    def _foreign(self, resource: str, obj: dict[str, Any] | None) -> bool:
        """An object that is not this node's (the field selector makes it impossible; never act on one)."""
        name = (obj or {}).get("metadata", {}).get("name", self.config.node_name)
        if name == self.config.node_name:
            return False
        log.error("ignoring %s %s: not this node's (%s)", resource, name, self.config.node_name)
        return True

    def _on_nodecleanup(self, kind: str, obj: dict[str, Any] | None) -> None:
        if kind != "LIST":
            self.metrics.watch_events.labels("nodecleanups", kind).inc()
        if self._foreign("NodeCleanup", obj):
            return
        log.log(
            logging.DEBUG if kind == "MODIFIED" else logging.INFO,
            "watch resource=NodeCleanup name=%s type=%s",
            self.config.node_name,
            kind,
        )
        update = self.policy.observe(obj)
        self._listed.set()
        if update.appeared:
            self._dirty.set()  # (again) something to report into
        if update.changed:
            self._set_policy(update.generation_changed or update.error_changed)
        if obj is None:
            return
        status = obj.get("status") or {}
        if not self.conditions.to_status() and status.get("conditions"):
            self.conditions = ConditionBook(status["conditions"])
        answered = (status.get("lastRun") or {}).get("runRequest")
        if answered and self._answered_request is None:
            self._answered_request = answered
        token = self.held.run_request  # (None while the spec cannot be read)
        if token and token != self._answered_request:
            self._answered_request = token  # answered by the run it queues (in status.lastRun.runRequest)
            log.info("run requested token=%s dryRun=%s", token, is_dry_run_request(token))
            self.queue.add("request", run_request=token)

    def _set_policy(self, report: bool) -> None:
        held, applied = self.held, self.policy.applied
        log.info(
            "policy source=%s generation=%s dryRun=%s paused=%s",
            held.source,
            held.generation,
            applied.dry_run,
            applied.paused,
        )
        self._policy_changed.set()
        self._watermark_blocked_until = 0.0
        if report:
            self._dirty.set()

    def _on_node(self, kind: str, obj: dict[str, Any] | None) -> None:
        if kind != "LIST":
            self.metrics.watch_events.labels("nodes", kind).inc()
        if self._foreign("Node", obj):
            return
        if obj is None:
            return
        self._node_uid = (obj.get("metadata") or {}).get("uid")
        conditions = (obj.get("status") or {}).get("conditions") or []
        pressure = any(c.get("type") == "DiskPressure" and c.get("status") == "True" for c in conditions)
        if pressure and not self._disk_pressure:
            log.info("node condition DiskPressure=True: reclaiming to the low watermark")
            self._pressure_retry_at = None
            self.queue.add("pressure")
        self._disk_pressure = pressure

    def _on_api_connection(self, connected: bool) -> None:
        if connected and not self._api_reachable:
            self._dirty.set()  # what could not be sent while it was away
        self._api_reachable = connected

    # ---- the monitor ---------------------------------------------------------------------------------------

    def _file_systems(self) -> list[FileSystemEntry]:
        out = []
        for name, path in (("imagefs", self.link.image_fs_path), ("logs", str(self.config.pod_log_dir))):
            if path:
                try:
                    out.append(statvfs_entry(name, path))
                except OSError:
                    continue
        return out

    async def _monitor(self) -> None:
        while True:
            was_up = self.link.error is None
            up = await self.link.probe()
            if up != was_up:
                self._dirty.set()
                if not up:
                    self.metrics.errors.labels("runtime").inc()
            ready, _ = self.ready()
            self.metrics.ready.set(1 if ready else 0)
            file_systems = self._file_systems()
            self.metrics.observe_file_systems(file_systems)
            self._check_triggers(file_systems, await self._runtime_fingerprint() if self.target.blocked else None)
            await self._sync_rotator()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.monitor_interval)
                return

    async def _runtime_fingerprint(self) -> RuntimeFingerprint | None:
        """The runtime's containers (with states) and images, or None if it does not answer."""
        cri = self.link.cri
        if cri is None:
            return None
        try:
            containers, images = await asyncio.gather(cri.list_containers(), cri.list_images())
        except RuntimeClientError:
            return None
        return runtime_fingerprint(((c.id, c.state) for c in containers), (i.id for i in images))

    def _check_triggers(self, file_systems: list[FileSystemEntry], runtime: RuntimeFingerprint | None = None) -> None:
        rules = self.policy.applied
        if self.policy.settled and rules.paused:  # measured and reported (/metrics, this log), not acted on
            unguarded = above(file_systems, rules.thresholds)
            if unguarded and not self._unguarded_above:
                log.warning("file system above highPercent=%s, not acting: %s", rules.thresholds.high_percent,
                            self.policy.describe())  # fmt: skip
            self._unguarded_above = unguarded
        else:
            self._unguarded_above = False
        if rules.paused or self.link.error is not None:
            return
        now = time.monotonic()
        if self.target.episode is not None and not above(file_systems, rules.thresholds, low=True):
            self.target.end()  # the disk is below its low watermark again, whatever freed it
            self._note_target(0, "every file system is below its low watermark")
        if self.target.blocked and runtime is not None:
            self.target.note_runtime(runtime)
        if (why := self.target.changed(self.held, file_systems, runtime, now)) is not None:
            log.info("target was unreachable; %s: trying again", why)
            self._watermark_blocked_until = 0.0
            if self._disk_pressure:
                self._pressure_retry_at = now
        if self.target.blocked:
            return  # reported, not chased: nothing changed since a run found nothing more it may remove
        if not above(file_systems, rules.thresholds):
            self._watermark_blocked_until = 0.0
        elif not self.queue.busy and now >= self._watermark_blocked_until:
            log.info("file system above highPercent=%s: reclaiming", rules.thresholds.high_percent)
            self.queue.add("watermark")
        if self._disk_pressure and self._pressure_retry_at is not None and now >= self._pressure_retry_at:
            self._pressure_retry_at = None
            self.queue.add("pressure")

    async def _scheduler(self) -> None:
        """Fires once at each minute the cron schedule names, by the wall clock (UTC). The wait itself is monotonic
        and reads the wall clock again at least every SCHEDULE_RECHECK seconds, so a clock that NTP steps neither
        delays a slot by the step nor fires one twice (a slot fired is never aimed at again)."""
        slot: datetime | None = None  # the minute aimed at, kept until it fires or the policy changes
        fired: datetime | None = None
        while True:
            self._policy_changed.clear()
            schedule = self.policy.applied.cron_schedule
            if schedule is None:
                slot = None
                await self._policy_changed.wait()
                continue
            now = self.clock()
            if slot is None:
                slot = schedule.next_after(max(now, fired) if fired is not None else now)
            remaining = (slot - now).total_seconds()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._policy_changed.wait(), min(remaining, SCHEDULE_RECHECK))
                if self._policy_changed.is_set():
                    slot = None  # aim again with the new policy
                continue
            fired, slot = slot, None
            log.info("schedule %r fired", self.held.rules.schedule)
            self.queue.add("schedule")

    # ---- the log rotation loop ------------------------------------------------------------------------------

    async def _sync_rotator(self, *, hold: bool = False) -> None:
        """Keep exactly one LogRotator running with the policy held (restarted when it or the containerd
        connection changes; stopped while a run does the log pass, and under a dry-run or paused policy).

        It shares the engine's log janitor and tree lock (`adapter.build_rotator`). It is still stopped during a
        run, although the lock alone would keep the two from colliding: a run may apply other rules than the
        rotator's (a pressure run's), its interrupt callback (SIGTERM) is installed on the shared janitor for
        the run and must not stop a rotation, and a stopped rotator has finished its background compressions,
        so the run's snapshot sees every file where it stays."""
        rules = self.policy.applied
        enabled = (
            not hold
            and not self.queue.running
            and self.link.error is None
            and self.link.cri is not None
            and self.link.containerd is not None
            and rules.logs.enabled
            and not rules.paused
            and not rules.dry_run
            and not self._stopping.is_set()
        )
        key = (self.link.generation, rules.logs.model_dump_json()) if enabled else None
        async with self._rotator_lock:
            now = time.monotonic()
            running = self._rotator
            if running is not None and running.task.done() and not running.stop.is_set():
                self._rotator = None
                self._rotator_failed(_task_error(running.task), now)
            elif running is not None and running.key == key:
                if self.rotator_health.failures and now - running.started >= ROTATOR_HEALTHY:
                    log.info("log rotator recovered after %d failure(s)", self.rotator_health.failures)
                    self.rotator_health = RotatorHealth()
                    self._dirty.set()
                return
            if self._rotator is not None:
                running, self._rotator = self._rotator, None
                running.stop.set()
                with contextlib.suppress(Exception):
                    await running.task
            if key is None or now < self.rotator_health.restart_at:
                return
            if self.link.cri is not None and self.link.containerd is not None:
                try:
                    rotator = await build_rotator(self._engine(), self.config.pod_log_dir, rules.logs)
                except (RuntimeClientError, OSError) as exc:
                    self._rotator_failed(f"cannot start: {type(exc).__name__}: {exc}", now)
                    return
                stop = asyncio.Event()
                task = asyncio.create_task(rotator.run(stop))
                self._rotator = _RunningRotator(key, rotator, stop, task, now)

    def _rotator_failed(self, error: str, now: float) -> None:
        """Counted, logged and reported (Degraded), then restarted by a later sync after a bounded backoff."""
        delay = self.rotator_health.failed(error, now)
        self.metrics.errors.labels("logrotator").inc()
        log.error("log rotator failed failures=%d restart_in=%.0fs: %s", self.rotator_health.failures, delay, error)
        self._dirty.set()

    # ---- runs ---------------------------------------------------------------------------------------------

    def _count(self, kind: str, outcome: str, freed: int) -> None:
        self.metrics.actions.labels(kind, outcome).inc()
        if outcome == "done" and freed > 0:
            self.metrics.reclaimed_bytes.labels(kind).inc(freed)

    def _count_log(self, result: LogActionResult) -> None:
        self._count(str(result.action.kind), str(result.outcome), result.freed)

    def _on_result(self, result: ActionResult) -> None:
        self._count(str(result.action.kind), str(result.outcome), result.action.bytes)
        if self._stopping.is_set():
            raise RunInterrupted

    def _on_log_result(self, result: LogActionResult) -> None:
        # Counted by the shared janitor's own callback (`_count_log`, the rotator's too); this one only stops.
        if self._stopping.is_set():
            raise RunInterrupted

    async def _runner(self) -> None:
        # No run acts on a saved policy while a fresh one may be one LIST away: the admin may have added a keep
        # pattern or set dryRun while the agent was away. Triggers queue (and coalesce) meanwhile; after
        # INITIAL_LIST_WAIT without an answer from the apiserver, the saved policy it is.
        await self._settled()
        while True:
            pending = await self.queue.take()
            try:
                await self.link.up.wait()  # a run needs containerd; triggers wait for it to come back
                self._run_task = asyncio.create_task(self._run(pending))
                await self._run_task
            finally:
                self._run_task = None
                self.queue.done()
            await self._sync_rotator()

    async def _settled(self) -> None:
        """Until the NodeCleanup is listed, at most INITIAL_LIST_WAIT (then the saved policy, if any, applies)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listed.wait(), INITIAL_LIST_WAIT)
        if not self.policy.settled:
            self.policy.settle()
            self._set_policy(True)

    async def _run(self, pending: PendingRun) -> None:
        held, applied = self.held, self.policy.applied
        trigger: RunTrigger = pending.trigger
        if applied.paused and pending.run_request is None:
            log.info("run skipped trigger=%s: %s", trigger, "paused" if held.valid else self.policy.describe())
            return
        # A request under a paused policy is still answered (`node-janitor run --wait` waits for it): the engine
        # does nothing at all under paused, so the answer is a run with no action.
        rules = pressure_rules(applied) if pending.to_low else applied
        dry_run = applied.dry_run or pending.dry_run_request
        await self._sync_rotator(hold=True)
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
            report = await self._engine().run_once(
                rules,
                dry_run=dry_run,
                protected_images=lambda: self.held.protected_images,
                on_result=self._on_result,
                on_log_result=self._on_log_result,
                should_stop=self._stopping.is_set,  # nothing more is sent once SIGTERM arrives
                current_rules=lambda: self.policy.applied,  # paused, dryRun, keep, logs.enabled: before each action
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
            self._finish_run(outcome, pending)
        if self.target.blocked and (runtime := await self._runtime_fingerprint()) is not None:
            self.target.note_runtime(runtime)  # what a change is measured against: the runtime right after the run
        await self._refresh_usage()

    def _finish_run(self, outcome: RunOutcome, pending: PendingRun) -> None:
        m = self.metrics
        m.runs.labels(outcome.trigger, str(outcome.dry_run).lower()).inc()
        m.run_duration.observe(outcome.duration_seconds)
        m.last_run_timestamp.set(time.time())
        m.last_run_reclaimed.set(outcome.reclaimed_bytes)
        m.last_run_planned.set(outcome.planned_bytes)
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
        self._last_outcome = outcome
        self._last_run = build_last_run(outcome)
        event = run_event(outcome, self.config.node_name, self._node_uid, self.clock())
        if event is not None:
            self._events.append(event)
        # Re-arming: a run that freed nothing and left the disk above its watermark waits before the next try; a
        # run that could remove nothing more (no error, still above the low watermark) is reported once and not
        # tried again until something changes (`TargetBackoff`); a run whose plan covered its target and fell short
        # anyway is followed by another (`_follow_up`).
        file_systems = self._file_systems()
        rules = self.policy.applied
        now = time.monotonic()
        report = outcome.report
        if self._follow_up(outcome):
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
            if self.target.record(short, message, self.held, file_systems, now, eligible_in):
                self._events.append(
                    target_unreachable_event(message, self.config.node_name, self._node_uid, self.clock())
                )
                log.warning("target unreachable: %s", message)
            reached = "the last run reached its target" if report.short else "no file system was above its watermark"
            self._note_target(short, message or reached)
        if above(file_systems, rules.thresholds) and not outcome.removed_something:
            self._watermark_blocked_until = now + RETRY_SECONDS
        if pending.pressure:
            unmet = above(file_systems, rules.thresholds, low=True) or bool(outcome.all_errors)
            self._pressure_retry_at = now + RETRY_SECONDS if unmet and not self.target.blocked else None
        self._save_status()
        self._dirty.set()

    def _follow_up(self, outcome: RunOutcome) -> bool:
        """A run whose plan covered the image file system's way down to the low watermark, that removed something
        and still left it above: the disk filled while it ran (a pod writing, an image pulled), or the removals
        freed less than measured. Something more may well be removable: that is no unreachable target, so another
        run plans again on what is there now, at most MAX_FOLLOW_UPS in a row (then the target rules apply)."""
        report = outcome.report
        if (
            report is None
            or outcome.dry_run
            or outcome.all_errors
            or not report.short.get("imagefs")
            or not (report.plan.target.under_pressure and report.plan.reaches_target)
            or not outcome.removed_something
            or self._follow_ups >= MAX_FOLLOW_UPS
        ):
            self._follow_ups = 0
            return False
        self._follow_ups += 1
        log.info(
            "%s run covered its target but left %s above the low watermark (the disk filled meanwhile, or freed "
            "less than measured): planning again (%d of %d)",
            outcome.trigger,
            format_bytes(report.short["imagefs"]),
            self._follow_ups,
            MAX_FOLLOW_UPS,
        )
        self.queue.add("watermark" if outcome.trigger == "request" else outcome.trigger, follow_up=True)
        return True

    def _note_target(self, short: int, message: str) -> None:
        """The TargetReached condition and the short-bytes gauge."""
        self.metrics.target_short.set(short)
        reason = "TargetUnreachable" if short else "Reached"
        self.conditions.set("TargetReached", not short, reason, message, self.held.generation, self.clock())
        self._dirty.set()

    # ---- reports -----------------------------------------------------------------------------------------

    def _engine(self) -> NodeEngine:
        """The engine of the current containerd connection (a new connection, a new engine)."""
        cri, containerd = self.link.cri, self.link.containerd
        if cri is None or containerd is None:
            raise RuntimeClientError(self.link.error or "containerd unreachable")
        if self._engine_of is None or self._engine_of[0] != self.link.generation:
            engine = build_engine(
                cri,
                containerd,
                namespace=self.config.namespace,
                pod_log_dir=self.config.pod_log_dir,
                state=self.last_used,
                kubelet_root=self.config.kubelet_root,
                state_dir=self.config.state_dir,
                extra_paths_within=self.config.extra_paths_within,
                on_log_result=self._count_log,
                run_lock=self.run_lock,
            )
            # The fast rotator shares this janitor: it obeys the policy as of now before each action too.
            engine.log_janitor.gate = lambda: policy_halt(self.policy.applied, logs=True)
            self._engine_of = (self.link.generation, engine)
        return self._engine_of[1]

    async def _refresh_usage(self) -> None:
        """The df numbers, measured now (a run's own inventory predates its removals)."""
        try:
            engine, rules = self._engine(), self.held.rules
            report = await engine.build_disk_report(logs_policy=rules.logs, keep=rules.images.keep)
        except RuntimeClientError as exc:
            if self.link.cri is not None:
                await self.link.down(str(exc))
                self._dirty.set()
            self._usage["fileSystems"] = build_file_systems(self._file_systems()) or self._usage.get("fileSystems", [])
            return
        self._usage.update(build_usage_status(report))

    def _update_conditions(self) -> None:
        now, generation = self.clock(), self.held.generation
        book, rules = self.conditions, self.policy.applied
        if self.spec_error:
            book.set("Ready", False, "InvalidSpec", f"paused: {self.spec_error}", generation, now)
        elif self.link.error is not None:
            book.set(
                "Ready", False, "RuntimeUnavailable", f"containerd unreachable: {self.link.error}", generation, now
            )
        elif rules.paused and not (self.policy.settled and self.held.valid):
            book.set("Ready", True, "Paused", self.policy.describe(), generation, now)
        elif rules.paused:
            book.set(
                "Ready", True, "Paused", f"spec generation {generation} is paused: nothing is removed", generation, now
            )
        else:
            mode = " (dry run: nothing is removed)" if rules.dry_run else ""
            book.set("Ready", True, "Applying", f"applying spec generation {generation}{mode}", generation, now)
        last_errors = self._last_outcome.all_errors if self._last_outcome else []
        if self.link.error is not None:
            book.set(
                "Degraded", True, "RuntimeUnavailable", f"containerd unreachable: {self.link.error}", generation, now
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
        elif self.rotator_health.error is not None:
            health = self.rotator_health
            book.set(
                "Degraded",
                True,
                "LogRotatorFailed",
                f"the log rotator failed {health.failures} time(s) in a row, restarted with backoff: {health.error}",
                generation,
                now,
            )
        elif self._status_refused is not None:
            book.set(
                "Degraded",
                True,
                "StatusRefused",
                f"the apiserver refused the full status (only conditions and heartbeat sent): {self._status_refused}",
                generation,
                now,
            )
        else:
            book.set("Degraded", False, "AsExpected", "containerd answers; the last run had no errors", generation, now)

    def status_document(self) -> dict[str, Any]:
        self._update_conditions()
        status: dict[str, Any] = {**self._usage, "conditions": self.conditions.to_status()}
        if self.held.generation is not None:
            status["observedGeneration"] = self.held.generation
        if self._last_run is not None:
            status["lastRun"] = self._last_run
        status["heartbeatTime"] = self.clock().isoformat().replace("+00:00", "Z")
        return status

    def _save_status(self) -> None:
        self.store.save_status(self.status_document())

    async def _reporter(self) -> None:
        """Sends the status when something changed and on the heartbeat; what could not be sent (apiserver
        away, no NodeCleanup yet) is sent as soon as it can be, with the Events queued meanwhile."""
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time()
        retry = 0.5
        while True:
            timeout = max(0.0, next_heartbeat - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout)
            self._dirty.clear()
            if loop.time() >= next_heartbeat:
                next_heartbeat = loop.time() + self.config.heartbeat_interval
                if not self.queue.running:
                    await self._refresh_usage()
            if await self._send():
                retry = 0.5
            else:
                await asyncio.sleep(retry)
                retry = min(retry * 2, 10.0)
                self._dirty.set()

    async def _send(self) -> bool:
        """The status first (it must never wait behind an Event), then the queued Events. False: try again."""
        try:
            if self.policy.exists:
                await self.kube.patch_status(NODE_CLEANUPS, self.config.node_name, self.status_document())
                if self._status_refused is not None:
                    self._status_refused = None
                    self._dirty.set()  # Degraded clears in the next one
        except KubeError as exc:
            if exc.status == 404:
                self.policy.exists = False  # deleted meanwhile: the watch says when there is one again
            elif _transient(exc.status):
                self.metrics.errors.labels("apiserver").inc()
                log.warning("status report failed: %s", exc)
                return False
            else:
                self.metrics.errors.labels("apiserver").inc()
                await self._send_heartbeat_only(exc)
        while self._events:
            try:
                await self.kube.create_event(EVENT_NAMESPACE, self._events[0])
            except KubeError as exc:
                self.metrics.errors.labels("apiserver").inc()
                if _transient(exc.status):
                    log.warning("event not posted yet: %s", exc)
                    return False
                log.error("event dropped: %s", exc)  # refused for good (e.g. forbidden): never block the status
            self._events.popleft()
        return True

    async def _send_heartbeat_only(self, refusal: KubeError) -> None:
        """The full status was refused for good (400/422: invalid, e.g. a field over a limit of an older CRD): the
        conditions, saying so, and the heartbeat still go, and the Events are not held back. The full status is
        tried again with the next change or heartbeat."""
        self._status_refused = str(refusal)[:MAX_MESSAGE]
        log.error("status refused, sending conditions and heartbeat only: %s", refusal)
        document = self.status_document()
        minimal: dict[str, Any] = {
            k: document[k] for k in ("conditions", "observedGeneration", "heartbeatTime") if k in document
        }
        try:
            await self.kube.patch_status(NODE_CLEANUPS, self.config.node_name, minimal)
        except KubeError as exc:
            self.metrics.errors.labels("apiserver").inc()
            log.error("heartbeat refused too: %s", exc)

    # ---- life cycle ------------------------------------------------------------------------------------

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing the removal in flight")
            self._stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        try:
            config = self.config
            server = await serve_health(self.metrics.render, self.ready, config.metrics_host, config.metrics_port)
        except OSError as exc:
            await self.kube.close()
            raise AgentStartError(
                f"cannot serve /metrics on {self.config.metrics_host}:{self.config.metrics_port}: {exc.strerror or exc}"
            ) from None
        name = self.config.node_name
        log.info(
            "agent start node=%s socket=%s state_dir=%s pid=%d",
            name,
            self.config.containerd_socket,
            self.config.state_dir,
            os.getpid(),
        )
        tasks = [
            asyncio.create_task(
                follow_object(self.kube, NODE_CLEANUPS, name, self._on_nodecleanup, self._on_api_connection),
                name="watch-nodecleanup",
            ),
            asyncio.create_task(follow_object(self.kube, NODES, name, self._on_node), name="watch-node"),
            asyncio.create_task(self._monitor(), name="monitor"),
            asyncio.create_task(self._runner(), name="runner"),
            asyncio.create_task(self._reporter(), name="reporter"),
            asyncio.create_task(self._scheduler(), name="scheduler"),
        ]
        await self._settled()
        if not self.queue.running and self._last_outcome is None:  # else a trigger already ran the first run
            self.queue.add("startup")
        watched: list[Awaitable[Any]] = [self._stopping.wait(), *tasks]
        done, _ = await asyncio.wait([asyncio.ensure_future(a) for a in watched], return_when=asyncio.FIRST_COMPLETED)
        # A task that ends while the agent is not stopping (they all loop for ever) is a crash: the agent exits
        # non-zero, so the kubelet restarts it and the restart shows.
        crashed = [t for t in tasks if t in done and (not self._stopping.is_set() or _task_error(t) != "returned")]
        for task in crashed:
            log.error("agent task crashed task=%s: %s", task.get_name(), _task_error(task))
        await self._shutdown(tasks, server)
        return 1 if crashed else 0

    async def _shutdown(self, tasks: list[asyncio.Task[Any]], server: Endpoint) -> None:
        self._stopping.set()
        run = self._run_task
        if run is not None and not run.done():
            try:
                await asyncio.wait_for(asyncio.shield(run), STOP_GRACE)
            except (TimeoutError, Exception):
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run
        await _bounded(self._sync_rotator(hold=True), STOP_GRACE)
        self._save_status()
        await _bounded(self._send(), 2.0)  # best effort: the next agent sends it otherwise
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()
        await self.link.close()
        await self.kube.close()
        log.info("agent stopped")


def _transient(status: int) -> bool:
    """An apiserver answer worth retrying the same request for (no answer, credentials being rotated, timeout,
    throttling, server errors)."""
    return status in (0, 401, 408, 429) or status >= 500


def _task_error(task: asyncio.Task[Any]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return "returned" if exc is None else f"{type(exc).__name__}: {exc}"


async def _bounded(work: Awaitable[Any], seconds: float) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(work, seconds)


async def run_agent(config: AgentConfig, kube_factory: Callable[[], KubeClient]) -> int:
    agent = NodeAgent(config, kube_factory())
    return await agent.run()
