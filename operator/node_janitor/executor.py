"""Apply a plan safely and measure what it really freed.

Safety rules: right before removing an image, the containers are listed again and the image is skipped if any
container (CRI or not, any state) now uses it; images go through CRI RemoveImage so kubelet's view stays right;
something already gone counts as done; one failed action never stops the run, and every error is reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from node_janitor.inventory import FileSystemEntry, ImageEntry, Inventory
from node_janitor.planner import Action, ActionKind, Plan, Reason
from node_janitor.refs import normalize_all, normalize_or_none
from node_janitor.runtime.errors import NotFoundError, RuntimeClientError
from node_janitor.runtime.records import BlobInfo, ContainerRecord, CriContainer, CriContainerStatus, SnapshotInfo

log = logging.getLogger("node_janitor.executor")


class CriRemover(Protocol):
    async def list_containers(self) -> list[CriContainer]: ...
    async def remove_image(self, image: str, *, missing_ok: bool = False) -> None: ...
    async def container_status(self, container_id: str) -> CriContainerStatus: ...
    async def remove_container(self, container_id: str, *, missing_ok: bool = False) -> None: ...


class ContainerdRemover(Protocol):
    async def list_containers(self) -> list[ContainerRecord]: ...
    async def delete_image(self, name: str, *, sync: bool = False, missing_ok: bool = False) -> None: ...
    async def delete_lease(self, lease_id: str, *, sync: bool = False, missing_ok: bool = False) -> None: ...
    async def stat_snapshot(self, key: str, snapshotter: str = ...) -> SnapshotInfo: ...
    async def content_info(self, digest: str) -> BlobInfo: ...
    async def delete_content(self, digest: str, *, missing_ok: bool = False) -> None: ...
    async def wait_for_gc(self) -> None: ...


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # not safe any more (e.g. a container started using the image)
    FAILED = "failed"


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


class Executor:
    def __init__(
        self,
        cri: CriRemover,
        containerd: ContainerdRemover,
        measure: Callable[[], FileSystemEntry | None],
        *,
        snapshotter: str = "overlayfs",
        on_result: Callable[[ActionResult], None] | None = None,
        protected_images: Iterable[str] | Callable[[], Iterable[str]] = (),
    ) -> None:
        self.cri = cri
        self.containerd = containerd
        self.measure = measure
        self.snapshotter = snapshotter
        self.on_result = on_result
        self.protected_images = protected_images
        self._collected = False  # a garbage collection ran in this apply()

    async def apply(self, plan: Plan, inventory: Inventory) -> ExecutionResult:
        started = time.monotonic()
        self._collected = False
        errors: list[str] = []
        result = ExecutionResult(before=await self._measure_safely(errors), errors=errors)
        images = inventory.image_by_id()
        for action in plan.actions:
            try:
                outcome, message = await self._apply_one(action, images)
            except RuntimeClientError as exc:
                outcome, message = Outcome.FAILED, str(exc)
            except OSError as exc:  # e.g. ENOSPC on something we write: report, go on
                outcome, message = Outcome.FAILED, f"{exc.__class__.__name__}: {exc}"
            item = ActionResult(action, outcome, message)
            result.results.append(item)
            log.info(
                "action kind=%s id=%s reason=%s bytes=%d outcome=%s %s",
                action.kind,
                action.id,
                action.reason,
                action.bytes,
                outcome,
                message,
            )
            if outcome is Outcome.FAILED:
                result.errors.append(f"{action.kind} {action.id}: {message}")
            if self.on_result:
                self.on_result(item)
        if plan.actions:
            try:
                await self.containerd.wait_for_gc()
            except RuntimeClientError as exc:
                result.errors.append(f"waiting for containerd's garbage collection: {exc}")
        result.after = await self._measure_safely(result.errors)
        result.duration_seconds = time.monotonic() - started
        return result

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
                names = image.all_names
                if not normalize_all(self._protected()).isdisjoint(names):
                    return Outcome.SKIPPED, "protected in the cluster now"
                user = await self._current_user(names)
                if user:
                    return Outcome.SKIPPED, f"now in use by container {user}"
                await self.cri.remove_image(image.id, missing_ok=True)
                # Records CRI does not manage (another client's) go through containerd directly.
                for name in image.names:
                    await self.containerd.delete_image(name, missing_ok=True)
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
                await self.containerd.delete_lease(action.id, missing_ok=True)
                return Outcome.DONE, ""
            case ActionKind.REMOVE_SNAPSHOT | ActionKind.DELETE_CONTENT if action.reason is Reason.ORPHAN:
                return await self._collect(action)
            case ActionKind.DISCARD_LAYER:
                await self.containerd.delete_content(action.id, missing_ok=True)
                return Outcome.DONE, ""
        return Outcome.FAILED, f"unknown action kind {action.kind}"  # pragma: no cover

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

    def _protected(self) -> Iterable[str]:
        protected = self.protected_images
        return protected() if callable(protected) else protected

    async def _current_user(self, names: frozenset[str]) -> str | None:
        """A container (CRI or plain containerd) that uses one of `names` (normalised) right now, if any."""
        for c in await self.cri.list_containers():
            if not names.isdisjoint(normalize_all((c.image, c.image_ref))):
                return c.id
        for record in await self.containerd.list_containers():
            if (normalize_or_none(record.image) or record.image) in names:
                return record.id
        return None
