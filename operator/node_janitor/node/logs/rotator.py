"""`LogRotator`: the fast rotation loop, beside the periodic full pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from node_janitor.api.policy import LogsPolicy
from node_janitor.node.logs.actions import (
    Clock,
    LogAction,
    LogActionKind,
    LogActionResult,
    LogReason,
    LogSettings,
    utc_now,
)
from node_janitor.node.logs.container import plan_container_logs
from node_janitor.node.logs.janitor import LogJanitor
from node_janitor.node.logs.lock import LogTreeLock
from node_janitor.node.logs.names import parse_pod_dir_name
from node_janitor.node.logs.sweep import LogPass, LogPassReport
from node_janitor.node.logs.tree import LogRuntime, scan_container_dir
from node_janitor.node.outcome import Outcome
from node_janitor.runtime.errors import RuntimeClientError

log = logging.getLogger("node_janitor.node.logs")


T = TypeVar("T")


@dataclass
class _Known:
    path: str
    state: str
    governed: bool  # under the pod log directory


class LogRotator:
    """The fast loop: every `checkInterval`, one ListContainers and a stat of each running container's log;
    the logs at or above maxSize are rotated concurrently. After a rotation the container's directory is tidied
    at once (maxFiles, leftovers) and its older rotated files are compressed in the background; every
    `sweep_interval` a full pass (`LogPass`) handles orphans, the node budget and extraPaths.

    Injectable like kubelet's container_log_manager: the CRI client, the clock, the pod log directory and the
    host root (where the runtime's paths are, seen from this process). `janitor` and `lock`: the node engine's
    (`NodeEngine.log_janitor`, `.log_lock`), so that the engine's passes and this loop share one janitor (one
    log-path cache, one callback) and one lock for the tree; without them the rotator makes its own (`on_result`
    and `compress_level` are then its janitor's). `protected`: trees its sweeps' extraPaths never reach beside
    the fixed ones (`NodeEngine.protected_trees`: containerd's root and state, the kubelet's root).
    """

    def __init__(
        self,
        cri: LogRuntime,
        pod_log_dir: Path,
        policy: LogsPolicy,
        *,
        clock: Clock = utc_now,
        host_root: Path = Path("/"),
        sweep_interval: timedelta = timedelta(seconds=10),
        max_parallel: int = 16,
        compress_level: int = 6,
        on_result: Callable[[LogActionResult], None] | None = None,
        janitor: LogJanitor | None = None,
        lock: LogTreeLock | None = None,
        protected: Sequence[Path] = (),
        extra_paths_within: Sequence[str] | None = None,
    ) -> None:
        self.cri = cri
        self.pod_log_dir = pod_log_dir
        self.policy = policy
        self.settings = LogSettings.from_policy(policy)
        self.clock = clock
        self.host_root = host_root
        self.sweep_interval = sweep_interval.total_seconds()
        self.lock = lock or (janitor.tree_lock if janitor else None) or LogTreeLock(pod_log_dir)
        self.janitor = janitor or LogJanitor(
            cri,
            clock=clock,
            host_root=host_root,
            compress_level=compress_level,
            on_result=on_result,
            tree_lock=self.lock,
        )
        if self.janitor.tree_lock is None:
            self.janitor.tree_lock = self.lock
        self.protected = tuple(protected)
        self.extra_paths_within = extra_paths_within
        self._root = os.path.join(os.path.abspath(pod_log_dir), "")
        self._parallel = asyncio.Semaphore(max_parallel)
        self._known: dict[str, _Known] = {}  # container id -> its log path and state at the last check
        self._compressing: dict[str, asyncio.Task[None]] = {}
        self._sweep: asyncio.Task[LogPassReport] | None = None
        self._tree_bytes: int | None = None  # the pod log tree's size after the last sweep
        self._growth = 0  # bytes the running containers wrote since that sweep began (an upper bound)
        self._lengths: dict[str, int] = {}  # live log path -> its length at the last check
        self.errors: list[str] = []

    async def _limited(self, work: Awaitable[T]) -> T:
        async with self._parallel:
            return await work

    async def check(self) -> list[LogActionResult]:
        """One check: rotate every running container's log that reached maxSize."""
        containers = await self.cri.list_containers()
        listed = {c.id: c for c in containers}
        paths = await self.janitor.log_paths.update(self.cri, containers)  # one ContainerStatus per new container
        # Only the tree this rotator governs (another CRI client may log elsewhere).
        self._known = {cid: _Known(path, listed[cid].state, path.startswith(self._root)) for cid, path in paths.items()}
        for path in self._lengths.keys() - {k.path for k in self._known.values()}:
            del self._lengths[path]
        due: list[LogAction] = []
        for cid, known in self._known.items():
            if known.state != "RUNNING" or not known.governed:
                continue
            try:
                length = os.stat(known.path).st_size
            except OSError:
                continue
            previous = self._lengths.get(known.path)
            self._growth += length - previous if previous is not None and length >= previous else length
            self._lengths[known.path] = length
            if length >= self.settings.max_size:
                due.append(
                    LogAction(
                        LogActionKind.ROTATE,
                        known.path,
                        LogReason.MAX_SIZE,
                        0,
                        container_id=cid,
                        discard=self.settings.max_files == 1,
                        if_at_least=self.settings.max_size,
                    )
                )
        if not due:
            return []
        async with self.lock.hold():  # no pass step plans or removes meanwhile (one lock for the tree)
            results = await asyncio.gather(*(self._limited(self.janitor.apply_one(a)) for a in due))
            done = [r for r in results if r.outcome is Outcome.DONE and not r.action.discard]
            rotated = {os.path.dirname(r.action.path) for r in done}
            # maxFiles right away (removals are quick), so that a directory never holds more than one file too
            # many; compressions go on in the background.
            await asyncio.gather(*(self._limited(self.tidy(d, compress_later=True)) for d in sorted(rotated)))
        return list(results)

    def known_logs(self) -> dict[str, tuple[str, str]]:
        return {k.path: (cid, k.state) for cid, k in self._known.items()}

    async def tidy(self, container_dir: str, *, compress_later: bool = False) -> list[LogActionResult]:
        """maxFiles, leftovers and compression for one container directory (never a rotation). With
        `compress_later`, compressions run in a background task (one per directory; if one is still running,
        they wait for the next tidy or sweep)."""
        parsed = parse_pod_dir_name(os.path.basename(os.path.dirname(container_dir)))
        if parsed is None:
            return []
        namespace, name, uid = parsed
        files = await asyncio.to_thread(scan_container_dir, container_dir, namespace, name, uid, self.known_logs())
        actions = plan_container_logs(files, self.settings, self.clock(), rotate=False)
        compressions = [a for a in actions if a.kind is LogActionKind.COMPRESS]
        others = [a for a in actions if a.kind is not LogActionKind.COMPRESS]
        results = await self.janitor.apply(others, wait=not compress_later)  # a check never waits for a gzip
        if not compress_later:
            return results + await self.janitor.apply(compressions)
        task = self._compressing.get(container_dir)
        if compressions and (task is None or task.done()):
            self._compressing[container_dir] = asyncio.create_task(self._compress(container_dir, compressions))
        return results

    async def _compress(self, container_dir: str, actions: list[LogAction]) -> None:
        try:
            await self.janitor.apply(actions)
        except Exception as exc:  # a background task must not die silently
            self.errors.append(f"compressing in {container_dir}: {exc}")
            log.exception("compressing in %s failed", container_dir)
        finally:
            self._compressing.pop(container_dir, None)

    async def sweep(self, *, budget_only: bool = False) -> LogPassReport:
        """A full pass of every rule (orphans, leftovers, maxFiles, compression, budget, extraPaths); with
        `budget_only`, just the node budget (no compression to wait for first)."""
        self._growth = 0
        logs = LogPass(
            self.cri,
            self.pod_log_dir,
            self.settings,
            clock=self.clock,
            janitor=self.janitor,
            host_root=self.host_root,
            lock=self.lock,
            protected=self.protected,
            extra_paths_within=self.extra_paths_within,
        )
        if budget_only:
            await logs.reclaim(0)
            report = logs.report
        else:
            report = await logs.run()
        self._tree_bytes = await logs.total_bytes()
        return report

    @property
    def over_budget(self) -> bool:
        """The tree may be over nodeBudget now: its size at the last sweep plus what was written since."""
        budget = self.settings.node_budget
        return budget is not None and self._tree_bytes is not None and self._tree_bytes + self._growth > budget

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Check every checkInterval until `stop` is set; a sweep starts every sweep_interval, or as soon as the
        writes since the last one may have passed nodeBudget (in the background, so that checks go on meanwhile).
        Runtime errors are logged, never fatal."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        interval = self.policy.check_interval.total_seconds()
        next_sweep = loop.time()
        try:
            while not stop.is_set():
                started = loop.time()
                try:
                    await self.check()
                except RuntimeClientError as exc:
                    log.warning("log check failed: %s", exc)
                if self._sweep is None or self._sweep.done():
                    if started >= next_sweep:
                        self._sweep = asyncio.create_task(self._safe_sweep())
                        next_sweep = started + self.sweep_interval
                    elif self.over_budget:
                        self._sweep = asyncio.create_task(self._safe_sweep(budget_only=True))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, interval - (loop.time() - started)))
        finally:
            await self.close()

    async def _safe_sweep(self, *, budget_only: bool = False) -> LogPassReport:
        try:
            return await self.sweep(budget_only=budget_only)
        except (RuntimeClientError, OSError) as exc:
            self.errors.append(f"sweep: {exc}")
            log.warning("log sweep failed: %s", exc)
            return LogPassReport()

    async def close(self) -> None:
        """Wait for background work (tidying, a sweep in progress) to finish."""
        pending: list[asyncio.Future[Any]] = [*self._compressing.values()]
        if self._sweep is not None:
            pending.append(self._sweep)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
