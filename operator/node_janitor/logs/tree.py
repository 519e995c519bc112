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

from node_janitor.inventory import LogFileEntry
from node_janitor.runtime.records import CriContainer, CriContainerStatus, CriSandbox


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
