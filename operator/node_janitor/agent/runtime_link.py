"""The agent's link to containerd: the CRI and containerd clients on its socket, reconnected after containerd went
away (a fresh channel, not gRPC's slow reconnect backoff), and the one NodeEngine of the current connection. The
clients come from a `Connect` factory (the agent's runtime port): `connect_containerd` opens the real ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from node_janitor.agent.backoff import RuntimeFingerprint, runtime_fingerprint
from node_janitor.node.engine import NodeEngine
from node_janitor.runtime import ContainerdClient, CriClient, RuntimeClientError, require_containerd
from node_janitor.runtime.discovery import RuntimeDiscovery, discover_runtime

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0

Connect = Callable[[str, str], tuple[CriClient, ContainerdClient]]
"""(socket, namespace) -> opened CRI and containerd clients."""


def connect_containerd(socket: str, namespace: str) -> tuple[CriClient, ContainerdClient]:
    cri, containerd = CriClient(socket), ContainerdClient(socket, namespace=namespace)
    cri.open()
    containerd.open()
    return cri, containerd


class RuntimeLink:
    """The clients on containerd's socket; `generation` counts connections, `error` says why there is none."""

    def __init__(
        self, socket: str, namespace: str, connect: Connect = connect_containerd, config_path: Path | None = None
    ) -> None:
        self.socket, self.namespace, self.connect = socket, namespace, connect
        self.config_path = config_path  # containerd's configuration file as the agent sees it (None: its usual places)
        self.discovery: RuntimeDiscovery | None = None  # what the first answer of each connection showed
        self.cri: CriClient | None = None
        self.containerd: ContainerdClient | None = None
        self.error: str | None = "not connected yet"
        self.generation = 0
        self.image_fs_path: str | None = None
        self.up = asyncio.Event()
        self._engine_of: tuple[int, NodeEngine] | None = None

    async def probe(self) -> bool:
        try:
            if self.cri is None or self.containerd is None:
                self.cri, self.containerd = self.connect(self.socket, self.namespace)
                self.generation += 1
            require_containerd(await asyncio.wait_for(self.cri.version(), PROBE_TIMEOUT), self.socket)
            if self.image_fs_path is None:
                info = await asyncio.wait_for(self.cri.image_fs_info(), PROBE_TIMEOUT)
                self.image_fs_path = next((u.mountpoint for u in info.image_filesystems if u.mountpoint), None)
        except (RuntimeClientError, TimeoutError) as exc:
            await self.down(str(exc) or "containerd did not answer in time")
            return False
        if self.error is not None:
            log.info("containerd reachable socket=%s", self.socket)
            await self._discover()
        self.error = None
        self.up.set()
        return True

    async def _discover(self) -> None:
        """Find the runtime's root, configuration and pinned images once per connection, and log them (one line):
        the engine protects what the configuration pins. A failure is a warning: CRI's `pinned` still protects."""
        cri = self.cri
        if cri is None:
            return
        try:
            self.discovery = await asyncio.wait_for(discover_runtime(cri, self.socket, self.config_path), PROBE_TIMEOUT)
        except (RuntimeClientError, TimeoutError) as exc:
            log.warning("runtime discovery failed: %s", exc or "containerd did not answer in time")
            return
        log.info("runtime found %s", self.discovery.summary())
        for warning in self.discovery.warnings:
            log.warning("runtime discovery: %s", warning)

    @property
    def configured_images(self) -> tuple[str, ...]:
        return self.discovery.configured_images if self.discovery is not None else ()

    @property
    def connected(self) -> bool:
        return self.error is None and self.cri is not None and self.containerd is not None

    def engine(self, build: Callable[[CriClient, ContainerdClient], NodeEngine]) -> NodeEngine:
        """The engine of the current connection (a new connection, a new engine: `build` makes it). Raises
        RuntimeClientError when there is no connection."""
        cri, containerd = self.cri, self.containerd
        if cri is None or containerd is None:
            raise RuntimeClientError(self.error or "containerd unreachable")
        if self._engine_of is None or self._engine_of[0] != self.generation:
            self._engine_of = (self.generation, build(cri, containerd))
        return self._engine_of[1]

    async def fingerprint(self) -> RuntimeFingerprint | None:
        """The runtime's containers (with states) and images, or None if it does not answer."""
        cri = self.cri
        if cri is None:
            return None
        try:
            containers, images = await asyncio.gather(cri.list_containers(), cri.list_images())
        except RuntimeClientError:
            return None
        return runtime_fingerprint(((c.id, c.state) for c in containers), (i.id for i in images))

    async def down(self, error: str) -> None:
        if self.error is None:
            log.warning("containerd unreachable socket=%s: %s", self.socket, error)
        self.error = error
        await self.close()

    async def close(self) -> None:
        self.up.clear()
        cri, containerd, self.cri, self.containerd = self.cri, self.containerd, None, None
        for client in (cri, containerd):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
