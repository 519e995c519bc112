"""The node budget and log-fs pressure: bytes freed from files no container writes, then from live files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime

from node_janitor.inventory import LogFileEntry
from node_janitor.logs.actions import LogAction, LogActionKind, LogReason, LogSettings, _action, _older_than, freed_by
from node_janitor.logs.names import _EPOCH, LogFileKind, parse_log_name
from node_janitor.logs.tree import LogTree, pod_dir_of


def _remaining_files(tree: LogTree, planned: Sequence[LogAction]) -> list[LogFileEntry]:
    removed = {a.path for a in planned if a.kind is LogActionKind.REMOVE}
    dirs = {a.path for a in planned if a.kind is LogActionKind.REMOVE_POD_DIR}
    return [f for f in tree.files if f.path not in removed and pod_dir_of(f.path) not in dirs]


def _running_tails(files: Sequence[LogFileEntry]) -> set[str]:
    """The newest rotated (or compressed) file of each container directory a running container logs to."""
    running = {os.path.dirname(f.path) for f in files if f.container_id and f.container_state == "RUNNING"}
    newest: dict[str, tuple[int, datetime, str]] = {}
    for f in files:
        directory = os.path.dirname(f.path)
        name = parse_log_name(os.path.basename(f.path))
        if directory in running and name.kind in (LogFileKind.ROTATED, LogFileKind.COMPRESSED):
            rank = (name.attempt, name.rotated_at or _EPOCH, f.path)
            if directory not in newest or rank > newest[directory]:
                newest[directory] = rank
    return {path for _, _, path in newest.values()}


def budget_excess(tree: LogTree, planned: Sequence[LogAction], budget: int | None) -> int:
    """Bytes above the node budget once `planned` is done (compressions counted as freeing nothing)."""
    if budget is None:
        return 0
    return max(0, tree.total_bytes - freed_by(planned) - budget)


def plan_log_reclaim(
    tree: LogTree,
    need: int,
    reason: LogReason,
    now: datetime,
    *,
    planned: Sequence[LogAction] = (),
    settings: LogSettings | None = None,
) -> list[LogAction]:
    """Free `need` bytes from files no container writes: oldest first across all containers and pods (rotated,
    compressed, old attempts', orphaned pods', leftovers; a `.tmp` is skipped while a compression may still be
    writing it, and so is a fresh log of a container the snapshot did not list).

    A running container's newest rotated file (its tail: what `kubectl logs` shows right after a rotation, while
    the new live file is still nearly empty) goes only after every other candidate, so that no running
    container is left with none of its lines while others' older files remain."""
    settings = settings or LogSettings()
    if need <= 0:
        return []

    def busy(f: LogFileEntry) -> bool:
        kind = parse_log_name(os.path.basename(f.path)).kind
        if kind is LogFileKind.TMP:
            return not _older_than(f.modified_at, now, settings.leftover_grace)
        # A live log of no container listed yet (one created after the snapshot's ListContainers) is new.
        return kind is LogFileKind.LOG and not f.container_id and not _older_than(f.modified_at, now, settings.settle)

    remaining = _remaining_files(tree, planned)
    candidates = [f for f in remaining if not f.live and f.size > 0 and not busy(f)]
    tails = _running_tails(remaining)
    candidates.sort(key=lambda f: (f.path in tails, f.modified_at or _EPOCH, f.path))
    actions: list[LogAction] = []
    freed = 0
    for f in candidates:
        if freed >= need:
            break
        actions.append(_action(LogActionKind.REMOVE, f, reason, f.size))
        freed += f.size
    return actions


def plan_live_reclaim(
    tree: LogTree, need: int, reason: LogReason, *, planned: Sequence[LogAction] = (), discard: bool = True
) -> list[LogAction]:
    """Rotate the largest live files until they hold `need` bytes. With `discard` (a prediction: what a dry run
    reports), the rotated files count as removed; without, the rotation frees nothing by itself and what it
    rotated goes with the other files no container writes, oldest first (`LogPass.reclaim_live`)."""
    if need <= 0:
        return []
    rotating = {a.path for a in planned if a.kind is LogActionKind.ROTATE}
    live = [
        f
        for f in _remaining_files(tree, planned)
        if f.container_id and f.container_state == "RUNNING" and f.size > 0 and f.path not in rotating
    ]
    live.sort(key=lambda f: (-f.size, f.path))
    actions: list[LogAction] = []
    freed = 0
    for f in live:
        if freed >= need:
            break
        actions.append(
            _action(
                LogActionKind.ROTATE, f, reason, f.size if discard else 0, container_id=f.container_id, discard=discard
            )
        )
        freed += f.size
    return actions
