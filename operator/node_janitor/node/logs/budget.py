"""The node budget and log-fs pressure: what logs give up beyond their per-container rules, fairly per pod.

Two needs, two sets of candidates (`plan_log_reclaim`):

* **nodeBudget** (the logs' own rule: the tree holds more than the policy allows): files no container writes,
  then the logs of exited containers that still exist (`kubectl logs --previous`), then, as a last resort, the
  live file of a running container rotated away;
* **log-fs pressure** (only ever asked for a log file system that logs alone fill, see `NodeEngine`): files no
  container writes, and nothing else: never a file the runtime names as a container's log, live or exited.

Either way, fair per pod: each next byte comes from the pod that holds the most, so one chatty pod gives up its
own old files before any other pod loses its `--previous` log."""

from __future__ import annotations

import heapq
import os
from collections.abc import Sequence
from datetime import datetime

from node_janitor.node.inventory import LogFileEntry
from node_janitor.node.logs.actions import (
    LogAction,
    LogActionKind,
    LogReason,
    LogSettings,
    file_action,
    freed_by,
    older_than,
)
from node_janitor.node.logs.names import EPOCH, LogFileKind, parse_log_name
from node_janitor.node.logs.tree import LogTree, pod_dir_of


def _remaining_files(tree: LogTree, planned: Sequence[LogAction]) -> list[LogFileEntry]:
    removed = {a.path for a in planned if a.kind is LogActionKind.REMOVE}
    removed |= {a.path for a in planned if a.kind is LogActionKind.ROTATE and a.discard}  # rotated away: empty
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
            rank = (name.attempt, name.rotated_at or EPOCH, f.path)
            if directory not in newest or rank > newest[directory]:
                newest[directory] = rank
    return {path for _, _, path in newest.values()}


def budget_excess(tree: LogTree, planned: Sequence[LogAction], budget: int | None) -> int:
    """Bytes above the node budget once `planned` is done (compressions counted as freeing nothing)."""
    if budget is None:
        return 0
    return max(0, tree.total_bytes - freed_by(planned) - budget)


def _running(f: LogFileEntry) -> bool:
    return bool(f.container_id) and f.container_state == "RUNNING"


def plan_log_reclaim(
    tree: LogTree,
    need: int,
    reason: LogReason,
    now: datetime,
    *,
    planned: Sequence[LogAction] = (),
    settings: LogSettings | None = None,
) -> list[LogAction]:
    """Free `need` bytes, fairly per pod: each next file comes from the pod that holds the most bytes now (all
    its files, live ones included), and within a pod oldest first (rotated, compressed, old attempts', orphaned
    pods', leftovers; a `.tmp` is skipped while a compression may still be writing it, and so is a fresh log of a
    container the snapshot did not list).

    Within a pod, a running container's newest rotated file (its tail: what `kubectl logs` shows right after a
    rotation) goes after the pod's other files no container writes. For `NODE_BUDGET` only, the log of an exited
    container that still exists (what `kubectl logs --previous` shows) goes after those, and last a running
    container's live file is rotated away (`discard`: its older files are gone by then, so no hole is cut in its
    lines). For any other reason (log-fs pressure) neither is ever planned."""
    settings = settings or LogSettings()
    if need <= 0:
        return []
    budget = reason is LogReason.NODE_BUDGET

    def busy(f: LogFileEntry) -> bool:
        kind = parse_log_name(os.path.basename(f.path)).kind
        if kind is LogFileKind.TMP:
            return not older_than(f.modified_at, now, settings.leftover_grace)
        # A live log of no container listed yet (one created after the snapshot's ListContainers) is new.
        return kind is LogFileKind.LOG and not f.container_id and not older_than(f.modified_at, now, settings.settle)

    remaining = _remaining_files(tree, planned)
    tails = _running_tails(remaining)
    held: dict[str, int] = {}
    removable: dict[str, list[LogFileEntry]] = {}
    live: dict[str, list[LogFileEntry]] = {}
    for f in remaining:
        pod = pod_dir_of(f.path)
        held[pod] = held.get(pod, 0) + f.size
        if f.size <= 0 or f.live or busy(f):
            if budget and f.live and _running(f) and f.size > 0:
                live.setdefault(pod, []).append(f)
            continue
        if f.container_id and not budget:  # an existing container's own log: never for pressure
            continue
        removable.setdefault(pod, []).append(f)
    for files in removable.values():
        files.sort(key=lambda f: (bool(f.container_id), f.path in tails, f.modified_at or EPOCH, f.path))
    for files in live.values():
        files.sort(key=lambda f: (-f.size, f.path))

    heap = [(-held[pod], pod) for pod in sorted(removable.keys() | live.keys())]
    heapq.heapify(heap)
    actions: list[LogAction] = []
    freed = 0
    while heap and freed < need:
        _, pod = heapq.heappop(heap)
        if removable.get(pod):
            f = removable[pod].pop(0)
            # An exited container's log names its container: the janitor's last check lets only that one go.
            actions.append(file_action(LogActionKind.REMOVE, f, reason, f.size, container_id=f.container_id))
        elif live.get(pod):
            f = live[pod].pop(0)
            actions.append(
                file_action(LogActionKind.ROTATE, f, reason, f.size, container_id=f.container_id, discard=True)
            )
        else:
            continue
        freed += f.size
        held[pod] -= f.size
        if removable.get(pod) or live.get(pod):
            heapq.heappush(heap, (-held[pod], pod))
    return actions
