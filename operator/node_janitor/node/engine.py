"""`NodeEngine`: one node's cleanup engine, built once and run many times (by `prune` and by the agent's loop).

It holds what outlives one run: the runtime clients, the snapshot-usage cache (committed snapshots are immutable,
so a second inventory measures only what is new), the log janitor the rotator shares, the host root, the clock,
the last-use state and a run lock (two runs never interleave). `run_once(rules)` is one run:

1. inventory (the log tree walk, statvfs and state file in threads: nothing blocks the event loop);
2. last use remembered and saved, in a dry run too (`build_disk_report`, the agent's heartbeat, does the same, so
   a paused node remembers as well): the state file is the agent's own, and a dry run's promise is that nothing
   is written to the runtime or the logs; images used while runs were dry must not look unused when they stop;
3. the order in which a node spends its data (fail safe): the logs' own rules (maxSize/maxFiles, orphans past
   their grace, the node budget, fair per pod), then the image plan (its target shrinks by what those freed when
   logs and images share a file system), each image re-checked against the containers and the protected set
   right before its removal; only on a log file system that logs alone fill (neither the images' nor the root
   disk) are logs reclaimed for its pressure, and then only files no container writes; then extraPaths;
4. what is still above the low watermark measured (`PruneReport.short`) and said once in the warnings: a target
   that cannot be met is reported, not chased with logs that still belong to containers.

`NodeEngine._run` reads as these phases, a method each: `_observe` (inventory, last use), `_targets`, `_log_pass` and
`_logs_own_rules`, `_images` (plan, execute), `_logs_for_pressure_and_extra`, `_measure_short`.

`spec.paused: true` makes a run do nothing at all: no inventory, no write, no removal (the agent's heartbeat still
measures, and remembers last use).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.api.policy import LogsPolicy, PolicyRules
from node_janitor.api.units import format_bytes
from node_janitor.defaults import DEFAULT_KUBELET_ROOT, DEFAULT_NAMESPACE, DEFAULT_POD_LOG_DIR, DEFAULT_SNAPSHOTTER
from node_janitor.node.collect import CollectOptions, SnapshotUsageCache, collect_inventory, statvfs_entry
from node_janitor.node.execute import ActionResult, ExecutionResult, Executor
from node_janitor.node.image_mounts import ImageMounts
from node_janitor.node.inventory import FileSystemEntry, Inventory
from node_janitor.node.last_used import LastUsedStore, observe_last_used
from node_janitor.node.logs import (
    LogAction,
    LogActionResult,
    LogJanitor,
    LogPass,
    LogPassReport,
    LogReason,
    LogSettings,
    LogTreeLock,
    RunLock,
)
from node_janitor.node.outcome import Outcome
from node_janitor.node.plan import (
    YOUNGER_THAN_MIN_AGE,
    Action,
    ActionKind,
    Plan,
    PlanSettings,
    Target,
    plan_cleanup,
    plan_target,
)
from node_janitor.node.ports import ContainerdRuntime, CriRuntime, HostFileSystems
from node_janitor.node.usage import DiskReport, build_disk_report
from node_janitor.runtime import RuntimeClientError

Clock = Callable[[], datetime]
ProtectedImages = Iterable[str] | Callable[[], Iterable[str]]
"""The refs the operator protects: a collection, or a callable returning the current ones (re-read right before
each image removal, so a spec that changes mid-run is honoured)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def protected_now(protected: ProtectedImages) -> tuple[str, ...]:
    """The protected refs as of now."""
    return tuple(protected() if callable(protected) else protected)


def policy_halt(rules: PolicyRules, *, logs: bool = False) -> str | None:
    """Why a run that removes things must not take its next action under `rules`, the policy as of now (it was
    paused, or turned to a dry run, or its logs disabled since the run started), or None."""
    if rules.paused:
        return "the policy is paused now"
    if rules.dry_run:
        return "the policy is a dry run now"
    if logs and not rules.logs.enabled:
        return "logs are disabled by the policy now"
    return None


@dataclass
class PruneReport:
    plan: Plan
    dry_run: bool
    inventory: Inventory
    execution: ExecutionResult | None = None
    warnings: list[str] = field(default_factory=list)
    logs: LogPassReport | None = None
    logs_target: Target = field(default_factory=Target)
    logs_after: FileSystemEntry | None = None
    paused: bool = False
    short: dict[str, int] = field(default_factory=dict)
    """File system name -> bytes it still holds above its low watermark after a run that had a target on it."""
    next_eligible: datetime | None = None
    """When the first image this run kept only for being younger than minAge reaches it (time alone changes
    that: the agent tries an unreachable target again then)."""

    @property
    def short_bytes(self) -> int:
        """What this run's targets still miss (0: reached, or no target)."""
        return sum(self.short.values())

    @property
    def image_fs(self) -> FileSystemEntry | None:
        return self.inventory.file_system("imagefs")

    @property
    def log_fs(self) -> FileSystemEntry | None:
        return self.inventory.file_system("logs")

    @property
    def errors(self) -> list[str]:
        errors = list(self.execution.errors) if self.execution else []
        if self.logs is not None:
            errors += self.logs.errors
            errors += [
                f"{r.action.kind} {r.action.path}: {r.message}" for r in self.logs.results if r.outcome == "failed"
            ]
        return errors

    def rows(self) -> list[dict[str, Any]]:
        """Every action in the order it ran: logs' rules and node budget, images, log-fs pressure, extraPaths."""
        results: dict[int, ActionResult | LogActionResult] = {}
        results.update({id(r.action): r for r in self.execution.results} if self.execution else {})
        results.update({id(r.action): r for r in self.logs.results} if self.logs else {})

        def row(action: Action | LogAction, ident: str) -> dict[str, Any]:
            result = results.get(id(action))
            return {
                "kind": str(action.kind),
                "id": ident,
                "refs": list(action.refs),
                "bytes": action.bytes,
                "reason": str(action.reason),
                "outcome": str(result.outcome) if result else "planned",
                "message": result.message if result else "",
            }

        logs = self.logs
        budget = [a for a in (*logs.reclaim, *logs.live) if a.reason is LogReason.NODE_BUDGET] if logs else []
        pressure = [a for a in (*logs.reclaim, *logs.live) if a.reason is not LogReason.NODE_BUDGET] if logs else []
        rows = [row(a, a.path) for a in (*logs.rules, *budget)] if logs else []
        rows += [row(a, a.id) for a in self.plan.actions]
        rows += [row(a, a.path) for a in (*pressure, *logs.extra)] if logs else []
        return rows

    @property
    def skipped(self) -> dict[str, str]:
        """Image ID -> why it is still there: not planned (its protection), or skipped right before removal."""
        skipped = dict(self.plan.skipped)
        for r in self.execution.results if self.execution else ():
            if r.action.kind is ActionKind.REMOVE_IMAGE and r.outcome is Outcome.SKIPPED:
                skipped[r.action.id] = r.message
        return skipped

    @property
    def planned_bytes(self) -> int:
        return self.plan.planned_bytes + (self.logs.planned_bytes if self.logs else 0)

    @property
    def reclaimed_bytes(self) -> int:
        """What the image file system really gained while images were removed, plus what log removals freed."""
        images = self.execution.reclaimed_bytes if self.execution else 0
        return images + (self.logs.freed_bytes if self.logs and not self.dry_run else 0)

    def to_json(self) -> dict[str, Any]:
        before = self.execution.before if self.execution and self.execution.before else self.image_fs
        after = self.execution.after if self.execution else None
        log_fs = self.log_fs
        return {
            "dry_run": self.dry_run,
            "paused": self.paused,
            "actions": self.rows(),
            "planned_bytes": self.planned_bytes,
            "reclaimed_bytes": self.reclaimed_bytes,
            "target_bytes": self.plan.target.bytes,
            "pending_bytes": self.plan.target.pending_bytes,
            "under_pressure": self.plan.target.under_pressure,
            "file_system": {
                "path": before.path if before else None,
                "used_percent_before": round(before.used_percent, 2) if before else None,
                "used_percent_after": round(after.used_percent, 2) if after else None,
            },
            "log_file_system": {
                "path": log_fs.path if log_fs else None,
                "used_percent_before": round(log_fs.used_percent, 2) if log_fs else None,
                "used_percent_after": round(self.logs_after.used_percent, 2) if self.logs_after else None,
                "target_bytes": self.logs_target.bytes,
                "under_pressure": self.logs_target.under_pressure,
            },
            "short_bytes": self.short_bytes,
            "skipped": self.skipped,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def _both(
    first: Callable[[LogActionResult], None] | None, second: Callable[[LogActionResult], None]
) -> Callable[[LogActionResult], None]:
    def call(result: LogActionResult) -> None:
        if first is not None:
            first(result)
        second(result)

    return call


CRI_PLUGIN_DIR = "io.containerd.grpc.v1.cri"  # the CRI plugin's own root and state, inside containerd's
SNAPSHOTTER_DIR_PREFIX = "io.containerd.snapshotter."  # a snapshotter's root, inside containerd's root


async def runtime_trees(cri: CriRuntime) -> tuple[list[str], list[str]]:
    """containerd's root and state directories as the runtime reports them (host paths), and what could not be
    learned. The CRI plugin's verbose status carries its config (`containerdRootDir`, `rootDir`, `stateDir`:
    the plugin's state is `<containerd state>/io.containerd.grpc.v1.cri`); ImageFsInfo's mount point is the
    snapshotter's root, `<containerd root>/io.containerd.snapshotter.v1.<name>`."""
    trees: list[str] = []
    warnings: list[str] = []
    roots: list[str] = []  # containerd's root, as the config says and as the snapshotter's root implies
    config: Any = {}
    try:
        config = json.loads((await cri.status(verbose=True)).info.get("config", "{}"))
    except (RuntimeClientError, ValueError) as exc:
        warnings.append(f"the runtime's config is unreadable ({exc})")
    if isinstance(config, dict):
        for key in ("containerdRootDir", "rootDir", "stateDir"):
            value = config.get(key)
            if isinstance(value, str) and value.startswith("/"):
                trees.append(value)
                if key == "containerdRootDir":
                    roots.append(value)
                if key == "stateDir" and os.path.basename(value.rstrip("/")) == CRI_PLUGIN_DIR:
                    trees.append(os.path.dirname(value.rstrip("/")))
    try:
        fs_info = await cri.image_fs_info()
    except RuntimeClientError as exc:
        warnings.append(f"the runtime's image file system is unknown ({exc})")
    else:
        for fs in (*fs_info.image_filesystems, *fs_info.container_filesystems):
            if fs.mountpoint.startswith("/"):
                trees.append(fs.mountpoint)
                if os.path.basename(fs.mountpoint.rstrip("/")).startswith(SNAPSHOTTER_DIR_PREFIX):
                    roots.append(os.path.dirname(fs.mountpoint.rstrip("/")))
                    trees.append(roots[-1])
    if not roots:
        warnings.append("containerd's root is unknown: only the default trees are kept out of extraPaths")
    return list(dict.fromkeys(trees)), warnings


def _next_eligible(inventory: Inventory, plan: Plan, settings: PlanSettings) -> datetime | None:
    """When the first image the plan kept only for its minAge becomes old enough (None: no such image)."""
    young = {i for i, why in plan.skipped.items() if why.startswith(YOUNGER_THAN_MIN_AGE)}
    times = [i.created_at + settings.min_age for i in inventory.images if i.id in young and i.created_at]
    return min(times, default=None)


MOUNTINFO = Path("/proc/self/mountinfo")


def is_file_system_root(path: str, mountinfo: str) -> bool:
    """Whether `path` is mounted as the top of a file system of its own (`mountinfo`: /proc/self/mountinfo's text),
    not a directory inside a larger one, nor a bind mount of one (a DaemonSet's hostPath of /var/log/pods on the
    node's root disk is mounted with root `/var/log/pods`). The last mount at `path` is the one seen."""
    target = os.path.realpath(path)
    root = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and _unescape(fields[4]) == target:
            root = _unescape(fields[3])
    return root == "/"


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (`\040` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _fills_alone(log_fs: FileSystemEntry) -> bool:
    """Whether the pod log directory is a file system of its own (see `is_file_system_root`); False when that
    cannot be read (logs then pay only for their own rules)."""
    try:
        return is_file_system_root(log_fs.path, MOUNTINFO.read_text(errors="replace"))
    except OSError:
        return False


def _same_device(a: FileSystemEntry | None, b: FileSystemEntry | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return os.stat(a.path).st_dev == os.stat(b.path).st_dev
    except OSError:
        return a.path == b.path


class LocalFileSystems:
    """The host's file systems as this process sees them (`ports.HostFileSystems`): statvfs, the device of a path
    (`os.stat`), /proc/self/mountinfo."""

    def statvfs(self, name: str, path: str) -> FileSystemEntry:
        return statvfs_entry(name, path)

    def same_device(self, a: FileSystemEntry | None, b: FileSystemEntry | None) -> bool:
        return _same_device(a, b)

    def fills_alone(self, log_fs: FileSystemEntry) -> bool:
        return _fills_alone(log_fs)


class NodeEngine:
    """One node's engine: build it once with the clients, call `run_once` (and `build_disk_report`) many times."""

    def __init__(
        self,
        cri: CriRuntime,
        containerd: ContainerdRuntime,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        pod_log_dir: Path | None = DEFAULT_POD_LOG_DIR,
        state: LastUsedStore | None = None,
        host_root: Path = Path("/"),
        clock: Clock = utc_now,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        log_janitor: LogJanitor | None = None,
        log_lock: LogTreeLock | None = None,
        run_lock: RunLock | None = None,
        usage_cache: SnapshotUsageCache | None = None,
        kubelet_root: Path = DEFAULT_KUBELET_ROOT,
        own_trees: Sequence[Path] = (),
        extra_paths_within: Sequence[str] | None = None,
        host: HostFileSystems | None = None,
        configured_images: Sequence[str] = (),
    ) -> None:
        """`cri`, `containerd`: the node's runtime (`ports.NodeRuntime`'s two halves: the real clients, or the
        in-memory fake of the tests); `host`: how its file systems are measured (default: this host's);
        `configured_images`: what the runtime's configuration pins (`runtime.discovery`), never removed."""
        self.cri = cri
        self.containerd = containerd
        self.namespace = namespace
        self.pod_log_dir = pod_log_dir
        self.state = state or LastUsedStore(None)
        self.host_root = host_root
        self.clock = clock
        self.snapshotter = snapshotter
        self.log_janitor = log_janitor or LogJanitor(cri, clock=clock, host_root=host_root)
        # One lock for the pod log tree, the janitor's (so the rotator's, when they share one): the engine's
        # passes and the rotator never plan or remove at once.
        self.log_lock = log_lock or self.log_janitor.tree_lock
        if self.log_lock is None and pod_log_dir is not None:
            self.log_lock = LogTreeLock(pod_log_dir)
        if self.log_janitor.tree_lock is None:
            self.log_janitor.tree_lock = self.log_lock
        self.kubelet_root = kubelet_root
        self.own_trees = tuple(own_trees)  # the caller's own files (the agent's state directory), as it sees them
        self.extra_paths_within = extra_paths_within  # host directories extraPaths may reach (None: any)
        self.configured_images = tuple(configured_images)
        self._protected: tuple[Path, ...] | None = None
        self.usage_cache = usage_cache if usage_cache is not None else SnapshotUsageCache()
        # Shared by the inventory and the executor, its answers the log janitor's (so the rotator's): one
        # ContainerStatus per container in its life, for log paths and image mounts alike.
        self.image_mounts = ImageMounts(self.log_janitor.log_paths)
        self.lock = asyncio.Lock()  # one run at a time
        self._state_lock = asyncio.Lock()  # one load-observe-save of the last-use state at a time (runs, reports)
        self.run_lock = run_lock
        """One run at a time across processes too (the agents of one node), when given."""
        self.host: HostFileSystems = host or LocalFileSystems()
        self.count_pulls_in_flight = True
        """A run's target counts what in-flight pulls still bring (`PlanSettings.count_pulls_in_flight`)."""

    def host_path(self, path: str | Path) -> Path:
        """A host path as this process sees it (under `host_root`)."""
        return self.host_root / str(path).lstrip("/")

    async def protected_trees(self) -> tuple[tuple[Path, ...], list[str]]:
        """The trees no extraPaths rule may reach on this node beside the fixed ones (`PROTECTED_TREES`):
        containerd's root and state as the runtime reports them, the kubelet's root, and `own_trees` (the agent's
        state directory: in its pod, the one host directory it may write that a glob could reach); as this process
        sees them. Learned once per engine (a runtime's directories do not move while it runs), and the warnings of
        a failed try (asked again next time)."""
        if self._protected is not None:
            return self._protected, []
        trees, warnings = await runtime_trees(self.cri)
        protected = tuple(
            dict.fromkeys([*(self.host_path(t) for t in trees), self.host_path(self.kubelet_root), *self.own_trees])
        )
        if not warnings:
            self._protected = protected
        return protected, warnings

    @property
    def options(self) -> CollectOptions:
        return CollectOptions(
            snapshotter=self.snapshotter,
            namespace=self.namespace,
            pod_log_dir=self.pod_log_dir,
            host_root=self.host_root,
            configured_images=self.configured_images,
        )

    async def take_inventory(self, now: datetime | None = None) -> Inventory:
        return await collect_inventory(
            self.cri,
            self.containerd,
            self.options,
            cache=self.usage_cache,
            now=now or self.clock(),
            log_paths=self.log_janitor.log_paths,
            statvfs=self.host.statvfs,
            image_mounts=self.image_mounts,
        )

    async def build_disk_report(
        self, now: datetime | None = None, *, logs_policy: LogsPolicy | None = None, keep: Sequence[str] = ()
    ) -> DiskReport:
        """`node-janitor df` for this node now (the agent's status uses it too); `keep`: images.keep patterns.
        It only reads, so it does not wait for a run in progress (it then sees the node mid-run)."""
        now = now or self.clock()
        inventory = await self.take_inventory(now)
        last_used, _ = await self.remember_last_use(inventory, now)
        return build_disk_report(inventory, now, last_used=last_used, logs_policy=logs_policy, keep=keep)

    async def remember_last_use(self, inventory: Inventory, now: datetime) -> tuple[dict[str, datetime], list[str]]:
        """The last-use times with what `inventory` shows, saved (see `state`), and the warnings of the load and
        the save. Loads, observes and saves under one lock: a report beside a run never writes back an older
        file over the run's. On a full disk the save is the write that fails (ENOSPC): a warning, never a reason
        to stop."""
        warnings: list[str] = []
        async with self._state_lock:
            known, warning = await asyncio.to_thread(self.state.load)
            if warning:
                warnings.append(warning)
            last_used = observe_last_used(inventory, now, known)
            if (warning := await asyncio.to_thread(self.state.save, last_used)) is not None:
                warnings.append(warning)
        return last_used, warnings

    async def run_once(
        self,
        rules: PolicyRules,
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        protected_images: ProtectedImages = (),
        on_plan: Callable[[Plan], None] | None = None,
        on_result: Callable[[ActionResult], None] | None = None,
        on_log_result: Callable[[LogActionResult], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        current_rules: Callable[[], PolicyRules] | None = None,
        headroom: int = 0,
    ) -> PruneReport:
        """One run of every rule (see the module docstring); never two at once. `should_stop`: asked before each
        image-store action is sent (see `Executor`). `current_rules`: the policy as of now, read again right before
        each action (image or log): paused, dryRun or logs disabled since the start skip it (`policy_halt`), and
        its images.keep patterns protect too. `headroom`: bytes expected on the image file system soon beyond the
        in-flight pulls (the agent's fill-rate projection), counted in its projected use (`plan_target`)."""
        async with self.lock, self.run_lock.hold() if self.run_lock else contextlib.nullcontext():
            return await self._run(
                rules,
                now,
                dry_run,
                protected_images,
                on_plan,
                on_result,
                on_log_result,
                should_stop,
                current_rules,
                headroom,
            )

    async def _run(
        self,
        rules: PolicyRules,
        now: datetime | None,
        dry_run: bool,
        protected_images: ProtectedImages,
        on_plan: Callable[[Plan], None] | None,
        on_result: Callable[[ActionResult], None] | None,
        on_log_result: Callable[[LogActionResult], None] | None,
        should_stop: Callable[[], bool] | None,
        current_rules: Callable[[], PolicyRules] | None = None,
        headroom: int = 0,
    ) -> PruneReport:
        """One run, phase by phase (the module docstring's steps); the caller holds the run locks."""
        now = now or self.clock()
        dry_run = dry_run or rules.dry_run
        if not callable(protected_images):
            protected_images = tuple(protected_images)  # read twice (plan, re-checks): an iterator would run dry
        if rules.paused:  # paused: nothing at all, not even an inventory or a state write
            return PruneReport(plan=Plan((), Target()), dry_run=dry_run, inventory=Inventory(taken_at=now), paused=True)
        settings = PlanSettings.from_rules(rules, protected_now(protected_images))
        settings = replace(settings, headroom_bytes=max(0, headroom), count_pulls_in_flight=self.count_pulls_in_flight)
        run = _Run(rules, now, dry_run, protected_images, settings)
        inventory, last_used = await self._observe(run)
        targets = await self._targets(run, inventory)
        log_pass = await self._log_pass(run, targets)
        with self._live_policy(run, on_log_result, current_rules) as (keep, image_gate):
            if log_pass is not None:
                targets = await self._logs_own_rules(log_pass, targets)
            report = await self._images(
                run, inventory, last_used, targets, keep, image_gate, on_plan, on_result, should_stop
            )
            if log_pass is not None:
                await self._logs_for_pressure_and_extra(run, log_pass, targets, report)
            report.next_eligible = _next_eligible(inventory, report.plan, run.settings)
            if not run.dry_run:
                await self._measure_short(report, run.settings, targets.watched())
        return report

    async def _observe(self, run: _Run) -> tuple[Inventory, dict[str, datetime]]:
        """Phase 1: the inventory, and last use remembered from it before anything is removed (a run that dies
        still leaves it behind; a dry run too: see the module docstring). Their warnings go to `run.warnings`."""
        inventory = await self.take_inventory(run.now)
        run.warnings.extend(inventory.warnings)
        last_used, state_warnings = await self.remember_last_use(inventory, run.now)
        run.warnings.extend(state_warnings)
        return inventory, last_used

    async def _targets(self, run: _Run, inventory: Inventory) -> _Targets:
        """Phase 2: what the run must free on the image and the log file systems (from the watermarks), and how
        those file systems relate: one shared disk, or a log disk of its own."""
        image_target = plan_target(inventory, run.settings)
        image_fs = inventory.file_system("imagefs")
        log_fs = inventory.file_system("logs")
        shared = await asyncio.to_thread(self.host.same_device, image_fs, log_fs)
        # The log file system is the logs' own when the pod log directory is the top of a file system the images do
        # not share (not a directory of the root disk, or of /var/log's): only then is its pressure theirs to
        # relieve (see `LogPass.reclaim`).
        own_fs = log_fs is not None and not shared and await asyncio.to_thread(self.host.fills_alone, log_fs)
        return _Targets(
            images=image_target,
            image_pressure=image_target.under_pressure,  # before what logs free shrinks the target
            logs=plan_target(inventory, run.settings, "logs"),
            image_fs=image_fs,
            log_fs=log_fs,
            shared=shared,
            own_fs=own_fs,
        )

    async def _log_pass(self, run: _Run, targets: _Targets) -> LogPass | None:
        """Phase 3a: the run's log pass, or None (no pod log directory, logs disabled, or the log file system
        unknown). With extraPaths rules, the trees they must never reach are learned first."""
        rules = run.rules
        if self.pod_log_dir is None or not rules.logs.enabled or targets.log_fs is None:
            return None
        protected: tuple[Path, ...] = ()
        if rules.logs.extra_paths:
            protected, protected_warnings = await self.protected_trees()
            run.warnings.extend(protected_warnings)
        return LogPass(
            self.cri,
            self.pod_log_dir,
            LogSettings.from_policy(rules.logs),
            clock=self.clock,
            janitor=self.log_janitor,
            dry_run=run.dry_run,
            host_root=self.host_root,
            lock=self.log_lock,
            protected=protected,
            extra_paths_within=self.extra_paths_within,
        )

    @contextlib.contextmanager
    def _live_policy(
        self,
        run: _Run,
        on_log_result: Callable[[LogActionResult], None] | None,
        current_rules: Callable[[], PolicyRules] | None,
    ) -> Iterator[tuple[Sequence[str] | Callable[[], Sequence[str]], Callable[[], str | None] | None]]:
        """For the actions of the run: the keep patterns and the image gate to re-check right before each image
        removal (the policy as of then, with `current_rules`), and the log janitor's gate and callback; the
        janitor's own are restored after the run (it may be the rotator's: its callback keeps being called, the
        run's is added for the run, and so also hears what the rotator does meanwhile)."""
        previous_on_log_result, previous_gate = self.log_janitor.on_result, self.log_janitor.gate
        if on_log_result is not None:
            self.log_janitor.on_result = _both(previous_on_log_result, on_log_result)
        keep: Sequence[str] | Callable[[], Sequence[str]] = run.settings.keep
        image_gate: Callable[[], str | None] | None = None
        if current_rules is not None:
            live, base = current_rules, run.settings.keep
            keep = lambda: (*base, *live().images.keep)  # noqa: E731
            image_gate = lambda: policy_halt(live())  # noqa: E731
            self.log_janitor.gate = lambda: policy_halt(live(), logs=True)
        try:
            yield keep, image_gate
        finally:
            self.log_janitor.on_result, self.log_janitor.gate = previous_on_log_result, previous_gate

    async def _logs_own_rules(self, log_pass: LogPass, targets: _Targets) -> _Targets:
        """Phase 3b, before any image: the logs' own rules (maxSize/maxFiles, orphans past their grace, leftovers)
        and the node budget, whatever the disk. On a file system logs and images share, what they freed is taken
        off the image target."""
        try:
            await log_pass.rules()
            await log_pass.reclaim(0)  # the node budget: the logs' own rule, whatever the disk
        except (RuntimeClientError, OSError) as exc:
            log_pass.report.errors.append(f"logs: {exc}")
        if targets.shared and log_pass.freed:  # what logs freed on a shared file system, images need not free
            images = replace(targets.images, bytes=max(0, targets.images.bytes - log_pass.freed))
            return replace(targets, images=images)
        return targets

    async def _images(
        self,
        run: _Run,
        inventory: Inventory,
        last_used: dict[str, datetime],
        targets: _Targets,
        keep: Sequence[str] | Callable[[], Sequence[str]],
        image_gate: Callable[[], str | None] | None,
        on_plan: Callable[[Plan], None] | None,
        on_result: Callable[[ActionResult], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> PruneReport:
        """Phase 4: the image plan (garbage, exited containers, unused images; towards the image target as the
        log rules left it), then, unless dry, its execution: each action re-checked right before it is sent."""
        plan = plan_cleanup(inventory, run.settings, run.now, last_used, target=targets.images)
        if on_plan:
            on_plan(plan)
        report = PruneReport(
            plan=plan, dry_run=run.dry_run, inventory=inventory, warnings=run.warnings, logs_target=targets.logs
        )
        if not report.dry_run and plan.actions:
            fs, host = report.image_fs, self.host
            executor = Executor(
                self.cri,
                self.containerd,
                (lambda: host.statvfs("imagefs", fs.path)) if fs else (lambda: None),
                snapshotter=inventory.snapshotter,
                on_result=on_result,
                protected_images=run.protected_images,
                keep=keep,
                sandbox_image=inventory.sandbox_image,
                configured_images=inventory.configured_images,
                should_stop=should_stop,
                gate=image_gate,
                image_mounts=self.image_mounts,
            )
            report.execution = await executor.apply(plan, inventory)
        return report

    async def _logs_for_pressure_and_extra(
        self, run: _Run, log_pass: LogPass, targets: _Targets, report: PruneReport
    ) -> None:
        """Phase 5, after the images: the log file system's own pressure (only on a file system that logs alone
        fill, and only files no container writes), then extraPaths; the pass's report, warnings and the log file
        system as measured after it go to `report`."""
        try:
            if targets.own_fs:  # a file system only logs fill: its pressure is theirs to relieve
                await log_pass.reclaim(targets.logs.bytes - log_pass.freed)
            await log_pass.extra()
        except (RuntimeClientError, OSError) as exc:
            log_pass.report.errors.append(f"logs: {exc}")
        report.logs = log_pass.report
        # The pass's warnings (a rule skipped, a pod log tree the runtime reports no sandbox for, ...) are the run's:
        # in the text, the JSON and the agent's status.
        run.warnings.extend(w for w in log_pass.report.warnings if w not in run.warnings)
        log_fs = targets.log_fs
        if not run.dry_run and log_fs is not None:
            try:
                report.logs_after = await asyncio.to_thread(self.host.statvfs, "logs", log_fs.path)
            except OSError as exc:
                run.warnings.append(f"cannot stat the log file system {log_fs.path}: {exc.strerror}")

    async def _measure_short(
        self,
        report: PruneReport,
        settings: PlanSettings,
        targets: Sequence[tuple[str, FileSystemEntry | None, bool]],
    ) -> None:
        """Phase 6: `report.short`: for each file system this run had a target on, what it still holds above its
        low watermark now; and one warning for those the run could not bring down (what is left is in use,
        protected, or logs within their own rules: those are never spent for pressure other data caused)."""
        for name, fs, had_target in targets:
            if fs is None or not had_target:
                continue
            try:
                after = await asyncio.to_thread(self.host.statvfs, name, fs.path)
            except OSError as exc:
                report.warnings.append(f"cannot stat {fs.path}: {exc.strerror}")
                continue
            short = max(0, after.used - int((after.used + after.available) * settings.low_percent / 100))
            report.short[name] = short
            if short:
                report.warnings.append(
                    f"target not reached: {name} ({fs.path}) is {format_bytes(short)} above lowPercent "
                    f"{settings.low_percent:g}; what is left is in use, protected, or logs within their own rules"
                )


@dataclass
class _Run:
    """What the phases of one run share: its inputs as of the start, and the warnings it gathers."""

    rules: PolicyRules
    now: datetime
    dry_run: bool
    protected_images: ProtectedImages
    settings: PlanSettings
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Targets:
    """One run's targets and file systems, from the inventory taken before anything was removed."""

    images: Target  # shrunk by what the logs' own rules freed when logs and images share a file system
    image_pressure: bool  # whether the image file system was above its high watermark at the start
    logs: Target
    image_fs: FileSystemEntry | None
    log_fs: FileSystemEntry | None
    shared: bool  # images and logs on one file system
    own_fs: bool  # the pod log directory is a file system of its own, that logs alone fill

    def watched(self) -> list[tuple[str, FileSystemEntry | None, bool]]:
        """The file systems whose shortfall is measured after the run, each with whether it had a target (a shared
        one once, as the image file system)."""
        watched = [("imagefs", self.image_fs, self.image_pressure)]
        if not self.shared:
            watched.append(("logs", self.log_fs, self.logs.under_pressure))
        return watched
