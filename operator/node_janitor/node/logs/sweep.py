"""One pass of every log rule (`LogPass`): what `prune` runs, and the rotator's sweep."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from node_janitor.node.inventory import LogFileEntry
from node_janitor.node.logs.actions import (
    Clock,
    LogAction,
    LogActionKind,
    LogActionResult,
    LogReason,
    LogSettings,
    freed_by,
    utc_now,
)
from node_janitor.node.logs.budget import budget_excess, plan_log_reclaim
from node_janitor.node.logs.container import plan_container_logs
from node_janitor.node.logs.extra_paths import plan_extra_paths, walk_extra_paths
from node_janitor.node.logs.janitor import LogJanitor, log
from node_janitor.node.logs.lock import LogTreeLock
from node_janitor.node.logs.orphans import plan_orphaned_pods
from node_janitor.node.logs.tree import LogRuntime, LogTree, collect_log_tree, pod_dir_of


def plan_log_rules(tree: LogTree, settings: LogSettings, now: datetime, *, rotate: bool = True) -> list[LogAction]:
    """Orphaned pod directories past their grace (`plan_orphaned_pods`), then each container's rules
    (`plan_container_logs`)."""
    actions = plan_orphaned_pods(tree, settings, now)
    gone = {a.path for a in actions}
    by_container: dict[str, list[LogFileEntry]] = {}
    for f in tree.files:
        if pod_dir_of(f.path) not in gone:
            by_container.setdefault(os.path.dirname(f.path), []).append(f)
    for _, files in sorted(by_container.items()):
        actions.extend(plan_container_logs(files, settings, now, rotate=rotate))
    return actions


@dataclass
class LogPassReport:
    """What one pass planned (and, unless a dry run, did), step by step."""

    rules: list[LogAction] = field(default_factory=list)
    reclaim: list[LogAction] = field(default_factory=list)  # budget / log-fs pressure: files removed
    live: list[LogAction] = field(default_factory=list)  # budget only: live files rotated away
    extra: list[LogAction] = field(default_factory=list)
    results: list[LogActionResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. the pod log directory is a file, or unreadable

    @property
    def actions(self) -> list[LogAction]:
        return [*self.rules, *self.reclaim, *self.live, *self.extra]

    @property
    def planned_bytes(self) -> int:
        return freed_by(self.actions)

    @property
    def freed_bytes(self) -> int:
        return sum(r.freed for r in self.results)


class LogPass:
    """Every log rule once, in steps a caller may interleave with other work (a run plans images between
    `reclaim` and `extra`):

    1. `rules()`: orphaned pod directories, then each container's rules (rotation, maxFiles, compression,
       leftovers);
    2. `reclaim(need)`: the node budget's excess, then `need` bytes of log-fs pressure, fairly per pod
       (`plan_log_reclaim`: never a live log for pressure, nor the log of a container that still exists);
    3. `extra()`: the extraPaths rules.

    Each step plans on a fresh snapshot and applies its rotations and removals under the tree's lock
    (`LogTreeLock`, shared with the rotator: pass `lock=` the rotator's, or each instance locks the directory
    for itself), so compressions count for what they really freed and nothing is planned on files a rotation is
    moving; compressions run after the lock is released. A dry run plans each step on the previous steps'
    predictions instead, and takes no lock.
    """

    def __init__(
        self,
        cri: LogRuntime,
        root: Path,
        settings: LogSettings,
        *,
        clock: Clock = utc_now,
        janitor: LogJanitor | None = None,
        dry_run: bool = False,
        host_root: Path = Path("/"),
        lock: LogTreeLock | None = None,
        protected: Sequence[Path] = (),
        extra_paths_within: Sequence[str] | None = None,
    ) -> None:
        self.cri = cri
        self.root = root
        self.settings = settings
        self.clock = clock
        self.lock = lock or (janitor.tree_lock if janitor else None) or LogTreeLock(root)
        self.janitor = janitor or LogJanitor(cri, clock=clock, host_root=host_root)
        if self.janitor.tree_lock is None:  # compressions are put in place under the same lock
            self.janitor.tree_lock = self.lock
        self.dry_run = dry_run
        self.host_root = host_root
        self.protected = tuple(protected)  # trees extraPaths never reach, beside the defaults (runtime roots)
        self.extra_paths_within = extra_paths_within  # host directories extraPaths may reach (None: all)
        self.report = LogPassReport()
        self._tree: LogTree | None = None
        self._pending: list[LogAction] = []  # planned, not in `_tree` yet (a dry run's predictions)

    @property
    def freed(self) -> int:
        """Bytes freed so far (planned, in a dry run)."""
        return self.report.planned_bytes if self.dry_run else self.report.freed_bytes

    async def _snapshot(self) -> LogTree:
        if self._tree is None:
            self._tree = await collect_log_tree(self.cri, self.root, log_paths=self.janitor.log_paths)
            for warning in self._tree.warnings:
                self._warn(warning)
        return self._tree

    def _warn(self, warning: str) -> None:
        if warning not in self.report.warnings:
            self.report.warnings.append(warning)
            log.warning("%s", warning)

    async def _apply(self, actions: list[LogAction]) -> None:
        if self.dry_run:
            self._pending += actions
        elif actions:
            self.report.results += await self.janitor.apply(actions)
            self._tree = None

    async def _step(self, plan: Callable[[LogTree], list[LogAction]]) -> list[LogAction]:
        """Plan on what is there now (the rotator and the writers went on since the last step) and apply."""
        if self.dry_run:
            actions = plan(await self._snapshot())
            await self._apply(actions)
            return actions
        async with self.lock.hold():
            self._tree = None
            actions = plan(await self._snapshot())
            await self._apply([a for a in actions if a.kind is not LogActionKind.COMPRESS])
        await self._apply([a for a in actions if a.kind is LogActionKind.COMPRESS])
        return actions

    async def rules(self) -> list[LogAction]:
        self.report.rules = await self._step(lambda tree: plan_log_rules(tree, self.settings, self.clock()))
        return self.report.rules

    def _excess(self, tree: LogTree) -> int:
        return budget_excess(tree, self._pending, self.settings.node_budget)

    async def budget_excess(self) -> int:
        """Bytes above nodeBudget now (0 without a budget)."""
        return self._excess(await self._snapshot())

    async def reclaim(self, need: int = 0) -> list[LogAction]:
        """What logs give up beyond their per-container rules: first the node budget's excess (the logs' own
        rule: files no container writes, then exited containers' logs, then live files rotated away, fairly per
        pod), then `need` more bytes for log-fs pressure from files no container writes alone (never a file the
        runtime names as a container's log). See `plan_log_reclaim`. The caller asks `need` only for a log file
        system that logs alone fill (`NodeEngine`): logs never pay for pressure other data caused."""

        def plan(tree: LogTree) -> list[LogAction]:
            now = self.clock()
            excess = self._excess(tree)
            actions = plan_log_reclaim(
                tree, excess, LogReason.NODE_BUDGET, now, planned=self._pending, settings=self.settings
            )
            rest = need - freed_by(actions)
            actions += plan_log_reclaim(
                tree,
                rest,
                LogReason.LOG_FS_PRESSURE,
                now,
                planned=[*self._pending, *actions],
                settings=self.settings,
            )
            return actions

        step = await self._step(plan)
        self.report.reclaim += [a for a in step if a.kind is not LogActionKind.ROTATE]
        self.report.live += [a for a in step if a.kind is LogActionKind.ROTATE]
        return step

    async def total_bytes(self) -> int:
        """What the pod log tree takes now (predicted, in a dry run)."""
        tree = await self._snapshot()
        return tree.total_bytes - freed_by(self._pending)

    async def extra(self) -> list[LogAction]:
        """The extraPaths rules. The walk runs in a thread, bounded (`walk_extra_paths`); cancelled (Ctrl-C, the
        agent stopping), it stops at its next directory entry instead of holding the process until it ends."""
        if not self.settings.extra_paths:
            return []
        stop = threading.Event()
        try:
            scan = await asyncio.to_thread(
                walk_extra_paths,
                self.settings.extra_paths,
                self.host_root,
                [self.root, *self.protected],
                stop=stop,
                within=self.extra_paths_within,
            )
        finally:
            stop.set()
        for warning in scan.warnings:
            self._warn(warning)
        self.report.extra = plan_extra_paths(scan.files, self.settings.extra_paths, self.clock())
        await self._apply(self.report.extra)
        return self.report.extra

    async def run(self, pressure_need: int = 0) -> LogPassReport:
        """All the steps; `pressure_need`: bytes the log file system has to lose (beyond what the rules free)."""
        await self.rules()
        await self.reclaim(pressure_need - self.freed)
        await self.extra()
        return self.report
