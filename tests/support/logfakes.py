"""A hand-written CRI fake for log management unit tests (integration tests use the real containerd)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from node_janitor.runtime import CriContainer, CriContainerStatus, CriSandbox, NotFoundError, RuntimeClientError

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def fake_uid(short: str) -> str:
    """A real pod UID (kubelet's shape) for a short name in a test: the same name gives the same UID."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pod:{short}"))


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeContainer:
    id: str
    sandbox: CriSandbox
    name: str
    attempt: int
    state: str
    log_path: str


@dataclass
class FakeCri:
    """Containers and sandboxes in memory; `reopen_container_log` behaves like containerd's: only a running
    container's log can be reopened, and reopening creates the file at its log path."""

    root: Path
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    sandboxes: dict[str, CriSandbox] = field(default_factory=dict)
    reopened: list[str] = field(default_factory=list)
    fail_reopen: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def add_pod(self, name: str, uid: str, namespace: str = "default") -> CriSandbox:
        uid = fake_uid(uid)
        s = CriSandbox(f"sb-{uid}", name, namespace, uid, 0, "READY", T0)
        self.sandboxes[s.id] = s
        (self.root / f"{namespace}_{name}_{uid}").mkdir(parents=True, exist_ok=True)
        return s

    def add_container(self, cid: str, pod: CriSandbox, name: str, attempt: int = 0, state: str = "RUNNING") -> Path:
        path = self.root / f"{pod.namespace}_{pod.name}_{pod.uid}" / name / f"{attempt}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        self.containers[cid] = FakeContainer(cid, pod, name, attempt, state, str(path))
        return path

    def remove_pod(self, sandbox_id: str) -> None:
        del self.sandboxes[sandbox_id]
        for cid in [c.id for c in self.containers.values() if c.sandbox.id == sandbox_id]:
            del self.containers[cid]

    async def list_containers(self) -> list[CriContainer]:
        self.calls.append("ListContainers")
        return [
            CriContainer(c.id, c.sandbox.id, c.name, c.attempt, "img", "sha256:img", c.state, T0)  # type: ignore[arg-type]
            for c in self.containers.values()
        ]

    async def list_pod_sandboxes(self) -> list[CriSandbox]:
        self.calls.append("ListPodSandbox")
        return list(self.sandboxes.values())

    async def container_status(self, container_id: str) -> CriContainerStatus:
        self.calls.append(f"ContainerStatus {container_id}")
        c = self.containers.get(container_id)
        if c is None:
            raise NotFoundError(f"container {container_id} not found")
        return CriContainerStatus(
            c.id,
            c.name,
            c.attempt,
            c.state,
            "img",
            "sha256:img",
            T0,
            T0,
            None,
            0,
            "",
            "",
            c.log_path,  # type: ignore[arg-type]
        )

    async def reopen_container_log(self, container_id: str) -> None:
        self.calls.append(f"ReopenContainerLog {container_id}")
        self.reopened.append(container_id)
        c = self.containers.get(container_id)
        if c is None:
            raise NotFoundError(f"container {container_id} not found")
        if c.state != "RUNNING" or container_id in self.fail_reopen:
            raise RuntimeClientError("failed to reopen container log: container is not running")
        fd = os.open(c.log_path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o640)
        os.close(fd)
