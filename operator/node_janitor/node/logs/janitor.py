"""`LogJanitor`: applies LogActions (rotation, compression, removals), one at a time per path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from node_janitor.node.logs.actions import Clock, LogAction, LogActionKind, LogActionResult, utc_now
from node_janitor.node.logs.compression import GzipDraft, commit_gzip_draft, discard_gzip_draft, write_gzip_draft
from node_janitor.node.logs.lock import LogTreeLock
from node_janitor.node.logs.names import LogFileKind, parse_log_name, rotated_name
from node_janitor.node.logs.orphans import remove_pod_log_dir
from node_janitor.node.logs.removal import remove_file, remove_file_beneath
from node_janitor.node.logs.rotation import rename_noreplace
from node_janitor.node.logs.tree import LogPaths, LogRuntime
from node_janitor.node.outcome import Outcome
from node_janitor.runtime.errors import NotFoundError, RuntimeClientError

log = logging.getLogger("node_janitor.node.logs")


class LogJanitor:
    """Applies LogActions. Something already gone counts as done; one failed action never stops the others;
    every action is logged with its reason and counted.

    Rotation follows kubelet: check that the runtime still runs the container and names this file as its log
    (a file the runtime no longer knows is never reopened), rename the file, then CRI `ReopenContainerLog`; if
    the reopen fails, the rotated file is renamed back (never over a file that appeared meanwhile).
    """

    def __init__(
        self,
        cri: LogRuntime,
        *,
        clock: Clock = utc_now,
        host_root: Path = Path("/"),
        compress_level: int = 6,
        compress_workers: int = 2,
        on_result: Callable[[LogActionResult], None] | None = None,
        tree_lock: LogTreeLock | None = None,
    ) -> None:
        self.cri = cri
        self.tree_lock = tree_lock  # the pod log tree's (`LogTreeLock`): compressions are put in place under it
        self.clock = clock
        self.host_root = host_root
        self.compress_level = compress_level
        self.on_result = on_result
        self.gate: Callable[[], str | None] | None = None
        """Asked right before each action: a reason not to act now (e.g. the agent's policy was paused since the
        action was planned); the action is then skipped with that reason."""
        self.counts: Counter[str] = Counter()  # "<kind> <reason> <outcome>" -> actions
        self.freed: Counter[str] = Counter()  # reason -> bytes freed
        self._compressing = asyncio.Semaphore(compress_workers)
        self._locks: dict[str, list[Any]] = {}  # path -> [lock, users]
        self._pods: set[str] | None = None
        self.log_paths = LogPaths(host_root)  # container id -> log path, for every pass and check of this node

    def host_path(self, runtime_path: str) -> str:
        """A path the runtime reports (on the host), as this process sees it."""
        return self.log_paths.host_path(runtime_path)

    async def apply(self, actions: Sequence[LogAction], *, wait: bool = True) -> list[LogActionResult]:
        """Apply `actions` in order. Without `wait`, an action on a file another action is busy with (e.g. a
        compression) is left out of the results instead of waiting for it."""
        self._pods = None  # sandboxes are listed again (once) before removing any pod directory
        results = []
        for action in actions:
            if wait or action.path not in self._locks:
                results.append(await self.apply_one(action))
        return results

    async def apply_one(self, action: LogAction) -> LogActionResult:
        try:
            if (gated := self._gated(action)) is not None:
                result = gated
            elif action.kind is LogActionKind.COMPRESS:
                result = await self._compress(action)
            else:
                async with self._lock(action.path):  # asked again: the lock may have taken a while
                    result = self._gated(action) or await self._apply(action)
        except RuntimeClientError as exc:
            result = LogActionResult(action, Outcome.FAILED, str(exc))
        except OSError as exc:  # e.g. ENOSPC writing a compressed copy: report, go on
            result = LogActionResult(action, Outcome.FAILED, f"{exc.__class__.__name__}: {exc}")
        self.counts[f"{action.kind} {action.reason} {result.outcome}"] += 1
        self.freed[str(action.reason)] += result.freed
        log.log(
            logging.WARNING if result.outcome is Outcome.FAILED else logging.INFO,
            "log action kind=%s path=%s reason=%s bytes=%d freed=%d outcome=%s %s",
            action.kind,
            action.path,
            action.reason,
            action.bytes,
            result.freed,
            result.outcome,
            result.message,
            extra={
                "kind": str(action.kind),
                "path": action.path,
                "reason": str(action.reason),
                "bytes": action.bytes,
                "freed": result.freed,
                "outcome": str(result.outcome),
                "detail": result.message,
            },
        )
        if self.on_result:
            self.on_result(result)
        return result

    def _gated(self, action: LogAction) -> LogActionResult | None:
        why = self.gate() if self.gate is not None else None
        return LogActionResult(action, Outcome.SKIPPED, why) if why is not None else None

    @contextlib.asynccontextmanager
    async def _lock(self, path: str) -> AsyncIterator[None]:
        """One action at a time per path (a check and a sweep may both want to rotate the same log)."""
        entry = self._locks.setdefault(path, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[path]

    async def _compress(self, action: LogAction) -> LogActionResult:
        """Write the copy (long: no tree lock held), then put it in place under the tree lock (quick), taking the
        locks in the order passes do (tree, then path). Never call it while holding the tree lock."""
        async with self._lock(action.path), self._compressing:
            draft = await asyncio.to_thread(write_gzip_draft, action.path, self.compress_level)
        if not isinstance(draft, GzipDraft):
            return LogActionResult(action, *draft)
        try:
            async with self._tree(), self._lock(action.path):
                outcome, message, freed = await asyncio.to_thread(commit_gzip_draft, draft)
        except BaseException:
            discard_gzip_draft(draft)
            raise
        return LogActionResult(action, outcome, message, freed)

    def _tree(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.tree_lock.hold() if self.tree_lock is not None else contextlib.nullcontext()

    async def _apply(self, action: LogAction) -> LogActionResult:
        match action.kind:
            case LogActionKind.ROTATE:
                return await self._rotate(action)
            case LogActionKind.REMOVE:  # <root>/<pod>/<container>/<file>: nothing followed below <root>
                if (why := await self._runtime_keeps(action)) is not None:
                    return LogActionResult(action, Outcome.SKIPPED, why)
                top = os.path.dirname(os.path.dirname(os.path.dirname(action.path)))
                outcome, message, freed = await asyncio.to_thread(remove_file_beneath, top, action.path)
                return LogActionResult(action, outcome, message, freed)
            case LogActionKind.REMOVE_NODE_LOG:  # nothing followed below the host root
                top = str(self.host_root)
                outcome, message, freed = await asyncio.to_thread(remove_file_beneath, top, action.path)
                return LogActionResult(action, outcome, message, freed)
            case LogActionKind.REMOVE_POD_DIR:
                uid = os.path.basename(action.path).rsplit("_", 1)[-1]
                if self._pods is None:
                    self._pods = {s.uid for s in await self.cri.list_pod_sandboxes()}
                if not self._pods:
                    return LogActionResult(action, Outcome.SKIPPED, "the runtime reports no pod sandbox at all")
                if uid in self._pods:
                    return LogActionResult(action, Outcome.SKIPPED, "the pod exists again")
                outcome, message, freed = await asyncio.to_thread(remove_pod_log_dir, action.path)
                return LogActionResult(action, outcome, message, freed)
        return LogActionResult(action, Outcome.FAILED, f"unknown action kind {action.kind}")  # pragma: no cover

    async def _runtime_keeps(self, action: LogAction) -> str | None:
        """Why a file of the runtime's own name shape (`<attempt>.log`) must stay, asked of the runtime right before
        it goes: the runtime names it as the log of a container the plan did not mean (a running one, whose
        ContainerStatus had failed when the tree was walked, so that its live file looked like nobody's), or it
        cannot tell (ContainerStatus fails again for a container of that name and attempt). A plan may remove an
        exited container's log only naming that container (`container_id`: the node budget's last resort).
        Rotated and compressed files are never written by the runtime: no check."""
        name = parse_log_name(os.path.basename(action.path))
        if name.kind is not LogFileKind.LOG:
            return None
        containers = await self.cri.list_containers()
        paths = await self.log_paths.update(self.cri, containers)
        state = {c.id: c.state for c in containers}
        for cid, path in paths.items():
            if path == action.path and not (cid == action.container_id and state.get(cid) == "EXITED"):
                return f"the runtime names it as the log of container {cid} ({state.get(cid, '?').lower()})"
        container = os.path.basename(os.path.dirname(action.path))
        for c in containers:
            if c.id in self.log_paths.unresolved and (c.name, c.attempt) == (container, name.attempt):
                return f"cannot tell whether container {c.id} writes it (its ContainerStatus failed)"
        return None

    async def _still_running(self, container_id: str) -> bool:
        try:
            return (await self.cri.container_status(container_id)).state == "RUNNING"
        except NotFoundError:
            return False
        except RuntimeClientError:
            return True  # cannot tell: the reopen's failure stands

    async def _rotate(self, action: LogAction) -> LogActionResult:
        path = action.path
        try:
            status = await self.cri.container_status(action.container_id)
        except NotFoundError:
            return LogActionResult(action, Outcome.SKIPPED, "the container is gone; its log is not reopened")
        if status.state != "RUNNING":
            return LogActionResult(action, Outcome.SKIPPED, f"the container is {status.state.lower()}; not reopened")
        if self.host_path(status.log_path) != path:
            return LogActionResult(action, Outcome.SKIPPED, f"the container now logs to {status.log_path}")
        try:
            length = os.stat(path).st_size
        except FileNotFoundError:
            return LogActionResult(action, Outcome.SKIPPED, "no live file (the runtime has not written yet)")
        if length < action.if_at_least:
            return LogActionResult(action, Outcome.SKIPPED, "already rotated")
        at = self.clock()
        while True:
            rotated = rotated_name(path, at)
            try:
                rename_noreplace(path, rotated)
                break
            except FileExistsError:
                at += timedelta(microseconds=1)
        try:
            await self.cri.reopen_container_log(action.container_id)
        except RuntimeClientError as exc:
            try:
                rename_noreplace(rotated, path)
                note = "renamed back"
            except OSError as back:
                note = f"left as {os.path.basename(rotated)} ({back.strerror or back})"
            if not await self._still_running(action.container_id):  # it stopped meanwhile: nothing to reopen
                return LogActionResult(action, Outcome.SKIPPED, f"the container stopped during the rotation; {note}")
            return LogActionResult(action, Outcome.FAILED, f"ReopenContainerLog failed ({exc}); {note}")
        try:
            rotated_length = os.stat(rotated).st_size
        except FileNotFoundError:  # removed meanwhile (another pass over budget): the rotation itself is done
            rotated_length = 0
        if action.discard:
            _, _, freed = remove_file(rotated)
            return LogActionResult(action, Outcome.DONE, "rotated away and removed", freed, rotated, rotated_length)
        return LogActionResult(action, Outcome.DONE, "", 0, rotated, rotated_length)
