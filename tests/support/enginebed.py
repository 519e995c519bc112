"""Helpers for engine tests on the real containerd bed."""

from __future__ import annotations

from typing import Any

from node_janitor.api import CleanupPolicy
from node_janitor.api.policy import PolicyRules
from node_janitor.devbed import ContainerdBed, OciImage
from node_janitor.node.collect import statvfs_entry
from node_janitor.node.execute import ExecutionResult, Executor
from node_janitor.node.inventory import Inventory
from node_janitor.node.plan import Plan
from node_janitor.runtime import ContainerdClient, CriClient

# Every unused image older than 0 s goes, whatever the disk: what protects an image is all that keeps it.
REMOVE_ALL_UNUSED: dict[str, Any] = {"images": {"minAge": "0s", "maxUnusedAge": "0s"}}


def rules(spec: dict[str, Any]) -> PolicyRules:
    """The per-node rules of a CleanupPolicy with this spec (validated as `kubectl apply` would)."""
    manifest = {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": "t"}}
    return CleanupPolicy.from_manifest({**manifest, "spec": spec}).spec.rules()


def import_into(bed: ContainerdBed, namespace: str, images: list[OciImage]) -> None:
    """Import `images` into another containerd namespace, not unpacked (as Docker 29 keeps its images in
    `moby`): their blobs are shared with the bed's namespace, their snapshots are not."""
    home = bed.namespace
    bed.namespace = namespace
    try:
        bed.import_images(images, unpack=False)
    finally:
        bed.namespace = home


async def execute(
    cri: CriClient, containerd: ContainerdClient, plan: Plan, inventory: Inventory, **options: Any
) -> ExecutionResult:
    """Apply `plan` with an Executor measuring the inventory's image file system."""
    fs = inventory.file_system("imagefs")
    assert fs is not None
    executor = Executor(cri, containerd, lambda: statvfs_entry("imagefs", fs.path), **options)
    return await executor.apply(plan, inventory)
