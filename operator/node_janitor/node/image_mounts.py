"""The images containers mount as volumes (KEP-4639 image volumes, GA in Kubernetes 1.36).

A pod's `volumes[].image.reference` is pulled by the kubelet and mounted read-only by the runtime; no container
runs that image, so a container's own image does not show the use. CRI `ContainerStatus` lists the container's
mounts, an image volume's with its image spec (the image ID the kubelet pulled). A container's mounts never
change, so each container costs one ContainerStatus in its life: the answers are the `LogPaths` cache's, which
asks for log paths with the same call (the engine's, shared with its log janitor and the agent's rotator: one
ContainerStatus per container for all of them); containers no longer listed are forgotten. One `ImageMounts` is
shared by the inventory and the executor of one engine: the executor asks again right before each RemoveImage,
and only about containers created since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from node_janitor.node.logs import LogPaths
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
    them: image IDs, digests), cached for the container's life in `statuses` (a fresh cache when not given)."""

    def __init__(self, statuses: LogPaths | None = None) -> None:
        self.statuses = statuses if statuses is not None else LogPaths()

    async def update(self, cri: ContainerStatusSource, containers: Iterable[CriContainer]) -> MountedImages:
        """The image mounts of `containers`, asking only about new ones (several updates may run at once: each
        answers for the containers it was given)."""
        containers = list(containers)
        unresolved = await self.statuses.refresh(cri, containers)
        listed = sorted({c.id for c in containers})
        mounts = {cid: m for cid in listed if (m := self.statuses.mounts.get(cid))}
        return MountedImages(mounts, frozenset(unresolved))
