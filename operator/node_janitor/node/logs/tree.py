"""The CRI log tree as a snapshot (`LogTree`, `PodLogDir`) and the walk that takes it.

The tree is kubelet's: `<root>/<namespace>_<pod>_<uid>/<container>/<attempt>.log`, walked with os.scandir,
symlinks never followed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from node_janitor.node.inventory import LogFileEntry
from node_janitor.node.logs.names import LogFileKind, is_container_dir_name, parse_log_name, parse_pod_dir_name
from node_janitor.runtime.errors import NotFoundError, RuntimeClientError
from node_janitor.runtime.records import CriContainer, CriContainerStatus, CriSandbox


@dataclass(frozen=True, slots=True)
class PodLogDir:
    path: str
    namespace: str
    name: str
    uid: str
    known: bool  # a sandbox of this pod UID exists in the runtime (or the runtime reports none at all)
    modified_at: datetime | None  # the newest change to the directory or anything in it
    size: int  # allocated bytes of its files
    kubelet_shaped: bool = True  # container directories (one at least) of log files, and nothing else


@dataclass(frozen=True)
class LogTree:
    root: str
    files: tuple[LogFileEntry, ...] = ()
    pods: tuple[PodLogDir, ...] = ()
    warnings: tuple[str, ...] = ()

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


KnownLogs = Mapping[str, tuple[str, str]]  # log path -> (container id, state)


def known_logs(containers: Iterable[CriContainer], log_paths: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Each container's log path as the runtime names it (`log_paths`: container id -> path)."""
    known: dict[str, tuple[str, str]] = {}
    for c in containers:
        path = log_paths.get(c.id)
        # Two records for one path (should not happen): the running one names it.
        if path and (path not in known or c.state == "RUNNING"):
            known[path] = (c.id, c.state)
    return known


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


def mtime_of(st: os.stat_result) -> datetime:
    """A stat result's modification time, in UTC."""
    return datetime.fromtimestamp(st.st_mtime, UTC)


def _scan_container_dir(
    path: str, namespace: str, pod_name: str, uid: str, known: KnownLogs, orphaned: bool
) -> tuple[list[LogFileEntry], bool]:
    """The log files of one container's directory, and whether it holds only those (see `scan_container_dir`)."""
    out = []
    only_logs = True
    container = os.path.basename(path)
    for f in _scandir(path):
        try:
            regular = f.is_file(follow_symlinks=False)
            st = f.stat(follow_symlinks=False)
        except OSError:
            continue
        name = parse_log_name(f.name)
        if not regular or name.kind is LogFileKind.OTHER:
            only_logs = False
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
                modified_at=mtime_of(st),
                live=bool(cid) and state != "EXITED",
                orphaned=orphaned,
                length=st.st_size,
                container_id=cid,
                container_state=state,
            )
        )
    # Attempts only grow: a name above the runtime's newest attempt here is no file the runtime wrote (a stray
    # `99999.log` would otherwise rank as the newest file and push a running container's rotated logs out).
    attempts = [parse_log_name(os.path.basename(f.path)).attempt for f in out if f.container_id]
    if attempts:
        newest = max(attempts)
        strays = [f for f in out if parse_log_name(os.path.basename(f.path)).attempt > newest]
        out = [f for f in out if f not in strays]
        only_logs = only_logs and not strays
    return out, only_logs


def scan_container_dir(
    path: str, namespace: str, pod_name: str, uid: str, known: KnownLogs, *, orphaned: bool = False
) -> list[LogFileEntry]:
    """The log files of one container's directory: regular files (symlinks are never followed) whose names the
    runtime or a rotation writes (`parse_log_name`), and no attempt above the newest the runtime knows here."""
    return _scan_container_dir(path, namespace, pod_name, uid, known, orphaned)[0]


def scan_log_tree(
    root: Path,
    containers: Iterable[CriContainer],
    sandboxes: Iterable[CriSandbox],
    *,
    log_paths: Mapping[str, str] | None = None,
) -> LogTree:
    """Walk `<root>/<namespace>_<pod>_<uid>/<container>/<files>` with os.scandir.

    A file is live while it is the log of a container the runtime knows and that has not exited: the path the
    runtime names (`log_paths`, container id -> CRI `log_path`), or without those (`df`'s estimate) the path
    kubelet's layout gives. Only directories of kubelet's shape count (`parse_pod_dir_name`, container
    directories with DNS-1123 names), and in them only log files (`scan_container_dir`). A pod directory is
    orphaned when no sandbox of its pod UID exists any more; when the runtime reports no sandbox at all (it is
    restarting, or it is not the runtime that writes this tree), none is.
    """
    sandboxes = list(sandboxes)
    containers = list(containers)
    pod_uids = {s.uid for s in sandboxes}
    known = (
        known_logs(containers, log_paths)
        if log_paths is not None
        else known_logs_by_layout(root, containers, sandboxes)
    )
    warnings: list[str] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        entries = []  # kubelet creates it with the first pod
    except NotADirectoryError:
        return LogTree(str(root), warnings=(f"pod log directory {root} is not a directory",))
    except OSError as exc:
        return LogTree(str(root), warnings=(f"cannot read pod log directory {root}: {exc.strerror or exc}",))
    files: list[LogFileEntry] = []
    pods: list[PodLogDir] = []
    for pod_dir in entries:
        parsed = parse_pod_dir_name(pod_dir.name)
        if parsed is None:
            continue  # not kubelet's: never touched
        try:
            if not pod_dir.is_dir(follow_symlinks=False):
                continue
            newest = mtime_of(pod_dir.stat(follow_symlinks=False))
        except OSError:
            continue
        namespace, pod_name, uid = parsed
        known_pod = uid in pod_uids or not sandboxes
        mine: list[LogFileEntry] = []
        only_logs = True
        containers_seen = 0
        for container_dir in _scandir(pod_dir.path):
            try:
                is_dir = container_dir.is_dir(follow_symlinks=False)
                if is_dir:
                    newest = max(newest, mtime_of(container_dir.stat(follow_symlinks=False)))
            except OSError:
                continue
            if not is_dir or not is_container_dir_name(container_dir.name):
                only_logs = False
                continue
            containers_seen += 1
            found, clean = _scan_container_dir(container_dir.path, namespace, pod_name, uid, known, not known_pod)
            mine.extend(found)
            only_logs = only_logs and clean
        newest = max([newest, *(f.modified_at for f in mine if f.modified_at)])
        files.extend(mine)
        pods.append(
            PodLogDir(
                pod_dir.path,
                namespace,
                pod_name,
                uid,
                known_pod,
                newest,
                sum(f.size for f in mine),
                only_logs and containers_seen > 0,
            )
        )
    if pods and not sandboxes:
        warnings.append(
            f"the runtime reports no pod sandbox at all: none of the {len(pods)} pod log directories in {root} "
            "is treated as orphaned"
        )
    return LogTree(str(root), tuple(files), tuple(pods), tuple(warnings))


class LogRuntime(Protocol):
    """What log management needs from CRI."""

    async def list_containers(self) -> list[CriContainer]: ...
    async def list_pod_sandboxes(self) -> list[CriSandbox]: ...
    async def container_status(self, container_id: str) -> CriContainerStatus: ...
    async def reopen_container_log(self, container_id: str) -> None: ...


class ContainerStatusSource(Protocol):
    """What `LogPaths` needs: the runtime's ContainerStatus (the inventory's CRI client has it too)."""

    async def container_status(self, container_id: str) -> CriContainerStatus: ...


class LogPaths:
    """Container id -> its log file as the runtime names it (CRI `ContainerStatus.log_path`, as this process
    sees it under `host_root`), and the images it mounts as volumes (`CriContainerStatus.image_mounts`, read by
    `node.image_mounts.ImageMounts`). Neither changes in a container's life, so each container costs one
    ContainerStatus in its life; containers no longer listed are forgotten. Shared by the rotator and the passes
    of one node (`LogJanitor.log_paths`), and by the engine's inventory and executor."""

    def __init__(self, host_root: Path = Path("/")) -> None:
        self.host_root = host_root
        self._paths: dict[str, str] = {}
        self.mounts: dict[str, tuple[str, ...]] = {}  # container id -> the images it mounts (known containers)
        self.unresolved: set[str] = set()  # containers whose ContainerStatus failed at the last update

    def host_path(self, runtime_path: str) -> str:
        """A path the runtime reports (on the host), as this process sees it."""
        if str(self.host_root) == "/":
            return runtime_path
        return os.path.join(str(self.host_root), runtime_path.lstrip("/"))

    async def refresh(self, cri: ContainerStatusSource, containers: Iterable[CriContainer]) -> set[str]:
        """Ask about the new ones of `containers` and forget those no longer listed; the containers whose
        ContainerStatus failed (asked again next time). Several refreshes may run at once: each answers for the
        containers it was given."""
        listed = {c.id for c in containers}
        for cid in [cid for cid in self._paths if cid not in listed]:
            self._paths.pop(cid, None)
            self.mounts.pop(cid, None)
        new = sorted(listed - self._paths.keys())
        statuses = await asyncio.gather(*(cri.container_status(cid) for cid in new), return_exceptions=True)
        unresolved: set[str] = set()
        for cid, status in zip(new, statuses, strict=True):
            if isinstance(status, CriContainerStatus):
                self._paths[cid] = self.host_path(status.log_path) if status.log_path else ""
                self.mounts[cid] = status.image_mounts
            elif not isinstance(status, NotFoundError | RuntimeClientError):
                raise status  # a bug, not the runtime's answer
            elif not isinstance(status, NotFoundError):
                unresolved.add(cid)  # asked again next time; meanwhile its log file is not known as live
            # NotFound: gone meanwhile
        return unresolved

    async def update(self, cri: ContainerStatusSource, containers: Iterable[CriContainer]) -> dict[str, str]:
        """The paths of `containers` (those the runtime gives none: left out), asking only about new ones."""
        self.unresolved = await self.refresh(cri, containers)
        return {cid: path for cid, path in self._paths.items() if path}


async def collect_log_tree(cri: LogRuntime, root: Path, *, log_paths: LogPaths | None = None) -> LogTree:
    """A snapshot of the tree as the runtime sees it now, live files by the runtime's own log paths (the walk
    runs in a thread)."""
    containers, sandboxes = await asyncio.gather(cri.list_containers(), cri.list_pod_sandboxes())
    paths = await (log_paths or LogPaths()).update(cri, containers)
    return await asyncio.to_thread(scan_log_tree, root, containers, sandboxes, log_paths=paths)
