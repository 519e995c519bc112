"""Run pods and containers through CRI the way kubelet does (log layout included), for tests and the demo."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

from node_janitor.runtime import ContainerSpec, CriClient, PodSandboxSpec


@dataclass(frozen=True)
class RunningPod:
    sandbox_id: str
    spec: PodSandboxSpec
    log_dir: Path


@dataclass(frozen=True)
class StartedContainer:
    id: str
    pod: RunningPod
    name: str
    log_path: Path


async def run_pod(cri: CriClient, pod_log_dir: Path, name: str, namespace: str = "default") -> RunningPod:
    """A host-network pod sandbox whose logs go to `<pod_log_dir>/<namespace>_<name>_<uid>/` as kubelet's do."""
    uid = str(uuid.uuid4())
    log_dir = pod_log_dir / f"{namespace}_{name}_{uid}"
    log_dir.mkdir(parents=True, exist_ok=True)
    spec = PodSandboxSpec(
        name=name,
        namespace=namespace,
        uid=uid,
        log_directory=str(log_dir),
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace},
    )
    return RunningPod(await cri.run_pod_sandbox(spec), spec, log_dir)


async def start_container(
    cri: CriClient, pod: RunningPod, name: str, image: str, script: str, *, attempt: int = 0
) -> StartedContainer:
    """Create and start `sh -c script` from `image` in `pod`, logging to `<container>/<attempt>.log`."""
    spec = ContainerSpec(
        name=name,
        image=image,
        command=["/bin/sh", "-c"],
        args=[script],
        log_path=f"{name}/{attempt}.log",
        attempt=attempt,
        labels={"io.kubernetes.container.name": name},
    )
    container_id = await cri.create_container(pod.sandbox_id, spec, pod.spec)
    await cri.start_container(container_id)
    return StartedContainer(container_id, pod, name, pod.log_dir / name / f"{attempt}.log")


async def wait_for_state(cri: CriClient, container_id: str, state: str, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (current := (await cri.container_status(container_id)).state) != state:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"container {container_id} is {current}, not {state}, after {within}s")
        await asyncio.sleep(0.05)


async def remove_all_pods(cri: CriClient) -> None:
    """Stop and remove every pod (and so its containers): what a test bed does before containerd stops."""
    for pod in await cri.list_pod_sandboxes():
        await cri.stop_pod_sandbox(pod.id, missing_ok=True)
        await cri.remove_pod_sandbox(pod.id, missing_ok=True)
