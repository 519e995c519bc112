"""Collect one consistent Inventory of a node from CRI, containerd and the pod log tree.

A handful of list calls run concurrently; snapshot usage is measured per snapshot, and committed snapshots
(immutable once committed) are cached by key across sweeps.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

from node_janitor.api.refs import is_image_id, normalize_all, normalize_or_none
from node_janitor.defaults import DEFAULT_NAMESPACE, DEFAULT_POD_LOG_DIR, DEFAULT_SNAPSHOTTER
from node_janitor.node.image_mounts import ImageMounts, MountedImages
from node_janitor.node.ingests import IngestEntry
from node_janitor.node.inventory import (
    GC_EXPIRE,
    GC_REF_CONTENT,
    BlobEntry,
    ContainerEntry,
    FileSystemEntry,
    ImageEntry,
    Inventory,
    LeaseEntry,
    LogFileEntry,
    NamespaceUsage,
    NodeKind,
    SnapshotEntry,
    is_node_of,
    node_id,
    on_disk,
    parse_rfc3339,
)
from node_janitor.node.logs import LogPaths, scan_log_tree
from node_janitor.runtime.errors import NotFoundError, RuntimeClientError
from node_janitor.runtime.records import (
    BlobInfo,
    ContainerRecord,
    CriContainer,
    CriContainerStatus,
    CriImage,
    CriSandbox,
    ImageFsInfo,
    ImageRecord,
    IngestStatus,
    Lease,
    LeaseResource,
    Namespace,
    SnapshotInfo,
    SnapshotUsage,
)

USAGE_CONCURRENCY = 16
T = TypeVar("T")


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
    async def list_ingests(self) -> list[IngestStatus]: ...
    async def list_namespaces(self) -> list[Namespace]: ...
    def with_namespace(self, namespace: str) -> ContainerdSource: ...


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
    snapshotter: str = DEFAULT_SNAPSHOTTER
    namespace: str = DEFAULT_NAMESPACE
    pod_log_dir: Path | None = DEFAULT_POD_LOG_DIR
    image_fs_path: str | None = None  # overrides the mountpoint CRI reports
    host_root: Path = Path("/")  # where the host's file system is seen (paths the runtime reports are the host's)
    configured_images: tuple[str, ...] = ()  # pinned by the runtime's configuration (runtime.discovery)

    def host_path(self, runtime_path: str) -> str:
        if str(self.host_root) == "/":
            return runtime_path
        return os.path.join(str(self.host_root), runtime_path.lstrip("/"))


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
        block_size=st.f_frsize,
    )


def _configs_of(record: ImageRecord, blobs: Mapping[str, BlobInfo]) -> list[str]:
    """The image IDs (config digests) a record reaches: its manifest's config, or, for an index, the config of
    each of its manifests that is present (several when several platforms were pulled), in label order."""
    target = blobs.get(record.target.digest)
    if target is None:
        return []
    if config := target.labels.get(GC_REF_CONTENT + ".config"):
        return [config]
    configs: list[str] = []
    for key, digest in sorted(target.labels.items()):
        child = blobs.get(digest) if key.startswith(GC_REF_CONTENT + ".m.") else None
        if child is not None and (config := child.labels.get(GC_REF_CONTENT + ".config")) and config not in configs:
            configs.append(config)
    return configs


def _image_of(
    record: ImageRecord, blobs: Mapping[str, BlobInfo], id_by_name: Mapping[str, str], cri_ids: frozenset[str]
) -> str:
    """The image a record belongs to: the config it reaches; of an index with several platforms present, the one
    CRI reports (for the record's name, else any CRI knows): the first in label order may be a platform this
    node does not run, an ID CRI never shows. By name only when its blobs are missing: two spellings of one name
    may point at different images, and a record must never join the wrong one."""
    by_name = id_by_name.get(normalize_or_none(record.name) or record.name)
    configs = _configs_of(record, blobs)
    if len(configs) > 1:
        if by_name in configs:
            return by_name
        return next((c for c in configs if c in cri_ids), configs[0])
    return (configs[0] if configs else None) or by_name or record.target.digest


def _expires_at(records: list[ImageRecord]) -> datetime | None:
    """When every one of an image's records has expired (`gc.expire`, containerd 2.x), or None: a record without
    one (or with one containerd cannot parse, which it ignores) is a root that never expires."""
    expiries = [parse_rfc3339(r.labels[GC_EXPIRE]) if GC_EXPIRE in r.labels else None for r in records]
    if not expiries or any(e is None for e in expiries):
        return None
    return max(e for e in expiries if e is not None)


def group_images(
    cri_images: list[CriImage], records: list[ImageRecord], blobs: Mapping[str, BlobInfo]
) -> list[ImageEntry]:
    """One ImageEntry per image ID, holding all of its containerd records (tags, digest refs, the ID).

    A record belongs to the image whose config it reaches (CRI's image ID; see `_image_of` for an index with several
    platforms present), else to the image CRI names it by
    (names compared normalised: containerd stores `pause:3.6` as given, CRI shows `docker.io/library/pause:3.6`):
    every protection is then judged over all of an image's names, as CRI `RemoveImage` removes them all.
    """
    id_by_name: dict[str, str] = {}
    for image in cri_images:
        for name in normalize_all((*image.repo_tags, *image.repo_digests, image.id)):
            id_by_name.setdefault(name, image.id)
    cri_ids = frozenset(image.id for image in cri_images)
    grouped: dict[str, list[ImageRecord]] = {}
    for record in records:
        grouped.setdefault(_image_of(record, blobs, id_by_name, cri_ids), []).append(record)

    def entry(image_id: str, mine: list[ImageRecord], cri: CriImage | None) -> ImageEntry:
        names = tuple(r.name for r in mine)
        tags = tuple(cri.repo_tags) if cri else ()
        digests = tuple(cri.repo_digests) if cri else ()
        known = normalize_all((*tags, *digests))
        # Names CRI does not show (yet): another client's records, or ones CRI has not caught up with.
        tags += tuple(n for n in names if not is_image_id(n) and "@" not in n and normalize_or_none(n) not in known)
        digests += tuple(n for n in names if "@" in n and normalize_or_none(n) not in known)
        return ImageEntry(
            id=image_id,
            names=names,
            targets=tuple(sorted({r.target.digest for r in mine})),
            repo_tags=tags,
            repo_digests=digests,
            cri_size=cri.size if cri else 0,
            pinned=cri.pinned if cri else False,
            created_at=min((r.created_at for r in mine), default=None),
            labels={k: v for r in mine for k, v in r.labels.items()},
            expires_at=_expires_at(mine),
        )

    out = [entry(image.id, grouped.pop(image.id, []), image) for image in cri_images]
    out += [entry(image_id, mine, None) for image_id, mine in sorted(grouped.items())]
    return out


async def gather_cancelling(aws: Iterable[Awaitable[T]]) -> list[T]:
    """`asyncio.gather`, except that the first failure cancels (and waits for) every sibling before it is raised
    as itself: no call is left running behind an error."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _measure(
    containerd: ContainerdSource,
    snapshots: list[SnapshotInfo],
    snapshotter: str,
    cache: SnapshotUsageCache,
    warnings: list[str],
) -> dict[str, SnapshotUsage]:
    """Each snapshot's usage; committed ones from `cache` when known. A snapshot whose usage call fails is a
    warning (its size unknown, counted as 0); anything else cancels every sibling call."""
    sem = asyncio.Semaphore(USAGE_CONCURRENCY)
    usage: dict[str, SnapshotUsage] = {}
    failed: list[str] = []

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
            except RuntimeClientError as exc:
                failed.append(f"{info.name}: {exc}")
                return
        usage[info.name] = measured
        if info.kind == "COMMITTED":
            cache.entries[info.name] = measured

    await gather_cancelling(one(info) for info in snapshots)
    cache.prune(s.name for s in snapshots)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        warnings.append(f"usage of {len(failed)} snapshot(s) unknown, counted as 0 bytes: {failed[0]}{more}")
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
            expires_at=parse_rfc3339(expire) if expire else None,
            labels=dict(lease.labels),
            resources=tuple((r.type, r.id) for r in resources),
        )

    return await gather_cancelling(one(lease) for lease in leases)


async def _namespace_store(
    containerd: ContainerdSource, namespace: str, snapshotter: str, now: datetime, block_size: int
) -> Inventory:
    """Another namespace's records, as far as its references go (no usage is measured, no CRI is asked)."""
    view = containerd.with_namespace(namespace)
    records, blob_list, snapshot_list, leases, container_records = await asyncio.gather(
        view.list_images(),
        view.list_content(),
        view.list_snapshots(snapshotter),
        _lease_entries(view),
        view.list_containers(),
    )
    blobs = {b.digest: b for b in blob_list}
    return Inventory(
        taken_at=now,
        namespace=namespace,
        snapshotter=snapshotter,
        images=tuple(group_images([], records, blobs)),
        blobs=tuple(
            BlobEntry(b.digest, on_disk(b.size, block_size), labels=dict(b.labels), length=b.size) for b in blob_list
        ),
        snapshots=tuple(SnapshotEntry(key=s.name, parent=s.parent, labels=dict(s.labels)) for s in snapshot_list),
        containers=tuple(
            ContainerEntry(id=c.id, image=c.image, snapshot_key=c.snapshot_key, cri=False, labels=dict(c.labels))
            for c in container_records
        ),
        leases=tuple(leases),
    )


async def collect_other_namespaces(
    containerd: ContainerdSource,
    namespace: str,
    snapshotter: str,
    ours: Mapping[str, BlobInfo],
    now: datetime,
    block_size: int = 4096,
) -> tuple[dict[str, tuple[str, ...]], tuple[NamespaceUsage, ...], list[str]]:
    """Content is shared by every namespace (one blob on disk, a record per namespace; containerd deletes the
    blob only when no namespace keeps a record): which of our blobs other namespaces keep, and what they hold."""
    held: dict[str, list[str]] = {}
    usages: list[NamespaceUsage] = []
    warnings: list[str] = []
    try:
        names = sorted(n.name for n in await containerd.list_namespaces() if n.name != namespace)
    except RuntimeClientError as exc:
        return {}, (), [f"cannot list containerd namespaces ({exc}): blobs other namespaces share may be promised"]
    for name in names:
        try:
            other = await _namespace_store(containerd, name, snapshotter, now, block_size)
        except RuntimeClientError as exc:
            warnings.append(f"cannot read containerd namespace {name!r} ({exc}): blobs it shares may be promised")
            continue
        kept = {node_id(n) for n in other.graph.referenced(now) if is_node_of(n, NodeKind.CONTENT)}
        for digest in kept & ours.keys():
            held.setdefault(digest, []).append(name)
        usages.append(
            NamespaceUsage(
                name=name,
                blobs=len(other.blobs),
                size=sum(b.size for b in other.blobs),
                shared=sum(b.size for b in other.blobs if b.digest in ours),
                referenced=sum(b.size for b in other.blobs if b.digest in kept),
            )
        )
    return {k: tuple(v) for k, v in held.items()}, tuple(usages), warnings


@dataclass(frozen=True)
class RuntimeListing:
    """What one inventory's list calls returned: CRI's view and containerd's store, listed concurrently."""

    cri_images: list[CriImage]
    cri_containers: list[CriContainer]
    sandboxes: list[CriSandbox]
    fs_info: ImageFsInfo
    sandbox_image: str
    records: list[ImageRecord]
    blobs: list[BlobInfo]
    snapshots: list[SnapshotInfo]
    leases: list[LeaseEntry]
    containers: list[ContainerRecord]
    ingests: list[IngestStatus]

    @property
    def empty(self) -> bool:
        """No image, snapshot or container in the namespace: probably not the kubelet's."""
        return not self.records and not self.snapshots and not self.containers


@dataclass(frozen=True)
class HostMeasures:
    """What the inventory measured on the host itself: file systems (statvfs) and the pod log tree."""

    file_systems: list[FileSystemEntry]
    logs: list[LogFileEntry]
    warnings: list[str]

    @property
    def block_size(self) -> int:
        """The image file system's block: snapshot usage is allocated blocks (containerd's du: st_blocks), so a
        blob's length is counted in the same unit."""
        return next((f.block_size for f in self.file_systems if f.name == "imagefs"), 4096)


async def collect_inventory(
    cri: CriSource,
    containerd: ContainerdSource,
    options: CollectOptions | None = None,
    *,
    cache: SnapshotUsageCache | None = None,
    now: datetime | None = None,
    log_paths: LogPaths | None = None,
    statvfs: Callable[[str, str], FileSystemEntry] | None = None,
    image_mounts: ImageMounts | None = None,
) -> Inventory:
    """One inventory of the node. `log_paths`: the runtime's log path of each container, cached (the log
    janitor's, shared with the rotator: one ContainerStatus per container in its life); live log files are the
    paths the runtime names, as the log rules judge them. `statvfs`: how a file system is measured (default
    `statvfs_entry`). `image_mounts`: the images each container mounts as volumes, cached likewise (the engine's,
    shared with its executor); an image a container mounts is in use by it.

    Phases: list everything (`list_runtime`), measure snapshots, join containerd's containers with CRI's
    (`container_entries`), measure the host (`measure_host`), find what other namespaces keep, assemble."""
    options = options or CollectOptions()
    cache = cache if cache is not None else SnapshotUsageCache()
    listing = await list_runtime(cri, containerd, options.snapshotter)
    now = now or datetime.now(UTC)
    warnings: list[str] = []
    usage = await _measure(containerd, listing.snapshots, options.snapshotter, cache, warnings)
    blobs = {b.digest: b for b in listing.blobs}
    finished = await finished_times(cri, listing.cri_containers)
    mounted = await (image_mounts or ImageMounts()).update(cri, listing.cri_containers)
    if mounted.unresolved:
        some = ", ".join(sorted(mounted.unresolved)[:3])
        warnings.append(
            f"cannot tell which images {len(mounted.unresolved)} container(s) mount as volumes (their ContainerStatus "
            f"failed: {some}); an image one of them mounts may look unused, but is re-checked before any removal"
        )
    containers = container_entries(listing, finished, mounted)
    host = await measure_host(cri, listing, options, log_paths, statvfs)
    warnings += host.warnings
    held_elsewhere, other_namespaces, namespace_warnings = await collect_other_namespaces(
        containerd, options.namespace, options.snapshotter, blobs, now, host.block_size
    )
    warnings += namespace_warnings
    if listing.empty:
        warnings.append(
            f"containerd namespace {options.namespace!r} holds no images, snapshots or containers "
            "(is it the namespace the kubelet's runtime uses?)"
        )
    return Inventory(
        taken_at=now,
        namespace=options.namespace,
        snapshotter=options.snapshotter,
        images=tuple(group_images(listing.cri_images, listing.records, blobs)),
        blobs=tuple(blob_entries(listing.blobs, host.block_size)),
        snapshots=tuple(snapshot_entries(listing.snapshots, usage)),
        containers=tuple(containers),
        leases=tuple(listing.leases),
        file_systems=tuple(host.file_systems),
        logs=tuple(host.logs),
        sandbox_image=listing.sandbox_image,
        configured_images=options.configured_images,
        warnings=tuple(warnings),
        held_elsewhere=held_elsewhere,
        other_namespaces=other_namespaces,
        ingests=tuple(ingest_entries(listing.ingests)),
    )


async def list_runtime(cri: CriSource, containerd: ContainerdSource, snapshotter: str) -> RuntimeListing:
    """Every list call of one inventory, in two typed batches (asyncio.gather is typed for up to six awaitables)
    run concurrently; on an error no call is left running behind it."""
    cri_batch = asyncio.gather(
        cri.list_images(), cri.list_containers(), cri.list_pod_sandboxes(), cri.image_fs_info(), cri.sandbox_image()
    )
    store_batch = asyncio.gather(
        containerd.list_images(),
        containerd.list_content(),
        containerd.list_snapshots(snapshotter),
        _lease_entries(containerd),
        containerd.list_containers(),
        containerd.list_ingests(),
    )
    try:
        cri_part, store_part = await asyncio.gather(cri_batch, store_batch)
    except BaseException:
        cri_batch.cancel()
        store_batch.cancel()
        await asyncio.gather(cri_batch, store_batch, return_exceptions=True)
        raise
    records, blobs, snapshots, leases, containers, ingests = store_part
    return RuntimeListing(*cri_part, records, blobs, snapshots, leases, containers, ingests)


async def finished_times(cri: CriSource, cri_containers: Iterable[CriContainer]) -> dict[str, datetime | None]:
    """When each exited container finished (its ContainerStatus; None when that failed)."""
    exited = [x for x in cri_containers if x.state == "EXITED"]
    statuses = await asyncio.gather(*(cri.container_status(c.id) for c in exited), return_exceptions=True)
    return {
        done.id: status.finished_at if isinstance(status, CriContainerStatus) else None
        for done, status in zip(exited, statuses, strict=True)
    }


def container_entries(
    listing: RuntimeListing, finished: Mapping[str, datetime | None], mounted: MountedImages | None = None
) -> list[ContainerEntry]:
    """containerd's containers, each as CRI knows it: a CRI container (with the images it mounts as volumes), a pod
    sandbox, or a container of some other client (no CRI state)."""
    mounts = mounted.by_container if mounted else {}
    cri_by_id = {c.id: c for c in listing.cri_containers}
    sandbox_by_id = {s.id: s for s in listing.sandboxes}
    containers: list[ContainerEntry] = []
    for record in listing.containers:
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
                image_mounts=mounts.get(c.id, ()),
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
    return containers


async def measure_host(
    cri: CriSource,
    listing: RuntimeListing,
    options: CollectOptions,
    log_paths: LogPaths | None,
    statvfs: Callable[[str, str], FileSystemEntry] | None = None,
) -> HostMeasures:
    """The image file system (where CRI says it is, unless the options override it) and the pod log tree (with the
    runtime's log path of each container). statvfs and the walk block: they run in a thread, never on the event
    loop."""
    image_fs_path = options.image_fs_path or next(
        (options.host_path(fs.mountpoint) for fs in listing.fs_info.image_filesystems if fs.mountpoint), None
    )
    paths: dict[str, str] = {}
    if options.pod_log_dir is not None:
        paths = await (log_paths or LogPaths(options.host_root)).update(cri, listing.cri_containers)
    file_systems, logs, warnings = await asyncio.to_thread(
        _stat_and_scan_host,
        image_fs_path,
        options.pod_log_dir,
        listing.cri_containers,
        listing.sandboxes,
        paths,
        statvfs or statvfs_entry,
    )
    return HostMeasures(file_systems, logs, warnings)


def ingest_entries(statuses: Iterable[IngestStatus]) -> list[IngestEntry]:
    """The content store's ingests as the inventory keeps them (no time, or the epoch: unknown)."""
    return [
        IngestEntry(s.ref, s.offset, s.total, s.updated_at if s.updated_at.timestamp() > 0 else None) for s in statuses
    ]


def blob_entries(blobs: Iterable[BlobInfo], block_size: int) -> list[BlobEntry]:
    """Blobs as the inventory counts them: their length in whole blocks of the image file system."""
    return [
        BlobEntry(b.digest, on_disk(b.size, block_size), created_at=b.created_at, labels=dict(b.labels), length=b.size)
        for b in blobs
    ]


def snapshot_entries(snapshots: Iterable[SnapshotInfo], usage: Mapping[str, SnapshotUsage]) -> list[SnapshotEntry]:
    """Snapshots with their measured usage (0 for one that could not be measured)."""
    return [
        SnapshotEntry(
            key=s.name,
            parent=s.parent,
            kind=s.kind,
            size=usage[s.name].size if s.name in usage else 0,
            inodes=usage[s.name].inodes if s.name in usage else 0,
            created_at=s.created_at,
            labels=dict(s.labels),
        )
        for s in snapshots
    ]


def _stat_and_scan_host(
    image_fs_path: str | None,
    pod_log_dir: Path | None,
    containers: list[CriContainer],
    sandboxes: list[CriSandbox],
    log_paths: Mapping[str, str],
    statvfs: Callable[[str, str], FileSystemEntry] = statvfs_entry,
) -> tuple[list[FileSystemEntry], list[LogFileEntry], list[str]]:
    """The watched file systems and the pod log tree (blocking: call it in a thread)."""
    file_systems: list[FileSystemEntry] = []
    warnings: list[str] = []
    if image_fs_path:
        try:
            file_systems.append(statvfs("imagefs", image_fs_path))
        except OSError as exc:
            warnings.append(f"cannot stat image file system {image_fs_path}: {exc.strerror}")
    logs: list[LogFileEntry] = []
    if pod_log_dir is None:
        return file_systems, logs, warnings
    problem = pod_log_dir_problem(pod_log_dir)
    if problem:
        warnings.append(f"{problem}: container logs are not measured or managed")
        return file_systems, logs, warnings
    try:
        file_systems.append(statvfs("logs", str(pod_log_dir)))
    except OSError as exc:
        warnings.append(f"cannot stat pod log directory {pod_log_dir}: {exc.strerror}")
        return file_systems, logs, warnings
    tree = scan_log_tree(pod_log_dir, containers, sandboxes, log_paths=log_paths)
    warnings.extend(tree.warnings)
    return file_systems, list(tree.files), warnings


def pod_log_dir_problem(path: Path) -> str | None:
    """Why `path` cannot be read as the pod log directory, or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"pod log directory {path} does not exist"
    except OSError as exc:
        return f"pod log directory {path} cannot be examined: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"pod log directory {path} is not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return f"pod log directory {path} is not readable"
    try:
        with os.scandir(path):
            pass
    except OSError as exc:
        return f"pod log directory {path} cannot be read: {exc.strerror}"
    return None
