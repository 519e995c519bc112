"""CriClient against a real containerd (NJ_CONTAINERD: 2.3 or Debian's 1.6): every RPC it exposes, on the wire."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.runtime import (
    ContainerSpec,
    CriClient,
    NotFoundError,
    PodSandboxSpec,
    RuntimeClientError,
)

pytestmark = pytest.mark.containerd

LOOP = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done"


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.2)


def _contains(path: Path, text: bytes) -> bool:
    return path.exists() and text in path.read_bytes()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _sandbox(bed: ContainerdBed, name: str) -> PodSandboxSpec:
    uid = f"uid-{name}"
    log_dir = bed.pod_log_dir / f"default_{name}_{uid}"
    log_dir.mkdir(parents=True, exist_ok=True)
    return PodSandboxSpec(
        name=name,
        namespace="default",
        uid=uid,
        log_directory=str(log_dir),
        labels={"app": name, "io.kubernetes.pod.name": name},
        annotations={"note": "test"},
    )


async def test_version_status_and_image_fs_info(containerd_bed: ContainerdBed) -> None:
    async with CriClient(containerd_bed.address) as cri:
        version = await cri.version()
        assert version.runtime_name == "containerd"
        assert version.runtime_api_version == "v1"
        status = await cri.status()
        assert status.runtime_ready
        assert status.condition("NetworkReady") is not None  # no CNI here: not ready, but reported
        assert status.info == {}
        assert "config" in (await cri.status(verbose=True)).info
        if containerd_bed.binaries.major >= 2:  # 2.x's verbose Status no longer carries the images plugin's config
            assert await cri.sandbox_image() == ""
        else:
            assert await cri.sandbox_image() == containerd_bed.sandbox_image
        fs = await cri.image_fs_info()
        assert len(fs.image_filesystems) == 1
        assert fs.image_filesystems[0].mountpoint.startswith(str(containerd_bed.root))

        # containerd sums its snapshots' usage on a timer (10s), so the first answer may still say 0.
        async def counted() -> bool:
            usage = (await cri.image_fs_info()).image_filesystems[0]
            return (usage.used_bytes or 0) > 0 and (usage.inodes_used or 0) > 0

        await _eventually(counted, within=40, what="image file system usage")


async def test_images_list_status_and_remove(containerd_bed: ContainerdBed) -> None:
    b = containerd_bed.builder
    image = b.build("example.com/cri/app:v1", [b.busybox_layer(), Layer.random(1 << 20, "cri-app")])
    containerd_bed.import_images([image])
    async with CriClient(containerd_bed.address) as cri:
        images = {i.id: i for i in await cri.list_images()}
        assert image.id in images
        listed = images[image.id]
        assert listed.repo_tags == ("example.com/cri/app:v1",)
        assert listed.size >= 1 << 20

        by_tag = await cri.image_status("example.com/cri/app:v1")
        by_id = await cri.image_status(image.id)
        assert by_tag == by_id == listed
        assert await cri.image_status("example.com/cri/absent:v1") is None

        await cri.remove_image(image.id)
        assert await cri.image_status("example.com/cri/app:v1") is None
        assert image.id not in {i.id for i in await cri.list_images()}
        # CRI removal is idempotent: containerd answers OK for an image that is gone.
        await cri.remove_image(image.id)
        await cri.remove_image("example.com/cri/absent:v1", missing_ok=True)


async def test_pod_and_container_lifecycle_logs_and_stats(containerd_bed: ContainerdBed) -> None:
    b = containerd_bed.builder
    image = b.build("example.com/cri/logger:v1", [b.busybox_layer()])
    containerd_bed.import_images([image])
    sandbox = _sandbox(containerd_bed, "lifecycle")
    async with CriClient(containerd_bed.address) as cri:
        pod_id = await cri.run_pod_sandbox(sandbox)
        pod = await cri.pod_sandbox_status(pod_id)
        assert (pod.id, pod.name, pod.namespace, pod.uid, pod.state) == (
            pod_id,
            "lifecycle",
            "default",
            sandbox.uid,
            "READY",
        )
        assert pod.labels["app"] == "lifecycle" and pod.annotations["note"] == "test"
        assert [p.id for p in await cri.list_pod_sandboxes(labels={"app": "lifecycle"})] == [pod_id]
        assert await cri.list_pod_sandboxes(labels={"app": "other"}) == []
        assert [p.id for p in await cri.list_pod_sandboxes(state="READY")] == [pod_id]

        spec = ContainerSpec(
            name="logger",
            image="example.com/cri/logger:v1",
            command=["/bin/sh", "-c"],
            args=[f"dd if=/dev/zero of=/ballast bs=1M count=6 2>/dev/null; {LOOP}"],
            log_path="logger/0.log",
            labels={"role": "logger"},
            envs={"GREETING": "hello"},
            working_dir="/",
        )
        ctr_id = await cri.create_container(pod_id, spec, sandbox)
        created = await cri.container_status(ctr_id)
        assert created.state == "CREATED" and created.started_at is None
        await cri.start_container(ctr_id)

        status = await cri.container_status(ctr_id)
        assert status.state == "RUNNING" and status.started_at is not None
        assert status.name == "logger" and status.labels["role"] == "logger"
        assert status.image == "example.com/cri/logger:v1"  # as the container was created with
        assert status.image_ref == image.id
        log_path = Path(status.log_path)
        assert log_path == Path(sandbox.log_directory) / "logger/0.log"

        [listed] = await cri.list_containers(pod_sandbox_id=pod_id)
        assert (listed.id, listed.name, listed.state, listed.pod_sandbox_id) == (ctr_id, "logger", "RUNNING", pod_id)
        assert (listed.image, listed.image_ref) == ("example.com/cri/logger:v1", image.id)
        assert [c.id for c in await cri.list_containers(state="RUNNING", labels={"role": "logger"})] == [ctr_id]
        assert await cri.list_containers(state="EXITED") == []

        async def log_has_lines() -> bool:
            return _contains(log_path, b"line 3")

        await _eventually(log_has_lines, what="CRI log lines")

        # Log rotation as the kubelet does it: rename, ReopenContainerLog, and a fresh file appears.
        rotated = log_path.with_name("0.log.20260101-000000")
        os.rename(log_path, rotated)
        await cri.reopen_container_log(ctr_id)

        async def reopened() -> bool:
            return _size(log_path) > 0

        await _eventually(reopened, what="reopened log")
        size = _size(rotated)
        await asyncio.sleep(0.5)
        assert _size(rotated) == size, "the runtime still writes the rotated file"

        # The writable layer holds the 6 MiB ballast; containerd refreshes this figure periodically (10s).
        async def layer_counted() -> bool:
            stats = await cri.list_container_stats(pod_sandbox_id=pod_id)
            return len(stats) == 1 and (stats[0].writable_layer_bytes or 0) >= 6 << 20

        await _eventually(layer_counted, within=40, what="writable layer usage")
        [stats] = await cri.list_container_stats(id=ctr_id)
        assert stats.id == ctr_id and stats.name == "logger" and stats.labels["role"] == "logger"
        assert stats.writable_layer_inodes is not None and stats.writable_layer_inodes >= 1

        await cri.stop_container(ctr_id, grace_seconds=1)
        stopped = await cri.container_status(ctr_id)
        assert stopped.state == "EXITED" and stopped.finished_at is not None
        assert stopped.exit_code != 0  # killed by a signal
        with pytest.raises(RuntimeClientError):
            await cri.reopen_container_log(ctr_id)  # only a running container has a log to reopen

        await cri.remove_container(ctr_id)
        with pytest.raises(NotFoundError):
            await cri.container_status(ctr_id)
        await cri.remove_container(ctr_id, missing_ok=True)
        await cri.stop_container(ctr_id, missing_ok=True)

        await cri.stop_pod_sandbox(pod_id)
        assert (await cri.pod_sandbox_status(pod_id)).state == "NOTREADY"
        await cri.remove_pod_sandbox(pod_id)
        with pytest.raises(NotFoundError):
            await cri.pod_sandbox_status(pod_id)
        await cri.remove_pod_sandbox(pod_id, missing_ok=True)
        await cri.stop_pod_sandbox(pod_id, missing_ok=True)
        assert await cri.list_pod_sandboxes() == []


async def test_exited_container_status(containerd_bed: ContainerdBed) -> None:
    b = containerd_bed.builder
    containerd_bed.import_images([b.build("example.com/cri/once:v1", [b.busybox_layer()])])
    sandbox = _sandbox(containerd_bed, "once")
    async with CriClient(containerd_bed.address) as cri:
        pod_id = await cri.run_pod_sandbox(sandbox)
        ctr_id = await cri.create_container(
            pod_id,
            ContainerSpec(
                name="once", image="example.com/cri/once:v1", command=["/bin/sh", "-c", "exit 3"], log_path="once/0.log"
            ),
            sandbox,
        )
        await cri.start_container(ctr_id)

        async def exited() -> bool:
            return (await cri.container_status(ctr_id)).state == "EXITED"

        await _eventually(exited, what="container exit")
        status = await cri.container_status(ctr_id)
        assert status.exit_code == 3 and status.reason == "Error"
        assert status.finished_at is not None and status.started_at is not None
        # containerd stamps started_at after the start returns: a process that exits at once can
        # "finish" a fraction of a millisecond before it "started".
        assert abs(status.finished_at - status.started_at) < timedelta(seconds=5)
        assert [c.id for c in await cri.list_containers(state="EXITED")] == [ctr_id]
        await cri.remove_pod_sandbox(pod_id)  # removes its containers too
        assert await cri.list_containers() == []
