"""The node agent: one per node (a DaemonSet). It watches only its own NodeCleanup and Node, monitors the image and
pod log file systems, runs the engine on the triggers below, runs the fast log rotation loop beside it, and reports
into its NodeCleanup's status, Events on its Node and /metrics.

Triggers: a file system above the high watermark (space or inodes; checked every monitor interval, every 0.25 s near it,
while filling fast or pulling, and at once when a pod of the node waits to start: `pods`; the image file system's use
counts the bytes pulls in flight still bring), the image file system projected to reach the kubelet's eviction threshold
within the prediction horizon (`fillrate`), the Node's DiskPressure turning True (reclaims to the low watermark), a new
spec.runRequest token, spec.policy.schedule (cron, UTC), and once at startup. Runs never overlap; triggers during a run
coalesce into one more run. After a run that removed nothing and left the disk above its watermark, that trigger waits
RETRY_SECONDS before it fires again (never a loop of empty runs); a DiskPressure that stays True after a run reached the
low watermark fires no more. A run that ends above the low watermark with nothing more it may remove (no error) is
reported once (condition TargetReached=False/TargetUnreachable, node_janitor_target_short_bytes, one TargetUnreachable
Event per episode) and neither trigger fires again until something changes: the policy, the runtime's containers, a new
image, the disk's usage by 5% of its size, an image kept for minAge reaching it, or a delay doubling from 5 min to 1 h
(`backoff.TargetBackoff`).

NodeAgent only wires the parts (`agent/__init__` lists them) and runs their loops: the two watches, the monitor
tick, the runner, the reporter and the scheduler. Its ports are injected: the Kubernetes client (`kube.AgentKube`),
the runtime factory (`runtime_link.Connect`), the store and the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.agent.adapter import build_engine, build_rotator
from node_janitor.agent.backoff import TargetBackoff
from node_janitor.agent.kube import NODE_CLEANUPS, NODES, AgentKube, follow_object
from node_janitor.agent.liveness import LeaseRenewer
from node_janitor.agent.metrics import AgentMetrics
from node_janitor.agent.pods import NodePods, follow_node_pods
from node_janitor.agent.policy import HeldPolicy, PolicyHolder
from node_janitor.agent.reporter import STATUS_HEARTBEAT, Reporter
from node_janitor.agent.rotation import RotatorSupervisor, task_error
from node_janitor.agent.runner import Runner
from node_janitor.agent.runtime_link import PROBE_TIMEOUT, Connect, RuntimeLink, connect_containerd
from node_janitor.agent.store import AgentStore
from node_janitor.agent.triggers import RunQueue, Scheduler, Triggers
from node_janitor.api.policy import PolicyRules
from node_janitor.defaults import DEFAULT_KUBELET_ROOT, DEFAULT_NAMESPACE, DEFAULT_POD_LOG_DIR, DEFAULT_STATE_DIR
from node_janitor.http_endpoint import Endpoint, serve_health
from node_janitor.node.collect import ingest_entries, statvfs_entry
from node_janitor.node.engine import NodeEngine, policy_halt
from node_janitor.node.ingests import Pending, pending_bytes
from node_janitor.node.inventory import FileSystemEntry
from node_janitor.node.last_used import LastUsedStore
from node_janitor.node.logs import LogActionResult, LogRotator, RunLock
from node_janitor.runtime import DEFAULT_CONTAINERD_ADDRESS, ContainerdClient, CriClient, RuntimeClientError

log = logging.getLogger(__name__)

INITIAL_LIST_WAIT = 5.0
"""At startup, how long any run waits for the NodeCleanup to be listed (else: the saved policy)."""
STOP_GRACE = 3.0
"""On SIGTERM, how long the removal in flight and the log rotator may take to stop."""


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    containerd_socket: str = DEFAULT_CONTAINERD_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    pod_log_dir: Path = DEFAULT_POD_LOG_DIR
    kubelet_root: Path = DEFAULT_KUBELET_ROOT
    state_dir: Path = DEFAULT_STATE_DIR
    metrics_port: int = 9743
    metrics_host: str = "0.0.0.0"
    monitor_interval: float = 2.0
    heartbeat_interval: float = 60.0
    extra_paths_within: tuple[str, ...] | None = None
    """The node directories extraPaths rules may reach (the ones the pod mounts); None: anywhere."""
    lease_namespace: str | None = None
    """Where the agent renews its Lease (`liveness`; POD_NAMESPACE); None: no Lease, the status heartbeat is the
    liveness signal (every `heartbeat_interval`)."""
    watch_pods: bool = True
    """Watch this node's pods and protect their images (`pods`)."""
    containerd_config: Path | None = None
    """containerd's configuration file as the agent sees it (None: discovery looks in its usual places)."""
    look_ahead: bool = True
    """Count the bytes pulls in flight still bring (the watermark trigger's and a run's projected use) and sample
    fast near a watermark, while filling fast or while a pull is in flight. False only for the fill-rate benchmark's
    baseline (`NODE_JANITOR_BENCH_BASELINE`): with thresholds.predict false, the agent as it was before it looked
    ahead (issue 22): the watermark on the measured use every monitor_interval."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AgentStartError(Exception):
    """The agent cannot start (one line for the user)."""


class NodeAgent:
    """The composition root: builds the parts on the injected ports and runs their loops."""

    def __init__(
        self,
        config: AgentConfig,
        kube: AgentKube,
        *,
        connect: Connect = connect_containerd,
        store: AgentStore | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.config, self.kube, self.clock = config, kube, clock
        self._stopping = asyncio.Event()
        self._sample_now = asyncio.Event()  # the monitor's next tick at once (a pod starts, or the agent stops)
        self._listed = asyncio.Event()
        self._api_reachable = False
        self.store = store if store is not None else AgentStore(config.state_dir)
        self.last_used = LastUsedStore(self.store.last_used_path)
        self.run_lock = RunLock(self.store.run_lock_path)  # shared with the other agent of a surge rollout
        self.metrics = AgentMetrics()
        self.link = RuntimeLink(config.containerd_socket, config.namespace, connect, config.containerd_config)
        self.policy = PolicyHolder(config.node_name, self.store)
        self.queue = RunQueue()
        self.target = TargetBackoff()  # a target no run can reach: reported once, retried when something changes
        self.triggers = Triggers(self.queue, self.target)
        self.scheduler = Scheduler(self.policy, self.queue, clock)
        self.rotation = RotatorSupervisor(self.metrics, self._changed)
        self.pods = NodePods(
            self.store.directory / "pods.json" if config.watch_pods else None,
            on_starting=self._sample_now.set if config.look_ahead else None,
        )
        self.lease = (
            LeaseRenewer(kube, config.node_name, config.lease_namespace, clock) if config.lease_namespace else None
        )
        self.reporter = Reporter(
            config.node_name,
            kube,
            self.store,
            self.policy,
            self.metrics,
            clock=clock,
            runtime_error=lambda: self.link.error,
            rotator_failure=self.rotation.failure,
        )
        self.triggers.answered_request = (self.reporter.last_run or {}).get("runRequest")  # not asked again
        self.runner = Runner(
            policy=self.policy,
            queue=self.queue,
            triggers=self.triggers,
            target=self.target,
            reporter=self.reporter,
            link=self.link,
            engine=self.engine,
            clock=clock,
            stopping=self._stopping,
            pod_images=self.pods.images,
            settled=self._settled,
            hold_rotator=self._hold_rotator,
            file_systems=self.file_systems,
            runtime_fingerprint=self.link.fingerprint,
            refresh_usage=self._refresh_usage,
        )
        log.info("policy source=%s generation=%s", self.held.source, self.held.generation)

    @property
    def held(self) -> HeldPolicy:
        return self.policy.held

    def ready(self) -> tuple[bool, str]:
        if self.link.error is not None:
            return False, f"containerd unreachable: {self.link.error}"
        return True, f"ready: containerd answers, {self.policy.describe()}"

    def status_document(self) -> dict[str, Any]:
        return self.reporter.status_document()

    def _changed(self) -> None:
        self.reporter.changed()

    # ---- the watches ----------------------------------------------------------------------------------------

    def _foreign(self, resource: str, obj: dict[str, Any] | None) -> bool:
        """An object that is not this node's (the field selector makes it impossible; never act on one)."""
        name = (obj or {}).get("metadata", {}).get("name", self.config.node_name)
        if name == self.config.node_name:
            return False
        log.error("ignoring %s %s: not this node's (%s)", resource, name, self.config.node_name)
        return True

    def on_nodecleanup(self, kind: str, obj: dict[str, Any] | None) -> None:
        """The NodeCleanup watch: the policy held, the conditions it reports, a run request."""
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
            self.reporter.resend()  # (again) something to report into
        if update.changed:
            self._set_policy(update.generation_changed or update.error_changed)
        if obj is None:
            return
        status = obj.get("status") or {}
        self.reporter.adopt(status)
        self.triggers.request(self.held.run_request, (status.get("lastRun") or {}).get("runRequest"))

    def _set_policy(self, report: bool) -> None:
        held, applied = self.held, self.policy.applied
        log.info(
            "policy source=%s generation=%s dryRun=%s paused=%s",
            held.source,
            held.generation,
            applied.dry_run,
            applied.paused,
        )
        self.scheduler.policy_changed()
        self.triggers.policy_changed()
        if report:
            self._changed()

    def on_node(self, kind: str, obj: dict[str, Any] | None) -> None:
        """The Node watch: its uid (for Events) and its DiskPressure."""
        if kind != "LIST":
            self.metrics.watch_events.labels("nodes", kind).inc()
        if self._foreign("Node", obj):
            return
        if obj is None:
            return
        self.reporter.node_uid = (obj.get("metadata") or {}).get("uid")
        self.triggers.node((obj.get("status") or {}).get("conditions") or [])

    def _on_api_connection(self, connected: bool) -> None:
        if connected and not self._api_reachable:
            self._changed()  # what could not be sent while it was away
        self._api_reachable = connected

    # ---- the monitor --------------------------------------------------------------------------------------

    def file_systems(self) -> list[FileSystemEntry]:
        out = []
        for name, path in (("imagefs", self.link.image_fs_path), ("logs", str(self.config.pod_log_dir))):
            if path:
                try:
                    out.append(statvfs_entry(name, path))
                except OSError:
                    continue
        return out

    async def _pending(self) -> Pending:
        """What pulls in flight still bring (containerd's content ingests); nothing known when it does not answer."""
        containerd = self.link.containerd
        if containerd is None or self.link.error is not None:
            return Pending()
        try:
            statuses = await asyncio.wait_for(containerd.list_ingests(), PROBE_TIMEOUT)
        except (RuntimeClientError, TimeoutError):
            return Pending()
        return pending_bytes(ingest_entries(statuses), self.clock())

    async def _monitor(self) -> None:
        """The monitor: every monitor_interval the runtime's probe, and on every tick (monitor_interval, or
        fillrate.FAST_INTERVAL near a watermark, while filling fast, while a pull is in flight or expected: a pod of
        the node waiting to start; at once when such a pod shows) statvfs, the ingests and the triggers."""
        next_probe = 0.0
        while True:
            self._sample_now.clear()
            probe = time.monotonic() >= next_probe
            if probe:
                next_probe = time.monotonic() + self.config.monitor_interval
                was_up = self.link.error is None
                up = await self.link.probe()
                if up != was_up:
                    self._changed()
                    if not up:
                        self.metrics.errors.labels("runtime").inc()
                ready, _ = self.ready()
                self.metrics.ready.set(1 if ready else 0)
            file_systems = self.file_systems()
            self.metrics.observe_file_systems(file_systems)
            applied = self.policy.applied
            self.metrics.observe_watermarks(applied.thresholds.high_percent, applied.thresholds.low_percent)
            self.metrics.observe_policy(applied.paused, applied.dry_run, applied.schedule is not None)
            pending = await self._pending() if self.config.look_ahead else Pending()
            runtime = await self.link.fingerprint() if probe and self.target.blocked else None
            now = time.monotonic()
            if self.triggers.check(
                file_systems,
                self.policy,
                runtime_up=self.link.error is None,
                runtime=runtime,
                now=now,
                pending=pending.bytes,
            ):
                self.reporter.note_target(0, "every file system is below its low watermark")
            self.metrics.observe_fill(self.triggers.fill, pending)
            await self._hold_rotator(False)
            interval = self.config.monitor_interval
            if self.config.look_ahead:
                pulling = pending.ingests > 0 or self.pods.pull_expected()
                interval = self.triggers.fill.interval(
                    file_systems, self.policy.applied.thresholds, interval, pulling=pulling
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sample_now.wait(), interval)
            if self._stopping.is_set():
                return

    # ---- the engine and the log rotator ---------------------------------------------------------------------

    def engine(self) -> NodeEngine:
        """The engine of the current containerd connection (a new connection, a new engine)."""
        return self.link.engine(self._build_engine)

    def _build_engine(self, cri: CriClient, containerd: ContainerdClient) -> NodeEngine:
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
            configured_images=self.link.configured_images,
        )
        # The fast rotator shares this janitor: it obeys the policy as of now before each action too.
        engine.log_janitor.gate = lambda: policy_halt(self.policy.applied, logs=True)
        engine.count_pulls_in_flight = self.config.look_ahead
        return engine

    def _count_log(self, result: LogActionResult) -> None:
        self.reporter.count(str(result.action.kind), str(result.outcome), str(result.action.reason), result.freed)

    async def _hold_rotator(self, hold: bool) -> None:
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
            and self.link.connected
            and rules.logs.enabled
            and not rules.paused
            and not rules.dry_run
            and not self._stopping.is_set()
        )
        key = (self.link.generation, rules.logs.model_dump_json()) if enabled else None
        await self.rotation.sync(key, lambda: self._build_rotator(rules))

    async def _build_rotator(self, rules: PolicyRules) -> LogRotator | None:
        if self.link.cri is None or self.link.containerd is None:
            return None
        return await build_rotator(self.engine(), self.config.pod_log_dir, rules.logs)

    # ---- reports --------------------------------------------------------------------------------------------

    async def _refresh_usage(self) -> None:
        """The df numbers, measured now (a run's own inventory predates its removals)."""
        try:
            engine, rules = self.engine(), self.held.rules
            report = await engine.build_disk_report(logs_policy=rules.logs, keep=rules.images.keep)
        except RuntimeClientError as exc:
            if self.link.cri is not None:
                await self.link.down(str(exc))
                self._changed()
            self.reporter.measured_file_systems(self.file_systems())
            return
        self.reporter.measured(report)

    # ---- life cycle ---------------------------------------------------------------------------------------

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing the removal in flight")
            self._stopping.set()
            self._sample_now.set()

    async def _settled(self) -> None:
        """Until the NodeCleanup is listed, at most INITIAL_LIST_WAIT (then the saved policy, if any, applies)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listed.wait(), INITIAL_LIST_WAIT)
        if not self.policy.settled:
            self.policy.settle()
            self._set_policy(True)

    def loops(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """The agent's loops by task name; each runs until cancelled (one that ends is a crash)."""
        name = self.config.node_name
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "watch-nodecleanup": lambda: follow_object(
                self.kube, NODE_CLEANUPS, name, self.on_nodecleanup, self._on_api_connection
            ),
            "watch-node": lambda: follow_object(self.kube, NODES, name, self.on_node),
            "monitor": self._monitor,
            "runner": self.runner.loop,
            "reporter": lambda: self.reporter.loop(
                self.config.heartbeat_interval, self._refresh_usage, lambda: self.queue.running, self._heartbeat
            ),
            "scheduler": self.scheduler.run,
        }
        if self.config.watch_pods:
            loops["watch-pods"] = lambda: follow_node_pods(self.kube, name, self.pods)
        if self.lease is not None:
            loops["lease"] = self.lease.loop
        return loops

    def _heartbeat(self) -> float:
        """The status heartbeat: slow while the Lease says the agent is alive, else every measuring interval."""
        if self.lease is not None and self.lease.healthy:
            return max(STATUS_HEARTBEAT, self.config.heartbeat_interval)
        return self.config.heartbeat_interval

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
        log.info(
            "agent start node=%s socket=%s state_dir=%s pid=%d",
            self.config.node_name,
            self.config.containerd_socket,
            self.config.state_dir,
            os.getpid(),
        )
        tasks = [asyncio.create_task(start(), name=name) for name, start in self.loops().items()]
        await self._settled()
        if not self.queue.running and self.reporter.last_outcome is None:  # else a trigger already ran the first
            self.queue.add("startup")
        watched: list[Awaitable[Any]] = [self._stopping.wait(), *tasks]
        done, _ = await asyncio.wait([asyncio.ensure_future(a) for a in watched], return_when=asyncio.FIRST_COMPLETED)
        # A task that ends while the agent is not stopping (they all loop for ever) is a crash: the agent exits
        # non-zero, so the kubelet restarts it and the restart shows.
        crashed = [t for t in tasks if t in done and (not self._stopping.is_set() or task_error(t) != "returned")]
        for task in crashed:
            log.error("agent task crashed task=%s: %s", task.get_name(), task_error(task))
        await self._shutdown(tasks, server)
        return 1 if crashed else 0

    async def _shutdown(self, tasks: list[asyncio.Task[Any]], server: Endpoint) -> None:
        self._stopping.set()
        await self.runner.stop(STOP_GRACE)
        await _bounded(self._hold_rotator(True), STOP_GRACE)
        self.reporter.save()
        await _bounded(self.reporter.send(), 2.0)  # best effort: the next agent sends it otherwise
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()
        await self.link.close()
        await self.kube.close()
        log.info("agent stopped")


async def _bounded(work: Awaitable[Any], seconds: float) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(work, seconds)


async def run_agent(config: AgentConfig, kube_factory: Callable[[], AgentKube]) -> int:
    agent = NodeAgent(config, kube_factory())
    return await agent.run()
