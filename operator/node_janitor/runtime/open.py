"""Opening a node's runtime: both clients on containerd's socket (the CLI, the demo and the agent's engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from node_janitor.runtime.containerd import ContainerdClient
from node_janitor.runtime.cri import CriClient


@asynccontextmanager
async def open_runtime(socket: str, namespace: str) -> AsyncIterator[tuple[CriClient, ContainerdClient]]:
    """Both clients on containerd's socket; checks the runtime answers before anything else is done."""
    async with CriClient(socket) as cri, ContainerdClient(socket, namespace=namespace) as containerd:
        await containerd.version()
        await cri.version()
        yield cri, containerd
