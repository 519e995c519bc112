"""The rules for one container's log directory: rotation at maxSize, maxFiles, compression, leftovers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime

from node_janitor.node.inventory import LogFileEntry
from node_janitor.node.logs.actions import LogAction, LogActionKind, LogReason, LogSettings, file_action, older_than
from node_janitor.node.logs.names import COMPRESS_SUFFIX, EPOCH, LogFileKind, LogName, parse_log_name


def plan_container_logs(
    files: Sequence[LogFileEntry], settings: LogSettings, now: datetime, *, rotate: bool = True
) -> list[LogAction]:
    """The rules for one container's log directory (all its attempts): rotation at maxSize, at most maxFiles
    files (newest kept: the live file, then rotated files newest first, then older attempts'), gzip of rotated
    files but the newest, and leftovers (stale `.tmp`, plain copies beside their `.gz`).

    Never removed here: a file the runtime still names as a container's log (the live one, or an exited
    container's, which `kubectl logs --previous` reads). Rotations come first, then removals, then compressions.
    """
    names = {os.path.basename(f.path) for f in files}
    rotations: list[LogAction] = []
    removals: list[LogAction] = []
    compressions: list[LogAction] = []
    ranked: list[tuple[LogFileEntry, LogName]] = []
    for f in sorted(files, key=lambda x: x.path):
        name = parse_log_name(os.path.basename(f.path))
        if name.kind is LogFileKind.TMP:
            if older_than(f.modified_at, now, settings.leftover_grace):
                removals.append(file_action(LogActionKind.REMOVE, f, LogReason.STALE_TMP, f.size))
        elif name.kind is LogFileKind.ROTATED and os.path.basename(f.path) + COMPRESS_SUFFIX in names:
            removals.append(file_action(LogActionKind.REMOVE, f, LogReason.COMPRESSED_COPY, f.size))
        elif name.kind is not LogFileKind.OTHER:
            ranked.append((f, name))

    # Newest first: higher attempt; within an attempt its live file, then rotated files newest first.
    ranked.sort(key=lambda fn: (fn[1].attempt, fn[1].kind is LogFileKind.LOG, fn[1].rotated_at or EPOCH), reverse=True)
    live = next(
        (f for f, n in ranked if n.kind is LogFileKind.LOG and f.container_id and f.container_state == "RUNNING"),
        None,
    )
    if not (rotate and live is not None and live.length >= settings.max_size):
        live = None  # nothing to rotate
    # Slots in rank order; None stands for the file the planned rotation makes, right after the live one.
    slots: list[LogFileEntry | None] = [f for f, _ in ranked]
    if live is not None:
        slots.insert(slots.index(live) + 1, None)
    discard = False
    for entry in reversed(slots[settings.max_files :]):  # oldest first, as kubelet does
        if entry is None:
            discard = True
        elif not entry.container_id:
            removals.append(file_action(LogActionKind.REMOVE, entry, LogReason.MAX_FILES, entry.size))
    if live is not None:
        rotations.append(
            file_action(
                LogActionKind.ROTATE,
                live,
                LogReason.MAX_SIZE,
                live.size if discard else 0,
                container_id=live.container_id,
                discard=discard,
                if_at_least=settings.max_size,
            )
        )
    if settings.compress:
        kinds = {f.path: n.kind for f, n in ranked}
        kept = slots[: settings.max_files]
        rotated = [e for e in kept if e is None or kinds[e.path] in (LogFileKind.ROTATED, LogFileKind.COMPRESSED)]
        for entry in rotated[1:]:  # the newest rotated file stays plain: log shippers may still read it
            if (
                entry is not None
                and kinds[entry.path] is LogFileKind.ROTATED
                and older_than(entry.modified_at, now, settings.settle)
            ):
                compressions.append(file_action(LogActionKind.COMPRESS, entry, LogReason.COMPRESS, 0))
    return rotations + removals + compressions
