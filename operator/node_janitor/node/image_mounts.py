"""The images containers mount as volumes (KEP-4639 image volumes, GA in Kubernetes 1.36).

A pod's `volumes[].image.reference` is pulled by the kubelet and mounted read-only by the runtime; no container
runs that image, so a container's own image does not show the use. CRI `ContainerStatus` lists the container's
mounts, an image volume's with its image spec (the image ID the kubelet pulled). A container's mounts never
change, so each container costs one ContainerStatus in its life (as `LogPaths` does for log paths); containers
no longer listed are forgotten. One `ImageMounts` is shared by the inventory and the executor of one engine: the
executor asks again right before each RemoveImage, and only about containers created since.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from node_janitor.runtime.errors import NotFoundError, RuntimeClientError
from node_janitor.runtime.records import CriContainer, CriContainerStatus

__all__ = ["ContainerStatusSource", "ImageMounts", "MountedImages"]


class ContainerStatusSource(Protocol):
    async def container_status(self, container_id: str) -> CriContainerStatus: ...


@dataclass(frozen=True)
class MountedImages:
    """What the listed containers mount, as far as it is known."""

    by_container: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Container id -> the images it mounts as volumes (only containers that mount one)."""
    unresolved: frozenset[str] = frozenset()
    """Containers whose ContainerStatus failed (asked again next time): what they mount is not known."""


class ImageMounts:
    """Container id -> the images it mounts as volumes (`CriContainerStatus.image_mounts`, as the runtime names
    them: image IDs, digests), cached for the container's life."""

    def __init__(self) -> None:
        self._mounts: dict[str, tuple[str, ...]] = {}

    async def update(self, cri: ContainerStatusSource, containers: Iterable[CriContainer]) -> MountedImages:
        """The image mounts of `containers`, asking only about new ones (several updates may run at once: each
        answers for the containers it was given)."""
        listed = {c.id for c in containers}
        for cid in [cid for cid in self._mounts if cid not in listed]:
            self._mounts.pop(cid, None)
        new = sorted(listed - self._mounts.keys())
        statuses = await asyncio.gather(*(cri.container_status(cid) for cid in new), return_exceptions=True)
        unresolved: set[str] = set()
        for cid, status in zip(new, statuses, strict=True):
            if isinstance(status, CriContainerStatus):
                self._mounts[cid] = status.image_mounts
            elif not isinstance(status, NotFoundError | RuntimeClientError):
                raise status  # a bug, not the runtime's answer
            elif not isinstance(status, NotFoundError):
                unresolved.add(cid)
            # NotFound: gone meanwhile
        mounts = {cid: self._mounts[cid] for cid in sorted(listed) if self._mounts.get(cid)}
        return MountedImages(mounts, frozenset(unresolved))
