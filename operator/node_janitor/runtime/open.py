"""Opening a node's runtime: both clients on containerd's socket (the CLI, the demo and the agent's engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from node_janitor.runtime.containerd import ContainerdClient
from node_janitor.runtime.cri import CriClient
from node_janitor.runtime.errors import NotContainerdError
from node_janitor.runtime.records import CriVersion

CONTAINERD_RUNTIME_NAME = "containerd"  # what containerd's CRI answers to Version (k3s's and RKE2's too)


def require_containerd(version: CriVersion, address: str) -> None:
    """NotContainerdError unless the CRI runtime that answered `version` is containerd."""
    if version.runtime_name != CONTAINERD_RUNTIME_NAME:
        runtime = " ".join(p for p in (version.runtime_name or "an unnamed runtime", version.runtime_version) if p)
        raise NotContainerdError(
            f"the CRI runtime at {address} is {runtime}, not containerd: node-janitor works on containerd only "
            "(it reads containerd's content store and snapshots through containerd's own API on that socket)",
            address=address,
        )


@asynccontextmanager
async def open_runtime(socket: str, namespace: str) -> AsyncIterator[tuple[CriClient, ContainerdClient]]:
    """Both clients on containerd's socket; checks the runtime answers, and is containerd (NotContainerdError,
    one line, for CRI-O and the like), before anything else is done."""
    async with CriClient(socket) as cri, ContainerdClient(socket, namespace=namespace) as containerd:
        require_containerd(await cri.version(), socket)
        await containerd.version()
        yield cri, containerd
