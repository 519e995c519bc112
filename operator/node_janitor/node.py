"""Opening a node's runtime and taking its inventory: shared by the CLI, the demo and the agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from node_janitor.collector import CollectOptions, SnapshotUsageCache, collect_inventory
from node_janitor.inventory import Inventory
from node_janitor.runtime import ContainerdClient, CriClient


@asynccontextmanager
async def open_runtime(socket: str, namespace: str) -> AsyncIterator[tuple[CriClient, ContainerdClient]]:
    """Both clients on containerd's socket; checks the runtime answers before anything else is done."""
    async with CriClient(socket) as cri, ContainerdClient(socket, namespace=namespace) as containerd:
        await containerd.version()
        await cri.version()
        yield cri, containerd


async def take_inventory(
    cri: CriClient,
    containerd: ContainerdClient,
    namespace: str,
    pod_log_dir: Path | None,
    cache: SnapshotUsageCache | None = None,
) -> Inventory:
    options = CollectOptions(namespace=namespace, pod_log_dir=pod_log_dir)
    return await collect_inventory(cri, containerd, options, cache=cache)
