"""Orphaned pod log directories: what kubelet left of pods the runtime no longer has.

Only directories of kubelet's shape count (`<namespace>_<pod>_<uid>` with a real UID, holding container
directories of log files and nothing else: `PodLogDir.kubelet_shaped`), so a wrong `--pod-log-dir` (a home
directory, `my_photos_2019`) loses nothing; none counts while the runtime reports no sandbox at all
(`scan_log_tree`). Removal takes the log files and the emptied directories only, following no link.
"""

from __future__ import annotations

import os
from datetime import datetime

from node_janitor.node.logs.actions import LogAction, LogActionKind, LogReason, LogSettings, older_than
from node_janitor.node.logs.names import LogFileKind, is_container_dir_name, parse_log_name
from node_janitor.node.logs.removal import open_beneath, printable, unlink_regular
from node_janitor.node.logs.tree import LogTree
from node_janitor.node.outcome import Outcome


def plan_orphaned_pods(tree: LogTree, settings: LogSettings, now: datetime) -> list[LogAction]:
    """Pod directories of no known sandbox, quiet for the orphan grace period."""
    if not settings.remove_orphaned:
        return []
    return [
        LogAction(
            LogActionKind.REMOVE_POD_DIR, pod.path, LogReason.ORPHANED_POD, pod.size, pod=f"{pod.namespace}/{pod.name}"
        )
        for pod in sorted(tree.pods, key=lambda p: p.path)
        if not pod.known and pod.kubelet_shaped and older_than(pod.modified_at, now, settings.orphan_grace)
    ]


def remove_pod_log_dir(path: str) -> tuple[Outcome, str, int]:
    """Remove a pod's log directory: the log files in its container directories, then the emptied directories.
    Anything else stays, with the directories that hold it (the outcome says what)."""
    top, name = os.path.split(path)
    try:
        pod_fd = open_beneath(top, [name])
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    except NotADirectoryError:
        return Outcome.SKIPPED, "not a directory", 0
    freed = 0
    kept: list[str] = []
    try:
        for entry in os.scandir(pod_fd):
            if not (entry.is_dir(follow_symlinks=False) and is_container_dir_name(entry.name)):
                kept.append(entry.name)
                continue
            container_fd = open_beneath(top, [name, entry.name])
            try:
                for f in os.scandir(container_fd):
                    if parse_log_name(f.name).kind is LogFileKind.OTHER:
                        kept.append(f"{entry.name}/{f.name}")
                        continue
                    outcome, _, n = unlink_regular(container_fd, f.name)
                    freed += n
                    if outcome is not Outcome.DONE:
                        kept.append(f"{entry.name}/{f.name}")
            finally:
                os.close(container_fd)
            try:
                os.rmdir(entry.name, dir_fd=pod_fd)
            except FileNotFoundError:
                pass
            except OSError:
                kept.append(entry.name)  # something appeared meanwhile
    finally:
        os.close(pod_fd)
    if kept:
        shown = ", ".join(printable(k) for k in sorted(kept)[:3])
        return Outcome.SKIPPED, f"left what is not a log: {shown}{' ...' if len(kept) > 3 else ''}", freed
    top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.rmdir(name, dir_fd=top_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return Outcome.SKIPPED, f"not removed: {exc.strerror}", freed
    finally:
        os.close(top_fd)
    return Outcome.DONE, "", freed
