"""extraPaths: rules for node logs outside the pod log tree (journald, daemons' own files).

The globs are walked by hand (`glob.glob` follows directory symlinks: files outside the glob's tree were deleted
through `link -> elsewhere`, and two symlinks pointing at each other made it walk forever), bounded, and
removals go through `removal.remove_file_beneath`: relative to opened directories, following no link."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from node_janitor.api.node_paths import PROTECTED_TREES, glob_parts, glob_problem, glob_within, is_magic, match_part
from node_janitor.api.policy import ExtraLogPath
from node_janitor.node.logs.actions import LogAction, LogActionKind, LogReason
from node_janitor.node.logs.tree import mtime_of


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


MAX_WALK_ENTRIES = 200_000
"""Directory entries one pass looks at for all extraPaths rules together, at most (a glob like /var/**/*.log
over a big tree would otherwise walk for minutes, in a thread nothing can stop)."""
MAX_WALK_DEPTH = 32


@dataclass
class ExtraPathsScan:
    files: list[ExtraLogFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Walk:
    """One bounded walk over the host's files: no directory symlink followed (so no loop either), nothing
    protected entered, at most `max_entries` entries looked at, and it ends early when `stop` is set."""

    def __init__(self, root: str, skip: Sequence[str], max_entries: int, stop: threading.Event | None) -> None:
        self.root = root
        self.skip = skip  # host-relative trees (/var/lib/containerd, ...) never entered
        self.left = max_entries
        self.stop = stop
        self.unprintable = 0

    @property
    def over(self) -> bool:
        return self.left <= 0 or (self.stop is not None and self.stop.is_set())

    def _entered(self, path: str) -> bool:
        rel = "/" + os.path.relpath(path, self.root).lstrip(".")
        return not any(rel == t or rel.startswith(t.rstrip("/") + "/") for t in self.skip)

    def _entries(self, directory: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as it:
                entries = []
                for entry in it:
                    self.left -= 1
                    if self.over:
                        break
                    try:
                        entry.name.encode()
                    except UnicodeEncodeError:  # not UTF-8: it could not be reported, so it is not touched
                        self.unprintable += 1
                        continue
                    entries.append(entry)
                return entries
        except OSError:
            return []

    def files(self, parts: Sequence[str]) -> list[str]:
        """Regular files below the root matching the glob `parts`."""
        found: set[str] = set()
        seen: set[tuple[str, int]] = set()
        stack = [(self.root, 0)]
        while stack and not self.over:
            directory, i = stack.pop()
            if (directory, i) in seen or directory.count("/") - self.root.count("/") > MAX_WALK_DEPTH:
                continue
            seen.add((directory, i))
            part, last = parts[i], i == len(parts) - 1
            if part == "**":
                if not last:
                    stack.append((directory, i + 1))  # ** as no directory at all
                for entry in self._entries(directory):
                    if entry.name.startswith("."):
                        continue
                    if last and entry.is_file(follow_symlinks=False):
                        found.add(entry.path)
                    elif entry.is_dir(follow_symlinks=False) and self._entered(entry.path):
                        stack.append((entry.path, i))
            elif not is_magic(part):
                path = os.path.join(directory, part)
                self.left -= 1
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if last and stat.S_ISREG(st.st_mode):
                    found.add(path)
                elif not last and stat.S_ISDIR(st.st_mode) and self._entered(path):
                    stack.append((path, i + 1))
            else:
                for entry in self._entries(directory):
                    if not match_part(entry.name, part):
                        continue
                    if last and entry.is_file(follow_symlinks=False):
                        found.add(entry.path)
                    elif not last and entry.is_dir(follow_symlinks=False) and self._entered(entry.path):
                        stack.append((entry.path, i + 1))
        return sorted(found)


def walk_extra_paths(
    rules: Sequence[ExtraLogPath],
    host_root: Path,
    exclude: Sequence[Path],
    *,
    max_entries: int = MAX_WALK_ENTRIES,
    stop: threading.Event | None = None,
    within: Sequence[str] | None = None,
) -> ExtraPathsScan:
    """Regular files the rules' globs match under `host_root`, walked without following any directory symlink
    (a link never leads out of the glob's tree) and never into a protected tree: `PROTECTED_TREES`, and
    `exclude` (the pod log tree, which has its own rules, and the node's containerd and kubelet roots). A rule
    that reaches a protected tree is skipped whole (the policy should have been refused). With `within` (host
    directories, e.g. the ones the agent's pod mounts), a rule that is not literally below one of them is skipped
    with a warning too: this process could not reach the node's files there."""
    root = os.path.realpath(host_root)
    skip = list(PROTECTED_TREES)
    for tree in exclude:
        real = os.path.realpath(tree)
        if real == root or real.startswith(root.rstrip("/") + "/"):
            skip.append("/" + os.path.relpath(real, root).lstrip("."))
    walk = _Walk(root, skip, max_entries, stop)
    scan = ExtraPathsScan()
    for i, rule in enumerate(rules):
        problem = glob_problem(rule.glob, skip)
        if problem is not None:
            scan.warnings.append(f"extraPaths[{i}] ({rule.glob}) skipped: {problem}")
            continue
        if within is not None and not glob_within(rule.glob, within):
            served = ", ".join(within) or "none"
            scan.warnings.append(
                f"extraPaths[{i}] ({rule.glob}) skipped: outside the node directories this agent can reach ({served})"
            )
            continue
        for path in walk.files(glob_parts(rule.glob)):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                scan.files.append(ExtraLogFile(i, path, st.st_blocks * 512, mtime_of(st)))
        if walk.left <= 0:
            scan.warnings.append(
                f"extraPaths: the walk stopped after {max_entries} entries at rule {i} ({rule.glob}); "
                "narrower globs would let it finish"
            )
            break
    if walk.unprintable:
        scan.warnings.append(f"extraPaths: {walk.unprintable} names that are not UTF-8 were left alone")
    return scan


def scan_extra_paths(rules: Sequence[ExtraLogPath], host_root: Path, exclude: Sequence[Path]) -> list[ExtraLogFile]:
    """The files of `walk_extra_paths`."""
    return walk_extra_paths(rules, host_root, exclude).files
