"""Container logs in the CRI log tree: rotation, compression, leftovers, the node budget, orphaned pod
directories, and rules for other node logs.

The tree is kubelet's: `<root>/<namespace>_<pod>_<uid>/<container>/<attempt>.log`. File names follow kubelet's
container_log_manager, so that kubelet and node-janitor each understand the other's files:

* `<attempt>.log`: what the runtime writes for one attempt of a container (CRI's `log_path`);
* `<attempt>.log.<YYYYMMDD-HHMMSS>.<microseconds>`: a rotated file (kubelet's timestamp, in UTC, plus
  microseconds: with checks every 100 ms, second resolution collides, and a rename would overwrite a file);
* `<rotated>.gz`: its gzip copy, written to `<rotated>.tmp` first, then renamed;
* `*.tmp`: what a compression that died left behind.

Pure planning first (`plan_*`: a `LogTree` snapshot, settings and `now` in, ordered `LogAction`s out), then the
I/O: `scan_log_tree`/`collect_log_tree` take the snapshot, `LogJanitor` applies actions and `LogRotator` is the
fast rotation loop. The runtime, the clock and the file system root are injected, as in kubelet's
container_log_manager.go; unlike kubelet's single worker checking every 10 s, the rotator checks every
`checkInterval` and rotates many containers at once, so a fast writer stays near `maxSize`
(kubernetes#110630).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import glob
import gzip
import logging
import os
import re
import shutil
import stat
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from node_janitor.api.policy import ExtraLogPath, LogsPolicy
from node_janitor.executor import Outcome
from node_janitor.inventory import LogFileEntry
from node_janitor.runtime.errors import NotFoundError, RuntimeClientError
from node_janitor.runtime.records import CriContainer, CriContainerStatus, CriSandbox

log = logging.getLogger("node_janitor.logs")

ROTATED_TIME_FORMAT = "%Y%m%d-%H%M%S"  # kubelet's timestampFormat
COMPRESS_SUFFIX = ".gz"
TMP_SUFFIX = ".tmp"
SETTLE = timedelta(seconds=2)
"""A rotated file untouched for this long is complete: the runtime's old writer has flushed and closed it."""
LEFTOVER_GRACE = timedelta(minutes=1)
"""A `.tmp` file older than this is no compression in progress but the leftover of one that died."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---- file names ---------------------------------------------------------------------------------------------


class LogFileKind(StrEnum):
    LOG = "log"  # <attempt>.log
    ROTATED = "rotated"  # <attempt>.log.<timestamp>
    COMPRESSED = "compressed"  # <attempt>.log.<timestamp>.gz
    TMP = "tmp"  # *.tmp
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class LogName:
    kind: LogFileKind
    attempt: int = -1
    rotated_at: datetime | None = None


_NAME = re.compile(
    r"^(?P<attempt>\d+)\.log(?:\.(?P<stamp>\d{8}-\d{6})(?:\.(?P<micro>\d{6}))?(?P<gz>\.gz)?)?$", re.ASCII
)


def parse_log_name(name: str) -> LogName:
    """What a file in a container's log directory is, from its name alone."""
    if name.endswith(TMP_SUFFIX):
        return LogName(LogFileKind.TMP)
    m = _NAME.match(name)
    if m is None:
        return LogName(LogFileKind.OTHER)
    attempt = int(m["attempt"])
    if m["stamp"] is None:
        return LogName(LogFileKind.LOG, attempt)
    try:
        rotated_at = datetime.strptime(m["stamp"], ROTATED_TIME_FORMAT).replace(
            microsecond=int(m["micro"] or 0), tzinfo=UTC
        )
    except ValueError:
        return LogName(LogFileKind.OTHER)
    return LogName(LogFileKind.COMPRESSED if m["gz"] else LogFileKind.ROTATED, attempt, rotated_at)


def rotated_name(log_path: str, at: datetime) -> str:
    """`<log_path>.<YYYYMMDD-HHMMSS>.<microseconds>` in UTC: kubelet's name, unique at sub-second rates."""
    at = at.astimezone(UTC)
    return f"{log_path}.{at.strftime(ROTATED_TIME_FORMAT)}.{at.microsecond:06d}"


# ---- the snapshot ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodLogDir:
    path: str
    namespace: str
    name: str
    uid: str
    known: bool  # a sandbox of this pod UID exists in the runtime
    modified_at: datetime | None  # the newest change to the directory or anything in it
    size: int  # allocated bytes of its files


@dataclass(frozen=True)
class LogTree:
    root: str
    files: tuple[LogFileEntry, ...] = ()
    pods: tuple[PodLogDir, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def from_files(cls, root: str, files: Iterable[LogFileEntry]) -> LogTree:
        """A tree from an inventory's log files alone (pod directories derived from them)."""
        files = tuple(files)
        pods: dict[str, list[LogFileEntry]] = {}
        for f in files:
            pods.setdefault(pod_dir_of(f.path), []).append(f)
        return cls(
            root,
            files,
            tuple(
                PodLogDir(
                    path=path,
                    namespace=mine[0].pod_namespace,
                    name=mine[0].pod_name,
                    uid=mine[0].pod_uid,
                    known=not mine[0].orphaned,
                    modified_at=max((f.modified_at for f in mine if f.modified_at), default=None),
                    size=sum(f.size for f in mine),
                )
                for path, mine in sorted(pods.items())
            ),
        )


def pod_dir_of(path: str) -> str:
    return os.path.dirname(os.path.dirname(path))


# ---- actions --------------------------------------------------------------------------------------------------


class LogActionKind(StrEnum):
    ROTATE = "rotate-log"  # rename + ReopenContainerLog (+ remove the rotated file when `discard`)
    COMPRESS = "compress-log"
    REMOVE = "remove-log"
    REMOVE_POD_DIR = "remove-log-dir"
    REMOVE_NODE_LOG = "remove-node-log"  # a file an extraPaths rule governs


class LogReason(StrEnum):
    MAX_SIZE = "max-size"
    MAX_FILES = "max-files"
    COMPRESS = "compress"
    STALE_TMP = "stale-tmp"
    COMPRESSED_COPY = "compressed-copy"
    ORPHANED_POD = "orphaned-pod"
    NODE_BUDGET = "node-budget"
    LOG_FS_PRESSURE = "log-fs-pressure"
    MAX_AGE = "max-age"
    EXTRA_MAX_SIZE = "extra-max-size"


@dataclass(frozen=True, slots=True)
class LogAction:
    kind: LogActionKind
    path: str
    reason: LogReason
    bytes: int  # what it frees (0 for a plain rotation; unknown in advance for a compression)
    container_id: str = ""  # for rotations: the runtime container writing `path`
    pod: str = ""  # <namespace>/<name>
    container: str = ""
    discard: bool = False  # rotate, then remove the rotated file (budget, pressure, maxFiles 1)
    if_at_least: int = 0  # rotate only if the live file still has this many bytes

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(x for x in (self.pod, self.container) if x)


def freed_by(actions: Iterable[LogAction]) -> int:
    return sum(a.bytes for a in actions)


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The parsed, validated `logs` section of a policy, as the planning functions use it."""

    max_size: int = 10 * 2**20
    max_files: int = 5
    compress: bool = True
    node_budget: int | None = None
    remove_orphaned: bool = True
    orphan_grace: timedelta = timedelta(hours=1)
    extra_paths: tuple[ExtraLogPath, ...] = ()
    settle: timedelta = SETTLE
    leftover_grace: timedelta = LEFTOVER_GRACE

    def __post_init__(self) -> None:
        if self.max_size <= 0:
            raise ValueError(f"maxSize ({self.max_size}) must be greater than 0")
        if self.max_files < 1:
            raise ValueError(f"maxFiles ({self.max_files}) must be at least 1")
        if self.node_budget is not None and self.node_budget < 0:
            raise ValueError(f"nodeBudget ({self.node_budget}) must not be negative")

    @classmethod
    def from_policy(cls, policy: LogsPolicy) -> LogSettings:
        return cls(
            max_size=policy.max_size,
            max_files=policy.max_files,
            compress=policy.compress,
            node_budget=policy.node_budget,
            remove_orphaned=policy.remove_orphaned,
            orphan_grace=policy.orphan_grace_period,
            extra_paths=tuple(policy.extra_paths),
        )


# ---- pure planning --------------------------------------------------------------------------------------------


def _older_than(moment: datetime | None, now: datetime, age: timedelta) -> bool:
    return moment is not None and now - moment >= age


def _action(
    kind: LogActionKind,
    f: LogFileEntry,
    reason: LogReason,
    nbytes: int,
    *,
    container_id: str = "",
    discard: bool = False,
    if_at_least: int = 0,
) -> LogAction:
    return LogAction(
        kind,
        f.path,
        reason,
        nbytes,
        container_id=container_id,
        pod=f"{f.pod_namespace}/{f.pod_name}",
        container=f.container,
        discard=discard,
        if_at_least=if_at_least,
    )


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
            if _older_than(f.modified_at, now, settings.leftover_grace):
                removals.append(_action(LogActionKind.REMOVE, f, LogReason.STALE_TMP, f.size))
        elif name.kind is LogFileKind.ROTATED and os.path.basename(f.path) + COMPRESS_SUFFIX in names:
            removals.append(_action(LogActionKind.REMOVE, f, LogReason.COMPRESSED_COPY, f.size))
        elif name.kind is not LogFileKind.OTHER:
            ranked.append((f, name))

    # Newest first: higher attempt; within an attempt its live file, then rotated files newest first.
    ranked.sort(key=lambda fn: (fn[1].attempt, fn[1].kind is LogFileKind.LOG, fn[1].rotated_at or _EPOCH), reverse=True)
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
            removals.append(_action(LogActionKind.REMOVE, entry, LogReason.MAX_FILES, entry.size))
    if live is not None:
        rotations.append(
            _action(
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
                and _older_than(entry.modified_at, now, settings.settle)
            ):
                compressions.append(_action(LogActionKind.COMPRESS, entry, LogReason.COMPRESS, 0))
    return rotations + removals + compressions


def plan_log_rules(tree: LogTree, settings: LogSettings, now: datetime, *, rotate: bool = True) -> list[LogAction]:
    """Orphaned pod directories past their grace, then each container's rules (`plan_container_logs`)."""
    actions: list[LogAction] = []
    gone: set[str] = set()
    if settings.remove_orphaned:
        for pod in sorted(tree.pods, key=lambda p: p.path):
            if not pod.known and _older_than(pod.modified_at, now, settings.orphan_grace):
                actions.append(
                    LogAction(
                        LogActionKind.REMOVE_POD_DIR,
                        pod.path,
                        LogReason.ORPHANED_POD,
                        pod.size,
                        pod=f"{pod.namespace}/{pod.name}",
                    )
                )
                gone.add(pod.path)
    by_container: dict[str, list[LogFileEntry]] = {}
    for f in tree.files:
        if pod_dir_of(f.path) not in gone:
            by_container.setdefault(os.path.dirname(f.path), []).append(f)
    for _, files in sorted(by_container.items()):
        actions.extend(plan_container_logs(files, settings, now, rotate=rotate))
    return actions


def _remaining_files(tree: LogTree, planned: Sequence[LogAction]) -> list[LogFileEntry]:
    removed = {a.path for a in planned if a.kind is LogActionKind.REMOVE}
    dirs = {a.path for a in planned if a.kind is LogActionKind.REMOVE_POD_DIR}
    return [f for f in tree.files if f.path not in removed and pod_dir_of(f.path) not in dirs]


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
    writing it)."""
    settings = settings or LogSettings()
    if need <= 0:
        return []
    candidates = [
        f
        for f in _remaining_files(tree, planned)
        if not f.live
        and f.size > 0
        and not (
            parse_log_name(os.path.basename(f.path)).kind is LogFileKind.TMP
            and not _older_than(f.modified_at, now, settings.leftover_grace)
        )
    ]
    candidates.sort(key=lambda f: (f.modified_at or _EPOCH, f.path))
    actions: list[LogAction] = []
    freed = 0
    for f in candidates:
        if freed >= need:
            break
        actions.append(_action(LogActionKind.REMOVE, f, reason, f.size))
        freed += f.size
    return actions


def plan_live_reclaim(
    tree: LogTree, need: int, reason: LogReason, *, planned: Sequence[LogAction] = ()
) -> list[LogAction]:
    """Free `need` bytes by rotating the largest live files away (rotate, then remove the rotated file)."""
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
        actions.append(_action(LogActionKind.ROTATE, f, reason, f.size, container_id=f.container_id, discard=True))
        freed += f.size
    return actions


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


# ---- reading the tree -----------------------------------------------------------------------------------------

KnownLogs = Mapping[str, tuple[str, str]]  # log path -> (container id, state)


def known_logs_by_layout(
    root: Path, containers: Iterable[CriContainer], sandboxes: Iterable[CriSandbox]
) -> dict[str, tuple[str, str]]:
    """The log path kubelet gives each container (`<root>/<ns>_<pod>_<uid>/<name>/<attempt>.log`)."""
    sandbox_by_id = {s.id: s for s in sandboxes}
    known: dict[str, tuple[str, str]] = {}
    for c in containers:
        s = sandbox_by_id.get(c.pod_sandbox_id)
        if s is not None:
            path = str(root / f"{s.namespace}_{s.name}_{s.uid}" / c.name / f"{c.attempt}.log")
            # Two records for one path (should not happen): the running one names it.
            if path not in known or c.state == "RUNNING":
                known[path] = (c.id, c.state)
    return known


def _scandir(path: str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, UTC)


def scan_container_dir(
    path: str, namespace: str, pod_name: str, uid: str, known: KnownLogs, *, orphaned: bool = False
) -> list[LogFileEntry]:
    """The files of one container's log directory (regular files only; symlinks are never followed)."""
    out = []
    container = os.path.basename(path)
    for f in _scandir(path):
        try:
            if not f.is_file(follow_symlinks=False):
                continue
            st = f.stat(follow_symlinks=False)
        except OSError:
            continue
        cid, state = known.get(f.path, ("", ""))
        out.append(
            LogFileEntry(
                path=f.path,
                size=st.st_blocks * 512,
                pod_namespace=namespace,
                pod_name=pod_name,
                pod_uid=uid,
                container=container,
                modified_at=_mtime(st),
                live=bool(cid) and state != "EXITED",
                orphaned=orphaned,
                length=st.st_size,
                container_id=cid,
                container_state=state,
            )
        )
    return out


def scan_log_tree(root: Path, containers: Iterable[CriContainer], sandboxes: Iterable[CriSandbox]) -> LogTree:
    """Walk `<root>/<namespace>_<pod>_<uid>/<container>/<files>` with os.scandir.

    A file is live while it is the log of a container the runtime knows and that has not exited; a pod
    directory is orphaned when no sandbox of its pod UID exists any more.
    """
    sandboxes = list(sandboxes)
    pod_uids = {s.uid for s in sandboxes}
    known = known_logs_by_layout(root, containers, sandboxes)
    files: list[LogFileEntry] = []
    pods: list[PodLogDir] = []
    for pod_dir in sorted(_scandir(str(root)), key=lambda e: e.name):
        try:
            if not pod_dir.is_dir(follow_symlinks=False):
                continue
            newest = _mtime(pod_dir.stat(follow_symlinks=False))
        except OSError:
            continue
        parts = pod_dir.name.split("_")
        if len(parts) != 3:
            continue
        namespace, pod_name, uid = parts
        mine: list[LogFileEntry] = []
        for container_dir in _scandir(pod_dir.path):
            try:
                if not container_dir.is_dir(follow_symlinks=False):
                    continue
                newest = max(newest, _mtime(container_dir.stat(follow_symlinks=False)))
            except OSError:
                continue
            mine.extend(
                scan_container_dir(container_dir.path, namespace, pod_name, uid, known, orphaned=uid not in pod_uids)
            )
        newest = max([newest, *(f.modified_at for f in mine if f.modified_at)])
        files.extend(mine)
        pods.append(
            PodLogDir(pod_dir.path, namespace, pod_name, uid, uid in pod_uids, newest, sum(f.size for f in mine))
        )
    return LogTree(str(root), tuple(files), tuple(pods))


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


class LogRuntime(Protocol):
    """What log management needs from CRI."""

    async def list_containers(self) -> list[CriContainer]: ...
    async def list_pod_sandboxes(self) -> list[CriSandbox]: ...
    async def container_status(self, container_id: str) -> CriContainerStatus: ...
    async def reopen_container_log(self, container_id: str) -> None: ...


async def collect_log_tree(cri: LogRuntime, root: Path) -> LogTree:
    """A snapshot of the tree as the runtime sees it now (the walk runs in a thread)."""
    containers, sandboxes = await asyncio.gather(cri.list_containers(), cri.list_pod_sandboxes())
    return await asyncio.to_thread(scan_log_tree, root, containers, sandboxes)


# ---- applying actions -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogActionResult:
    action: LogAction
    outcome: Outcome
    message: str = ""
    freed: int = 0  # bytes really freed on disk
    rotated_path: str = ""  # for rotations: the file the live log became
    rotated_length: int = 0  # for rotations: its length right after the runtime reopened the log


def _rename_noreplace(src: str, dst: str) -> None:
    """rename(2) that never overwrites `dst` (FileExistsError instead): link, then unlink the old name. A
    writer holding the file open keeps writing to the same inode throughout."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(dst):  # a file system without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _remove_file(path: str) -> tuple[Outcome, str, int]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    if not stat.S_ISREG(st.st_mode):
        return Outcome.SKIPPED, "not a regular file", 0
    try:
        os.unlink(path)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    return Outcome.DONE, "", st.st_blocks * 512


def _tree_bytes(path: str) -> int:
    total = 0
    for top, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
    return total


def _remove_tree(path: str) -> tuple[Outcome, str, int]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    if not stat.S_ISDIR(st.st_mode):
        return Outcome.SKIPPED, "not a directory", 0
    size = _tree_bytes(path)
    errors: list[str] = []

    def on_exc(_func: object, p: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            errors.append(f"{p}: {exc}")

    # Symlinks are removed, never followed.
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=on_exc)
    else:
        shutil.rmtree(path, onerror=lambda f, p, info: on_exc(f, p, info[1]))
    if errors:
        left = _tree_bytes(path) if os.path.lexists(path) else 0
        return Outcome.FAILED, "; ".join(errors[:3]), size - left
    return Outcome.DONE, "", size


def _gzip_file(path: str, level: int) -> tuple[Outcome, str, int]:
    """gzip `path` to `path.tmp`, fsync, rename to `path.gz`, remove `path`. Skipped (nothing changed) if the
    file grows while it is read: its writer has not finished with it."""
    tmp = path + TMP_SUFFIX
    dst = path + COMPRESS_SUFFIX
    try:
        src = open(path, "rb")  # noqa: SIM115 (closed below, before the rename)
    except FileNotFoundError:
        return Outcome.DONE, "already gone", 0
    try:
        before = os.fstat(src.fileno())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, stat.S_IMODE(before.st_mode) or 0o640)
        try:
            with os.fdopen(fd, "wb") as raw:
                with gzip.GzipFile(
                    os.path.basename(path), "wb", compresslevel=level, fileobj=raw, mtime=int(before.st_mtime)
                ) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
            after = os.stat(path)
            if (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
                os.unlink(tmp)
                return Outcome.SKIPPED, "still being written", 0
            os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
            _rename_noreplace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        src.close()
    os.unlink(path)
    return Outcome.DONE, "", max(0, before.st_blocks * 512 - os.stat(dst).st_blocks * 512)


T = TypeVar("T")


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
    ) -> None:
        self.cri = cri
        self.clock = clock
        self.host_root = host_root
        self.compress_level = compress_level
        self.on_result = on_result
        self.counts: Counter[str] = Counter()  # "<kind> <reason> <outcome>" -> actions
        self.freed: Counter[str] = Counter()  # reason -> bytes freed
        self._compressing = asyncio.Semaphore(compress_workers)
        self._locks: dict[str, list[Any]] = {}  # path -> [lock, users]
        self._pods: set[str] | None = None

    def host_path(self, runtime_path: str) -> str:
        """A path the runtime reports (on the host), as this process sees it."""
        if str(self.host_root) == "/":
            return runtime_path
        return os.path.join(str(self.host_root), runtime_path.lstrip("/"))

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
        async with self._lock(action.path):
            try:
                result = await self._apply(action)
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
        )
        if self.on_result:
            self.on_result(result)
        return result

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

    async def _apply(self, action: LogAction) -> LogActionResult:
        match action.kind:
            case LogActionKind.ROTATE:
                return await self._rotate(action)
            case LogActionKind.COMPRESS:
                async with self._compressing:
                    outcome, message, freed = await asyncio.to_thread(_gzip_file, action.path, self.compress_level)
                return LogActionResult(action, outcome, message, freed)
            case LogActionKind.REMOVE | LogActionKind.REMOVE_NODE_LOG:
                outcome, message, freed = await asyncio.to_thread(_remove_file, action.path)
                return LogActionResult(action, outcome, message, freed)
            case LogActionKind.REMOVE_POD_DIR:
                uid = os.path.basename(action.path).rsplit("_", 1)[-1]
                if self._pods is None:
                    self._pods = {s.uid for s in await self.cri.list_pod_sandboxes()}
                if uid in self._pods:
                    return LogActionResult(action, Outcome.SKIPPED, "the pod exists again")
                outcome, message, freed = await asyncio.to_thread(_remove_tree, action.path)
                return LogActionResult(action, outcome, message, freed)
        return LogActionResult(action, Outcome.FAILED, f"unknown action kind {action.kind}")  # pragma: no cover

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
                _rename_noreplace(path, rotated)
                break
            except FileExistsError:
                at += timedelta(microseconds=1)
        try:
            await self.cri.reopen_container_log(action.container_id)
        except RuntimeClientError as exc:
            try:
                _rename_noreplace(rotated, path)
                note = "renamed back"
            except OSError as back:
                note = f"left as {os.path.basename(rotated)} ({back.strerror or back})"
            return LogActionResult(action, Outcome.FAILED, f"ReopenContainerLog failed ({exc}); {note}")
        try:
            rotated_length = os.stat(rotated).st_size
        except FileNotFoundError:  # removed meanwhile (another pass over budget): the rotation itself is done
            rotated_length = 0
        if action.discard:
            _, _, freed = _remove_file(rotated)
            return LogActionResult(action, Outcome.DONE, "rotated away and removed", freed, rotated, rotated_length)
        return LogActionResult(action, Outcome.DONE, "", 0, rotated, rotated_length)


# ---- one pass of every rule, and the fast loop --------------------------------------------------------------


@dataclass
class LogPassReport:
    """What one pass planned (and, unless a dry run, did), step by step."""

    rules: list[LogAction] = field(default_factory=list)
    reclaim: list[LogAction] = field(default_factory=list)  # budget / pressure: files no container writes
    live: list[LogAction] = field(default_factory=list)  # budget / pressure: live files rotated away
    extra: list[LogAction] = field(default_factory=list)
    results: list[LogActionResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

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
    """Every log rule once, in steps a caller may interleave with other work (prune runs the image plan between
    `reclaim` and `reclaim_live` when logs and images share a file system):

    1. `rules()`: orphaned pod directories, then each container's rules (rotation, maxFiles, compression,
       leftovers);
    2. `reclaim(need)`: files no container writes, oldest first, for the node budget or log-fs pressure;
    3. `reclaim_live(need)`: the largest live files rotated away;
    4. `extra()`: the extraPaths rules.

    Each step plans on a fresh snapshot taken after the previous step was applied, so compressions count for
    what they really freed; a dry run plans each step on the previous steps' predictions instead.
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
    ) -> None:
        self.cri = cri
        self.root = root
        self.settings = settings
        self.clock = clock
        self.janitor = janitor or LogJanitor(cri, clock=clock, host_root=host_root)
        self.dry_run = dry_run
        self.host_root = host_root
        self.report = LogPassReport()
        self._tree: LogTree | None = None
        self._pending: list[LogAction] = []  # planned, not in `_tree` yet (a dry run's predictions)

    @property
    def freed(self) -> int:
        """Bytes freed so far (planned, in a dry run)."""
        return self.report.planned_bytes if self.dry_run else self.report.freed_bytes

    async def _snapshot(self) -> LogTree:
        if self._tree is None:
            self._tree = await collect_log_tree(self.cri, self.root)
        return self._tree

    async def _apply(self, actions: list[LogAction]) -> None:
        if self.dry_run:
            self._pending += actions
        elif actions:
            self.report.results += await self.janitor.apply(actions)
            self._tree = None

    async def rules(self) -> list[LogAction]:
        tree = await self._snapshot()
        self.report.rules = plan_log_rules(tree, self.settings, self.clock())
        await self._apply(self.report.rules)
        return self.report.rules

    async def budget_excess(self) -> int:
        """Bytes above nodeBudget now (0 without a budget)."""
        if self.settings.node_budget is None:
            return 0
        return budget_excess(await self._snapshot(), self._pending, self.settings.node_budget)

    async def _reason(self, need: int) -> LogReason:
        return LogReason.NODE_BUDGET if await self.budget_excess() >= need else LogReason.LOG_FS_PRESSURE

    async def reclaim(self, need: int) -> list[LogAction]:
        """Free `need` bytes (and the budget's excess) from files no container writes, oldest first."""
        need = max(need, await self.budget_excess())
        if need <= 0:
            return []
        actions = plan_log_reclaim(
            await self._snapshot(),
            need,
            await self._reason(need),
            self.clock(),
            planned=self._pending,
            settings=self.settings,
        )
        self.report.reclaim += actions
        await self._apply(actions)
        return actions

    async def reclaim_live(self, need: int) -> list[LogAction]:
        """Free `need` bytes (and the budget's excess) by rotating the largest live files away."""
        need = max(need, await self.budget_excess())
        if need <= 0:
            return []
        actions = plan_live_reclaim(await self._snapshot(), need, await self._reason(need), planned=self._pending)
        self.report.live += actions
        await self._apply(actions)
        return actions

    async def total_bytes(self) -> int:
        """What the pod log tree takes now (predicted, in a dry run)."""
        tree = await self._snapshot()
        return tree.total_bytes - freed_by(self._pending)

    async def extra(self) -> list[LogAction]:
        if not self.settings.extra_paths:
            return []
        files = await asyncio.to_thread(scan_extra_paths, self.settings.extra_paths, self.host_root, [self.root])
        self.report.extra = plan_extra_paths(files, self.settings.extra_paths, self.clock())
        await self._apply(self.report.extra)
        return self.report.extra

    async def run(self, pressure_need: int = 0) -> LogPassReport:
        """All the steps; `pressure_need`: bytes the log file system has to lose (beyond what the rules free)."""
        await self.rules()
        await self.reclaim(pressure_need - self.freed)
        await self.reclaim_live(pressure_need - self.freed)
        await self.extra()
        return self.report


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
    host root (where the runtime's paths are, seen from this process).
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
    ) -> None:
        self.cri = cri
        self.pod_log_dir = pod_log_dir
        self.policy = policy
        self.settings = LogSettings.from_policy(policy)
        self.clock = clock
        self.host_root = host_root
        self.sweep_interval = sweep_interval.total_seconds()
        self.janitor = LogJanitor(
            cri, clock=clock, host_root=host_root, compress_level=compress_level, on_result=on_result
        )
        self._root = os.path.join(os.path.abspath(pod_log_dir), "")
        self._parallel = asyncio.Semaphore(max_parallel)
        self._known: dict[str, _Known] = {}  # container id -> its log path (immutable) and last seen state
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
        for cid in [cid for cid in self._known if cid not in listed]:
            self._lengths.pop(self._known.pop(cid).path, None)
        new = [cid for cid in listed if cid not in self._known]
        statuses = await asyncio.gather(*(self.cri.container_status(cid) for cid in new), return_exceptions=True)
        for cid, status in zip(new, statuses, strict=True):
            if isinstance(status, CriContainerStatus) and status.log_path:
                path = self.janitor.host_path(status.log_path)
                # Only the tree this rotator governs (another CRI client may log elsewhere).
                self._known[cid] = _Known(path, listed[cid].state, path.startswith(self._root))
        due: list[LogAction] = []
        for cid, known in self._known.items():
            known.state = listed[cid].state
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
        results = await asyncio.gather(*(self._limited(self.janitor.apply_one(a)) for a in due))
        done = [r for r in results if r.outcome is Outcome.DONE and not r.action.discard]
        rotated = {os.path.dirname(r.action.path) for r in done}
        # maxFiles right away (removals are quick), so that a directory never holds more than one file too many;
        # compressions go on in the background.
        await asyncio.gather(*(self._limited(self.tidy(d, compress_later=True)) for d in sorted(rotated)))
        return list(results)

    def known_logs(self) -> dict[str, tuple[str, str]]:
        return {k.path: (cid, k.state) for cid, k in self._known.items()}

    async def tidy(self, container_dir: str, *, compress_later: bool = False) -> list[LogActionResult]:
        """maxFiles, leftovers and compression for one container directory (never a rotation). With
        `compress_later`, compressions run in a background task (one per directory; if one is still running,
        they wait for the next tidy or sweep)."""
        parts = os.path.basename(os.path.dirname(container_dir)).split("_")
        if len(parts) != 3:
            return []
        namespace, name, uid = parts
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
            self.cri, self.pod_log_dir, self.settings, clock=self.clock, janitor=self.janitor, host_root=self.host_root
        )
        if budget_only:
            await logs.reclaim(0)
            await logs.reclaim_live(0)
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
