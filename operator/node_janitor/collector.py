"""Collect one consistent Inventory of a node from CRI, containerd and the pod log tree.

A handful of list calls run concurrently; snapshot usage is measured per snapshot, and committed snapshots
(immutable once committed) are cached by key across sweeps.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from node_janitor.inventory import (
    GC_EXPIRE,
    GC_REF_CONTENT,
    BlobEntry,
    ContainerEntry,
    FileSystemEntry,
    ImageEntry,
    Inventory,
    LeaseEntry,
    LogFileEntry,
    SnapshotEntry,
)
from node_janitor.logs import scan_log_tree
from node_janitor.runtime.errors import NotFoundError
from node_janitor.runtime.records import (
    BlobInfo,
    ContainerRecord,
    CriContainer,
    CriContainerStatus,
    CriImage,
    CriSandbox,
    ImageFsInfo,
    ImageRecord,
    Lease,
    LeaseResource,
    SnapshotInfo,
    SnapshotUsage,
)

USAGE_CONCURRENCY = 16


class CriSource(Protocol):
    async def list_images(self) -> list[CriImage]: ...
    async def list_containers(self) -> list[CriContainer]: ...
    async def list_pod_sandboxes(self) -> list[CriSandbox]: ...
    async def container_status(self, container_id: str) -> CriContainerStatus: ...
    async def image_fs_info(self) -> ImageFsInfo: ...
    async def sandbox_image(self) -> str: ...


class ContainerdSource(Protocol):
    async def list_images(self) -> list[ImageRecord]: ...
    async def list_content(self) -> list[BlobInfo]: ...
    async def list_snapshots(self, snapshotter: str = ...) -> list[SnapshotInfo]: ...
    async def snapshot_usage(self, key: str, snapshotter: str = ...) -> SnapshotUsage: ...
    async def list_leases(self) -> list[Lease]: ...
    async def list_lease_resources(self, lease_id: str) -> list[LeaseResource]: ...
    async def list_containers(self) -> list[ContainerRecord]: ...


@dataclass
class SnapshotUsageCache:
    """Usage of committed snapshots by key: a committed layer never changes, so it is measured once."""

    entries: dict[str, SnapshotUsage] = field(default_factory=dict)

    def prune(self, keep: Iterable[str]) -> None:
        alive = set(keep)
        for key in [k for k in self.entries if k not in alive]:
            del self.entries[key]


@dataclass(frozen=True)
class CollectOptions:
    snapshotter: str = "overlayfs"
    namespace: str = "k8s.io"
    pod_log_dir: Path | None = Path("/var/log/pods")
    image_fs_path: str | None = None  # overrides the mountpoint CRI reports


def parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def statvfs_entry(name: str, path: str) -> FileSystemEntry:
    st = os.statvfs(path)
    return FileSystemEntry(
        name=name,
        path=path,
        size=st.f_blocks * st.f_frsize,
        used=(st.f_blocks - st.f_bfree) * st.f_frsize,
        available=st.f_bavail * st.f_frsize,
        inodes=st.f_files,
        inodes_used=st.f_files - st.f_ffree,
    )


def group_images(
    cri_images: list[CriImage], records: list[ImageRecord], blobs: Mapping[str, BlobInfo]
) -> list[ImageEntry]:
    """One ImageEntry per image ID, holding all of its containerd records (tags, digest refs, the ID)."""
    by_name = {r.name: r for r in records}
    claimed: set[str] = set()
    out: list[ImageEntry] = []
    for image in cri_images:
        names = tuple(n for n in (*image.repo_tags, *image.repo_digests, image.id) if n in by_name)
        claimed.update(names)
        mine = [by_name[n] for n in names]
        out.append(
            ImageEntry(
                id=image.id,
                names=names,
                targets=tuple(sorted({r.target.digest for r in mine})),
                repo_tags=tuple(image.repo_tags),
                repo_digests=tuple(image.repo_digests),
                cri_size=image.size,
                pinned=image.pinned,
                created_at=min((r.created_at for r in mine), default=None),
            )
        )
    # Records CRI does not show (another client's, or not yet seen): group them by the config they reach.
    leftovers: dict[str, list[ImageRecord]] = {}
    for record in records:
        if record.name in claimed:
            continue
        target = blobs.get(record.target.digest)
        config = target.labels.get(GC_REF_CONTENT + ".config") if target else None
        leftovers.setdefault(config or record.target.digest, []).append(record)
    for image_id, mine in sorted(leftovers.items()):
        tags = tuple(r.name for r in mine if not r.name.startswith("sha256:") and "@" not in r.name)
        out.append(
            ImageEntry(
                id=image_id,
                names=tuple(r.name for r in mine),
                targets=tuple(sorted({r.target.digest for r in mine})),
                repo_tags=tags,
                repo_digests=tuple(r.name for r in mine if "@" in r.name),
                created_at=min(r.created_at for r in mine),
            )
        )
    return out


async def _measure(
    containerd: ContainerdSource, snapshots: list[SnapshotInfo], snapshotter: str, cache: SnapshotUsageCache
) -> dict[str, SnapshotUsage]:
    sem = asyncio.Semaphore(USAGE_CONCURRENCY)
    usage: dict[str, SnapshotUsage] = {}

    async def one(info: SnapshotInfo) -> None:
        cached = cache.entries.get(info.name) if info.kind == "COMMITTED" else None
        if cached is not None:
            usage[info.name] = cached
            return
        async with sem:
            try:
                measured = await containerd.snapshot_usage(info.name, snapshotter)
            except NotFoundError:
                return  # removed since it was listed
        usage[info.name] = measured
        if info.kind == "COMMITTED":
            cache.entries[info.name] = measured

    await asyncio.gather(*(one(s) for s in snapshots))
    cache.prune(s.name for s in snapshots)
    return usage


async def _lease_entries(containerd: ContainerdSource) -> list[LeaseEntry]:
    leases = await containerd.list_leases()

    async def one(lease: Lease) -> LeaseEntry:
        try:
            resources = await containerd.list_lease_resources(lease.id)
        except NotFoundError:
            resources = []
        expire = lease.labels.get(GC_EXPIRE)
        return LeaseEntry(
            id=lease.id,
            created_at=lease.created_at,
            expires_at=parse_time(expire) if expire else None,
            labels=dict(lease.labels),
            resources=tuple((r.type, r.id) for r in resources),
        )

    return list(await asyncio.gather(*(one(lease) for lease in leases)))


async def collect_inventory(
    cri: CriSource,
    containerd: ContainerdSource,
    options: CollectOptions | None = None,
    *,
    cache: SnapshotUsageCache | None = None,
    now: datetime | None = None,
) -> Inventory:
    options = options or CollectOptions()
    cache = cache if cache is not None else SnapshotUsageCache()
    # Two typed batches (asyncio.gather is typed for up to six awaitables), run concurrently.
    cri_batch = asyncio.gather(
        cri.list_images(), cri.list_containers(), cri.list_pod_sandboxes(), cri.image_fs_info(), cri.sandbox_image()
    )
    store_batch = asyncio.gather(
        containerd.list_images(),
        containerd.list_content(),
        containerd.list_snapshots(options.snapshotter),
        _lease_entries(containerd),
        containerd.list_containers(),
    )
    (cri_images, cri_containers, sandboxes, fs_info, sandbox_image), store = await asyncio.gather(
        cri_batch, store_batch
    )
    records, blob_list, snapshot_list, leases, container_records = store
    usage = await _measure(containerd, snapshot_list, options.snapshotter, cache)
    warnings: list[str] = []
    blobs = {b.digest: b for b in blob_list}

    finished: dict[str, datetime | None] = {}
    exited = [x for x in cri_containers if x.state == "EXITED"]
    statuses = await asyncio.gather(*(cri.container_status(c.id) for c in exited), return_exceptions=True)
    for done, status in zip(exited, statuses, strict=True):
        finished[done.id] = status.finished_at if isinstance(status, CriContainerStatus) else None

    cri_by_id = {c.id: c for c in cri_containers}
    sandbox_by_id = {s.id: s for s in sandboxes}
    containers: list[ContainerEntry] = []
    for record in container_records:
        c = cri_by_id.get(record.id)
        s = sandbox_by_id.get(record.id)
        if c is not None:
            entry = ContainerEntry(
                id=record.id,
                image=c.image_ref or c.image or record.image,
                snapshot_key=record.snapshot_key,
                state=c.state,
                name=c.name,
                created_at=c.created_at,
                finished_at=finished.get(c.id),
                labels=dict(record.labels),
            )
        elif s is not None:
            entry = ContainerEntry(
                id=record.id,
                image=record.image,
                snapshot_key=record.snapshot_key,
                state="RUNNING" if s.state == "READY" else "EXITED",
                name=f"{s.namespace}/{s.name}",
                created_at=s.created_at,
                sandbox=True,
                labels=dict(record.labels),
            )
        else:
            entry = ContainerEntry(
                id=record.id,
                image=record.image,
                snapshot_key=record.snapshot_key,
                state="UNKNOWN",
                created_at=record.created_at,
                cri=False,
                labels=dict(record.labels),
            )
        containers.append(entry)

    file_systems = []
    image_fs_path = options.image_fs_path or next(
        (fs.mountpoint for fs in fs_info.image_filesystems if fs.mountpoint), None
    )
    if image_fs_path:
        try:
            file_systems.append(statvfs_entry("imagefs", image_fs_path))
        except OSError as exc:
            warnings.append(f"cannot stat image file system {image_fs_path}: {exc.strerror}")
    logs: list[LogFileEntry] = []
    if options.pod_log_dir is not None:
        try:
            file_systems.append(statvfs_entry("logs", str(options.pod_log_dir)))
        except OSError as exc:
            warnings.append(f"cannot stat pod log directory {options.pod_log_dir}: {exc.strerror}")
        else:
            logs = scan_pod_logs(options.pod_log_dir, cri_containers, sandboxes)

    return Inventory(
        taken_at=now or datetime.now(UTC),
        namespace=options.namespace,
        snapshotter=options.snapshotter,
        images=tuple(group_images(cri_images, records, blobs)),
        blobs=tuple(BlobEntry(b.digest, b.size, created_at=b.created_at, labels=dict(b.labels)) for b in blob_list),
        snapshots=tuple(
            SnapshotEntry(
                key=s.name,
                parent=s.parent,
                kind=s.kind,
                size=usage[s.name].size if s.name in usage else 0,
                inodes=usage[s.name].inodes if s.name in usage else 0,
                created_at=s.created_at,
                labels=dict(s.labels),
            )
            for s in snapshot_list
        ),
        containers=tuple(containers),
        leases=tuple(leases),
        file_systems=tuple(file_systems),
        logs=tuple(logs),
        sandbox_image=sandbox_image,
        warnings=tuple(warnings),
    )


def scan_pod_logs(root: Path, containers: list[CriContainer], sandboxes: list[CriSandbox]) -> list[LogFileEntry]:
    """The CRI log tree's files (see `logs.scan_log_tree`): live while a container the runtime knows and that has
    not exited logs there; orphaned when no sandbox of the pod's UID exists any more."""
    return list(scan_log_tree(root, containers, sandboxes).files)
