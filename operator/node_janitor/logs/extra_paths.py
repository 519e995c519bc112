"""extraPaths: rules for node logs outside the pod log tree (journald, daemons' own files)."""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from node_janitor.api.policy import ExtraLogPath
from node_janitor.logs.actions import LogAction, LogActionKind, LogReason
from node_janitor.logs.tree import _mtime


@dataclass(frozen=True, slots=True)
class ExtraLogFile:
    """A file matched by the `rule`-th extraPaths rule."""

    rule: int
    path: str
    size: int
    modified_at: datetime


def plan_extra_paths(files: Sequence[ExtraLogFile], rules: Sequence[ExtraLogPath], now: datetime) -> list[LogAction]:
    """Per rule: files older than maxAge go; then the oldest go while the rest exceed maxSize. The newest file
    of a rule is never removed for size: it is most likely the one a daemon still writes."""
    actions: list[LogAction] = []
    removed: set[str] = set()

    def remove(f: ExtraLogFile, reason: LogReason) -> None:
        removed.add(f.path)
        actions.append(LogAction(LogActionKind.REMOVE_NODE_LOG, f.path, reason, f.size))

    for i, rule in enumerate(rules):
        mine = sorted((f for f in files if f.rule == i), key=lambda f: (f.modified_at, f.path))
        if rule.max_age is not None:
            for f in mine:
                if f.path not in removed and now - f.modified_at >= rule.max_age:
                    remove(f, LogReason.MAX_AGE)
        if rule.max_size is not None:
            rest = [f for f in mine if f.path not in removed]
            total = sum(f.size for f in rest)
            for f in rest[:-1]:
                if total <= rule.max_size:
                    break
                remove(f, LogReason.EXTRA_MAX_SIZE)
                total -= f.size
    return actions


def scan_extra_paths(rules: Sequence[ExtraLogPath], host_root: Path, exclude: Sequence[Path]) -> list[ExtraLogFile]:
    """Regular files the rules' globs match under `host_root`; nothing under `exclude` (the pod log tree, which
    has its own rules) and nothing that resolves outside `host_root`."""
    root = os.path.realpath(host_root)
    excluded = [os.path.realpath(p) for p in exclude]

    def inside(path: str, top: str) -> bool:
        return path == top or path.startswith(top.rstrip("/") + "/")

    out = []
    for i, rule in enumerate(rules):
        pattern = os.path.join(str(host_root), rule.glob.lstrip("/"))
        for path in sorted(glob.glob(pattern, recursive=True)):
            real = os.path.realpath(path)
            if not inside(real, root) or any(inside(real, top) for top in excluded):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out.append(ExtraLogFile(i, path, st.st_blocks * 512, _mtime(st)))
    return out
