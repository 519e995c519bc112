"""Apply a plan safely and measure what it really freed.

Safety rules, each checked right before its action (the node changes while a plan runs):
- an image: its names are read again (CRI RemoveImage removes every name it has then); it is skipped if one of
  them is protected (the operator's set, re-read through a callable; a keep pattern; the sandbox image) or if any
  container (CRI or not, any state) uses one of them or mounts one as a volume (KEP-4639 image volumes; CRI
  ContainerStatus of containers not seen before), names compared normalised; it goes through CRI RemoveImage
  so the kubelet's view stays right; the records CRI does not manage are then deleted through containerd, each
  only if it still points at the removed image (a tag pulled again since planning names a new image: it is left,
  and the result says so);
- a container: only if it is still exited (one the kubelet removed first is done);
- a lease: only if it is still expired;
- orphan snapshots and blobs are never deleted directly: containerd's own garbage collection decides (one
  synchronous collection; an orphan is done if it went, skipped if the collector kept it);
- a discarded layer: only if no lease holds it now (a pull in progress).
Consecutive image removals overlap, a few at a time (IMAGE_CONCURRENCY), each with its own re-check right before
its RemoveImage; every other action runs alone, in plan order, after what the plan put before it. Results are
reported in plan order. Something already gone counts as done; one failed action never stops the run, and every
error is reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from node_janitor.api.refs import matches_pattern, normalize_all, normalize_or_none
from node_janitor.defaults import DEFAULT_SNAPSHOTTER
from node_janitor.node.image_mounts import ImageMounts
from node_janitor.node.inventory import GC_EXPIRE, FileSystemEntry, ImageEntry, Inventory, parse_rfc3339
from node_janitor.node.outcome import Outcome
from node_janitor.node.plan import Action, ActionKind, Plan, Reason
from node_janitor.runtime.errors import NotFoundError, RuntimeClientError
from node_janitor.runtime.records import (
    BlobInfo,
    ContainerRecord,
    CriContainer,
    CriContainerStatus,
    ImageRecord,
    Lease,
    LeaseResource,
    SnapshotInfo,
)

log = logging.getLogger("node_janitor.node.execute")

# Image removals in flight at once. CRI RemoveImage (containerd 1.6) returns only after a synchronous garbage
# collection; concurrent ones share a collection, so a few in flight free bytes at close to `ctr images rm --sync`'s
# rate while each is still re-checked just before it is sent. Small: the node's containerd serves its kubelet too.
GC_RETRY_DELAYS = (0.1, 0.5, 2.0)
"""Seconds before each new collection after containerd answered a removal with "gc failed" (see
`Executor._remove_through_cri`)."""
IMAGE_CONCURRENCY = 8
SETTLE_INTERVAL = 0.2
SETTLE_QUIET = 1.0
SETTLE_TIMEOUT = 10.0
"""What a removal frees may reach the file system after the call returned (kubernetes#130663, containerd 2.1:
evictions although the images were "deleted"); a figure read too early makes the one-pass and beyond-need
checks fail and the agent run again. So after the last action and containerd's collection the file system is
read every SETTLE_INTERVAL seconds until it has gained what the done actions were to free, or its use has not
dropped for SETTLE_QUIET seconds (a prediction above what really went; a log writer on the same disk), or
SETTLE_TIMEOUT seconds have passed."""


class CriRemover(Protocol):
    async def list_containers(self) -> list[CriContainer]: ...
    async def remove_image(self, image: str, *, missing_ok: bool = False) -> None: ...
    async def container_status(self, container_id: str) -> CriContainerStatus: ...
    async def remove_container(self, container_id: str, *, missing_ok: bool = False) -> None: ...


class ContainerdRemover(Protocol):
    async def list_containers(self) -> list[ContainerRecord]: ...
    async def list_images(self, filters: Iterable[str] = ...) -> list[ImageRecord]: ...
    async def get_image(self, name: str) -> ImageRecord: ...
    async def delete_image(self, name: str, *, sync: bool = False, missing_ok: bool = False) -> None: ...
    async def list_leases(self, filters: Iterable[str] = ...) -> list[Lease]: ...
    async def list_lease_resources(self, lease_id: str) -> list[LeaseResource]: ...
    async def delete_lease(self, lease_id: str, *, sync: bool = False, missing_ok: bool = False) -> None: ...
    async def stat_snapshot(self, key: str, snapshotter: str = ...) -> SnapshotInfo: ...
    async def content_info(self, digest: str) -> BlobInfo: ...
    async def delete_content(self, digest: str, *, missing_ok: bool = False) -> None: ...
    async def wait_for_gc(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: Action
    outcome: Outcome
    message: str = ""


@dataclass
class ExecutionResult:
    results: list[ActionResult] = field(default_factory=list)
    before: FileSystemEntry | None = None
    after: FileSystemEntry | None = None
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    not_sent: int = 0  # actions the run was asked to stop before (should_stop, on_result raising, cancel)

    @property
    def planned_bytes(self) -> int:
        return sum(r.action.bytes for r in self.results)

    @property
    def done_bytes(self) -> int:
        return sum(r.action.bytes for r in self.results if r.outcome is Outcome.DONE)

    @property
    def reclaimed_bytes(self) -> int:
        """What the file system really gained (before - after); never negative."""
        if self.before is None or self.after is None:
            return 0
        return max(0, self.before.used - self.after.used)


class _NotSent(Exception):
    """An action stopped before it was sent (see Executor.should_stop)."""


class Executor:
    def __init__(
        self,
        cri: CriRemover,
        containerd: ContainerdRemover,
        measure: Callable[[], FileSystemEntry | None],
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        on_result: Callable[[ActionResult], None] | None = None,
        protected_images: Iterable[str] | Callable[[], Iterable[str]] = (),
        keep: Sequence[str] | Callable[[], Sequence[str]] = (),
        sandbox_image: str = "",
        configured_images: Sequence[str] = (),
        image_concurrency: int = IMAGE_CONCURRENCY,
        should_stop: Callable[[], bool] | None = None,
        gate: Callable[[], str | None] | None = None,
        settle_interval: float = SETTLE_INTERVAL,
        settle_quiet: float = SETTLE_QUIET,
        settle_timeout: float = SETTLE_TIMEOUT,
        image_mounts: ImageMounts | None = None,
    ) -> None:
        """`should_stop`: asked right before each action is sent; once true, nothing more is sent and what is in
        flight finishes (the agent's SIGTERM). `on_result` raising stops the run the same way. `gate`: asked
        right before each action is sent too; a reason it returns skips that action (the agent's policy paused
        or turned to a dry run mid-run). `keep` (and `protected_images`) may be callables, re-read likewise.
        `image_mounts`: what containers mount as volumes, cached (the engine's, shared with its inventory)."""
        if image_concurrency < 1:
            raise ValueError(f"image_concurrency must be at least 1, not {image_concurrency}")
        self.cri = cri
        self.containerd = containerd
        self.measure = measure
        self.snapshotter = snapshotter
        self.on_result = on_result
        self.protected_images = protected_images
        self.keep = keep
        self.sandbox_image = sandbox_image
        self.configured_images = normalize_all(configured_images)  # pinned by the runtime's configuration
        self.image_concurrency = image_concurrency
        self.should_stop = should_stop
        self.gate = gate
        self.settle_interval = settle_interval
        self.settle_quiet = settle_quiet
        self.settle_timeout = settle_timeout
        self.image_mounts = image_mounts if image_mounts is not None else ImageMounts()
        self._collected = False  # a garbage collection ran in this apply()
        self._stopping = False  # on_result raised (e.g. the agent's SIGTERM): start nothing more

    async def apply(self, plan: Plan, inventory: Inventory) -> ExecutionResult:
        started = time.monotonic()
        self._collected = False
        self._stopping = False
        errors: list[str] = []
        result = ExecutionResult(before=await self._measure_safely(errors), errors=errors)
        images = inventory.image_by_id()
        window = asyncio.Semaphore(self.image_concurrency)
        actions = plan.actions
        i = 0
        while i < len(actions):
            # A run of consecutive image removals overlaps up to `image_concurrency` of them: each one is still
            # re-checked right before its own RemoveImage, and containerd coalesces the synchronous collections
            # that RemoveImage waits for into one (its GC scheduler releases every waiter after one collection).
            # Anything else waits for the run before it, as the plan orders it; results come in plan order.
            j = i + 1
            if actions[i].kind is ActionKind.REMOVE_IMAGE:
                while j < len(actions) and actions[j].kind is ActionKind.REMOVE_IMAGE:
                    j += 1
            tasks = [asyncio.ensure_future(self._apply_safely(a, images, window)) for a in actions[i:j]]
            stop: BaseException | None = None
            try:
                for action, task in zip(actions[i:j], tasks, strict=True):
                    done = await task
                    if done is None:
                        result.not_sent += 1  # stopped before it was sent: it did not happen
                        continue
                    outcome, message = done
                    try:
                        self._report(result, ActionResult(action, outcome, message), notify=stop is None)
                    except Exception as exc:  # on_result asks the run to stop: finish what is in flight only
                        stop, self._stopping = exc, True
            except asyncio.CancelledError:
                self._stopping = True  # the run is cancelled: nothing new starts, what is in flight ends
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            if stop is not None:
                raise stop
            i = j
        if result.not_sent:
            errors.append(f"stopped before {result.not_sent} of {len(actions)} actions were sent")
        if plan.actions:
            try:
                await self.containerd.wait_for_gc()
            except RuntimeClientError as exc:
                result.errors.append(f"waiting for containerd's garbage collection: {exc}")
        if plan.actions:
            result.after = await self._measure_settled(result.errors, result.before, result.done_bytes)
        else:
            result.after = await self._measure_safely(result.errors)
        result.duration_seconds = time.monotonic() - started
        return result

    async def _apply_safely(
        self, action: Action, images: dict[str, ImageEntry], window: asyncio.Semaphore
    ) -> tuple[Outcome, str] | None:
        """One action's outcome; an error is its FAILED outcome, never the run's end. None: not started, because
        the run was asked to stop while it waited for its turn."""
        async with window:
            if self._halted():
                return None
            if self.gate is not None and (why := self.gate()) is not None:
                return Outcome.SKIPPED, why
            try:
                return await self._apply_one(action, images)
            except _NotSent:
                return None
            except RuntimeClientError as exc:
                return Outcome.FAILED, str(exc)
            except OSError as exc:  # e.g. ENOSPC on something we write: report, go on
                return Outcome.FAILED, f"{exc.__class__.__name__}: {exc}"

    def _halted(self) -> bool:
        """Whether nothing more may be sent: on_result raised, the run was cancelled, or should_stop says so."""
        if not self._stopping and self.should_stop is not None and self.should_stop():
            self._stopping = True
        return self._stopping

    def _report(self, result: ExecutionResult, item: ActionResult, *, notify: bool = True) -> None:
        action = item.action
        result.results.append(item)
        log.info(
            "action kind=%s id=%s reason=%s bytes=%d outcome=%s %s",
            action.kind,
            action.id,
            action.reason,
            action.bytes,
            item.outcome,
            item.message,
            extra={
                "kind": str(action.kind),
                "id": action.id,
                "reason": str(action.reason),
                "bytes": action.bytes,
                "outcome": str(item.outcome),
                "detail": item.message,
            },
        )
        if item.outcome is Outcome.FAILED:
            result.errors.append(f"{action.kind} {action.id}: {item.message}")
        if self.on_result and notify:
            self.on_result(item)

    async def _measure_settled(
        self, errors: list[str], before: FileSystemEntry | None, expected: int
    ) -> FileSystemEntry | None:
        """The file system once what the actions freed has reached it (see SETTLE_TIMEOUT): the lowest use read
        until it gained `expected` bytes since `before` (within a block), stopped dropping, or time ran out."""
        low = await self._measure_safely(errors)
        if low is None or before is None:
            return low
        start = last_drop = time.monotonic()
        while before.used - low.used < expected - low.block_size:
            now = time.monotonic()
            if now - start >= self.settle_timeout or now - last_drop >= self.settle_quiet or self._halted():
                break  # a run asked to stop (SIGTERM) reads the figure once: its exit does not wait on the release
            await asyncio.sleep(self.settle_interval)
            again = await self._measure_safely(errors)
            if again is None:
                break
            if again.used < low.used:
                if again.used < low.used - again.block_size:
                    last_drop = time.monotonic()
                low = again
        return low

    async def _measure_safely(self, errors: list[str]) -> FileSystemEntry | None:
        try:
            return await asyncio.to_thread(self.measure)
        except OSError as exc:
            errors.append(f"measuring the file system: {exc}")
            return None

    async def _apply_one(self, action: Action, images: dict[str, ImageEntry]) -> tuple[Outcome, str]:
        match action.kind:
            case ActionKind.REMOVE_IMAGE:
                image = images[action.id]
                # Its names as of now: CRI RemoveImage takes every one, a name given since planning included.
                records = await self.containerd.list_images([f"target.digest=={t}" for t in image.targets])
                current = [*image.names, *image.repo_tags, *image.repo_digests, *(r.name for r in records)]
                names = image.all_names | normalize_all(current)
                if why := self._protected_by_name(current, names):
                    return Outcome.SKIPPED, why
                if why := await self._current_use(names):
                    return Outcome.SKIPPED, why
                if self._halted():  # asked again after the re-checks, right before the send
                    raise _NotSent
                if self.gate is not None and (why := self.gate()) is not None:
                    return Outcome.SKIPPED, why
                await self._remove_through_cri(image.id)
                # Records CRI does not manage (another client's) go through containerd directly.
                names_then = dict.fromkeys((*image.names, *(r.name for r in records)))
                if moved := await self._delete_names(names_then, {*image.targets, *(r.target.digest for r in records)}):
                    return Outcome.DONE, "left " + "; ".join(moved)
                return Outcome.DONE, ""
            case ActionKind.REMOVE_CONTAINER:
                try:
                    status = await self.cri.container_status(action.id)
                except NotFoundError:
                    return Outcome.DONE, "already removed"  # the kubelet removed it first
                if status.state != "EXITED":
                    return Outcome.SKIPPED, f"container is {status.state.lower()} now"
                await self.cri.remove_container(action.id, missing_ok=True)
                return Outcome.DONE, ""
            case ActionKind.DELETE_LEASE:
                # Still expired? Its owner may have extended it since planning.
                lease = next((x for x in await self.containerd.list_leases() if x.id == action.id), None)
                if lease is None:
                    return Outcome.DONE, "already gone"
                expire = lease.labels.get(GC_EXPIRE)
                expires_at = parse_rfc3339(expire) if expire else None
                if expires_at is None or expires_at > datetime.now(UTC):
                    return Outcome.SKIPPED, "no longer expired"
                await self.containerd.delete_lease(action.id, missing_ok=True)
                return Outcome.DONE, ""
            case ActionKind.REMOVE_SNAPSHOT | ActionKind.DELETE_CONTENT if action.reason is Reason.ORPHAN:
                return await self._collect(action)
            case ActionKind.DISCARD_LAYER:
                if holder := await self._lease_holding(action.id):
                    return Outcome.SKIPPED, f"held by lease {holder} now (a pull in progress)"
                await self.containerd.delete_content(action.id, missing_ok=True)
                return Outcome.DONE, ""
        return Outcome.FAILED, f"unknown action kind {action.kind}"  # pragma: no cover

    async def _remove_through_cri(self, image_id: str) -> None:
        """CRI RemoveImage. containerd deletes the image's records, then collects synchronously; on a full disk that
        collection can fail ("gc failed": its metadata store could not grow) with the records already gone, and
        then nothing frees the image's space until containerd's next collection. So only the collection is asked
        for again, a few times, apart (what the failed transaction released in the store makes room for the
        next). RemoveImage is never sent again: the re-checks before it (in use, protected, policy) were for that
        one call, and a pull since then may have brought the image back under another name. Still failing: one
        error naming it."""
        try:
            await self.cri.remove_image(image_id, missing_ok=True)
            return
        except RuntimeClientError as exc:
            if "gc failed" not in str(exc):
                raise
            failure = exc
        for delay in GC_RETRY_DELAYS:
            log.warning("image id=%s: containerd's garbage collection failed (%s); collecting again", image_id, failure)
            await asyncio.sleep(delay)
            try:
                await self.containerd.wait_for_gc()
                return
            except RuntimeClientError as exc:
                if "gc failed" not in str(exc):
                    raise
                failure = exc
        raise RuntimeClientError(
            f"containerd deleted the image's records, but its garbage collection failed "
            f"{len(GC_RETRY_DELAYS) + 1} times, so its space is not freed yet: {failure}"
        )

    async def _delete_names(self, names: Iterable[str], targets: set[str]) -> list[str]:
        """Delete each image record of `names` that still points at one of `targets` (the removed image); one
        that points elsewhere now (a `:latest` pulled again since planning) names another image and is left.
        Returns what was left and why. (containerd 1.6 has no conditional delete: a pull between this read and
        the delete can still lose its name; the window is one round trip, not the whole run.)"""
        moved: list[str] = []
        for name in names:
            try:
                record = await self.containerd.get_image(name)
            except NotFoundError:
                continue  # CRI RemoveImage took it, or it went meanwhile
            if record.target.digest not in targets:
                log.info("image name=%s left: it points at %s now, not the removed image", name, record.target.digest)
                moved.append(f"{name}: it points at {record.target.digest} now")
                continue
            await self.containerd.delete_image(name, missing_ok=True)
        return moved

    async def _collect(self, action: Action) -> tuple[Outcome, str]:
        """An orphan is never deleted directly: containerd's own garbage collection decides (it sees every label,
        lease and namespace, and whatever started since the inventory). One synchronous collection, then the
        orphan is done if it is gone, skipped if the collector kept it."""
        if not self._collected:
            await self.containerd.wait_for_gc()
            self._collected = True
        try:
            if action.kind is ActionKind.REMOVE_SNAPSHOT:
                await self.containerd.stat_snapshot(action.id, self.snapshotter)
            else:
                await self.containerd.content_info(action.id)
        except NotFoundError:
            return Outcome.DONE, "collected by containerd's garbage collection"
        return Outcome.SKIPPED, "containerd's garbage collection kept it (still referenced)"

    async def _lease_holding(self, digest: str) -> str | None:
        """A lease that holds blob `digest` right now, if any (a pull that started since planning)."""
        for lease in await self.containerd.list_leases():
            try:
                resources = await self.containerd.list_lease_resources(lease.id)
            except NotFoundError:
                continue
            if any(r.type == "content" and r.id == digest for r in resources):
                return lease.id
        return None

    def _protected_by_name(self, current: Iterable[str], names: frozenset[str]) -> str | None:
        """Why one of the image's current names protects it now (the cluster's set, re-read; the keep patterns;
        the sandbox image), or None."""
        protected = self.protected_images() if callable(self.protected_images) else self.protected_images
        if not normalize_all(protected).isdisjoint(names):
            return "protected in the cluster now"
        if self.sandbox_image and (normalize_or_none(self.sandbox_image) or self.sandbox_image) in names:
            return "sandbox (pause) image"
        if not self.configured_images.isdisjoint(names):
            return "pinned in the runtime's configuration"
        for pattern in self.keep() if callable(self.keep) else self.keep:
            if any(matches_pattern(name, pattern) for name in current):
                return f"kept by pattern {pattern!r} (a name it has now)"
        return None

    async def _current_use(self, names: frozenset[str]) -> str | None:
        """How a container (CRI or plain containerd) uses one of `names` (normalised) right now, if one does: it
        runs it, or mounts it as a volume; or why that cannot be told (a container's ContainerStatus failed)."""
        containers = await self.cri.list_containers()
        for c in containers:
            if not names.isdisjoint(normalize_all((c.image, c.image_ref))):
                return f"now in use by container {c.id}"
        mounted = await self.image_mounts.update(self.cri, containers)
        for cid, images in mounted.by_container.items():
            if not names.isdisjoint(normalize_all(images)):
                return f"now mounted as a volume by container {cid}"
        if mounted.unresolved:
            some = ", ".join(sorted(mounted.unresolved)[:3])
            return f"cannot tell whether a container mounts it as a volume (ContainerStatus failed: {some})"
        for record in await self.containerd.list_containers():
            if (normalize_or_none(record.image) or record.image) in names:
                return f"now in use by container {record.id}"
        return None
