"""`CriClient`: an async client of the Kubernetes CRI (`runtime.v1`) ImageService and RuntimeService.

    async with CriClient("/run/containerd/containerd.sock") as cri:
        images = await cri.list_images()

Only `node_janitor.runtime` records go in and out. Removals are idempotent in the CRI spec; they
also take `missing_ok=True` for runtimes that answer NotFound anyway.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TypeVar

from node_janitor.defaults import DEFAULT_CONTAINERD_ADDRESS
from node_janitor.runtime._convert import from_unix_nanos, from_unix_nanos_or_none
from node_janitor.runtime._rpc import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TIMEOUT,
    Message,
    RpcChannel,
    SocketClient,
)
from node_janitor.runtime.gen.runtime.v1 import api_pb2 as cri
from node_janitor.runtime.records import (
    ContainerSpec,
    ContainerState,
    ContainerStats,
    CriContainer,
    CriContainerStatus,
    CriImage,
    CriSandbox,
    CriStatus,
    CriVersion,
    FilesystemUsage,
    ImageFsInfo,
    PodSandboxSpec,
    RuntimeCondition,
    SandboxState,
)

DEFAULT_CRI_ADDRESS = DEFAULT_CONTAINERD_ADDRESS  # one socket serves both
CRI_API_VERSION = "v1"

_RUNTIME = "/" + cri.DESCRIPTOR.services_by_name["RuntimeService"].full_name + "/"
_IMAGES = "/" + cri.DESCRIPTOR.services_by_name["ImageService"].full_name + "/"

_CONTAINER_STATES: dict[int, ContainerState] = {
    cri.CONTAINER_CREATED: "CREATED",
    cri.CONTAINER_RUNNING: "RUNNING",
    cri.CONTAINER_EXITED: "EXITED",
    cri.CONTAINER_UNKNOWN: "UNKNOWN",
}
_CONTAINER_STATE_NAMES: dict[ContainerState, str] = {s: f"CONTAINER_{s}" for s in _CONTAINER_STATES.values()}
_SANDBOX_STATES: dict[int, SandboxState] = {cri.SANDBOX_READY: "READY", cri.SANDBOX_NOTREADY: "NOTREADY"}
_SANDBOX_STATE_NAMES: dict[SandboxState, str] = {s: f"SANDBOX_{s}" for s in _SANDBOX_STATES.values()}

R = TypeVar("R")


class CriClient(SocketClient):
    """Async CRI client over a unix socket (one gRPC channel, closed by `close()` / `async with`)."""

    def __init__(
        self,
        address: str = DEFAULT_CRI_ADDRESS,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._rpc = RpcChannel(
            address, peer="CRI runtime", api="CRI runtime.v1", timeout=timeout, max_message_bytes=max_message_bytes
        )

    async def _runtime(self, method: str, request: Message, response_type: type[R], deadline: float | None = None) -> R:
        return await self._rpc.unary(_RUNTIME + method, request, response_type, deadline=deadline)

    async def _image(self, method: str, request: Message, response_type: type[R], deadline: float | None = None) -> R:
        return await self._rpc.unary(_IMAGES + method, request, response_type, deadline=deadline)

    # ---- runtime ----

    async def version(self) -> CriVersion:
        """The runtime's name and version; RuntimeVersionError if it does not serve CRI runtime.v1."""
        resp = await self._runtime("Version", cri.VersionRequest(version=CRI_API_VERSION), cri.VersionResponse)
        return CriVersion(
            version=resp.version,
            runtime_name=resp.runtime_name,
            runtime_version=resp.runtime_version,
            runtime_api_version=resp.runtime_api_version,
        )

    async def status(self, *, verbose: bool = False) -> CriStatus:
        """The runtime's conditions (RuntimeReady, NetworkReady); with `verbose`, its `info` too."""
        resp = await self._runtime("Status", cri.StatusRequest(verbose=verbose), cri.StatusResponse)
        return CriStatus(
            conditions=tuple(
                RuntimeCondition(type=c.type, status=c.status, reason=c.reason, message=c.message)
                for c in resp.status.conditions
            ),
            info=dict(resp.info),
        )

    async def sandbox_image(self) -> str:
        """The pod sandbox ("pause") image the runtime is configured with, or "" if it does not say.

        containerd reports its CRI config as JSON under the verbose status's "config" key.
        """
        info = (await self.status(verbose=True)).info
        try:
            config = json.loads(info.get("config", "{}"))
        except ValueError:
            return ""
        image = config.get("sandboxImage", "") if isinstance(config, dict) else ""
        return image if isinstance(image, str) else ""

    # ---- images ----

    async def list_images(self) -> list[CriImage]:
        """All images, one per image ID. (CRI's image filter is not offered: containerd 1.6 ignores it.)"""
        resp = await self._image("ListImages", cri.ListImagesRequest(), cri.ListImagesResponse)
        return [_image(i) for i in resp.images]

    async def image_status(self, image: str) -> CriImage | None:
        """The image named by `image` (reference or ID), or None if the runtime does not have it."""
        resp = await self._image(
            "ImageStatus", cri.ImageStatusRequest(image=cri.ImageSpec(image=image)), cri.ImageStatusResponse
        )
        if not resp.HasField("image") or not resp.image.id:
            return None
        return _image(resp.image)

    async def pull_image(self, image: str, *, deadline: float | None = None) -> str:
        """Pull `image` (a reference) as the kubelet does, without credentials; returns the runtime's image ref
        (containerd: the image ID). `deadline`: seconds for this call (a pull outlasts the usual timeout)."""
        resp = await self._image(
            "PullImage", cri.PullImageRequest(image=cri.ImageSpec(image=image)), cri.PullImageResponse, deadline
        )
        return resp.image_ref

    async def remove_image(self, image: str, *, missing_ok: bool = False) -> None:
        """Remove the image (all its tags and digests) by reference or ID."""
        await self._missing_ok(
            self._image(
                "RemoveImage", cri.RemoveImageRequest(image=cri.ImageSpec(image=image)), cri.RemoveImageResponse
            ),
            missing_ok,
        )

    async def image_fs_info(self) -> ImageFsInfo:
        """Usage of the file system(s) holding images (and, if separate, writable layers)."""
        resp = await self._image("ImageFsInfo", cri.ImageFsInfoRequest(), cri.ImageFsInfoResponse)
        return ImageFsInfo(
            image_filesystems=tuple(_fs_usage(u) for u in resp.image_filesystems),
            container_filesystems=tuple(_fs_usage(u) for u in resp.container_filesystems),
        )

    # ---- pod sandboxes ----

    async def run_pod_sandbox(self, spec: PodSandboxSpec, runtime_handler: str = "") -> str:
        """Create and start a pod sandbox; returns its id."""
        resp = await self._runtime(
            "RunPodSandbox",
            cri.RunPodSandboxRequest(config=_sandbox_config(spec), runtime_handler=runtime_handler),
            cri.RunPodSandboxResponse,
        )
        return str(resp.pod_sandbox_id)

    async def stop_pod_sandbox(self, pod_sandbox_id: str, *, missing_ok: bool = False) -> None:
        await self._missing_ok(
            self._runtime(
                "StopPodSandbox", cri.StopPodSandboxRequest(pod_sandbox_id=pod_sandbox_id), cri.StopPodSandboxResponse
            ),
            missing_ok,
        )

    async def remove_pod_sandbox(self, pod_sandbox_id: str, *, missing_ok: bool = False) -> None:
        """Remove a sandbox and its containers (the runtime stops them first if needed)."""
        await self._missing_ok(
            self._runtime(
                "RemovePodSandbox",
                cri.RemovePodSandboxRequest(pod_sandbox_id=pod_sandbox_id),
                cri.RemovePodSandboxResponse,
            ),
            missing_ok,
        )

    async def pod_sandbox_status(self, pod_sandbox_id: str) -> CriSandbox:
        resp = await self._runtime(
            "PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=pod_sandbox_id), cri.PodSandboxStatusResponse
        )
        s = resp.status
        return CriSandbox(
            id=s.id,
            name=s.metadata.name,
            namespace=s.metadata.namespace,
            uid=s.metadata.uid,
            attempt=s.metadata.attempt,
            state=_SANDBOX_STATES.get(s.state, "NOTREADY"),
            created_at=from_unix_nanos(s.created_at),
            labels=dict(s.labels),
            annotations=dict(s.annotations),
            runtime_handler=s.runtime_handler,
        )

    async def list_pod_sandboxes(
        self, *, id: str = "", state: SandboxState | None = None, labels: Mapping[str, str] | None = None
    ) -> list[CriSandbox]:
        """Sandboxes, optionally filtered by id (or id prefix), state and labels (all must match)."""
        filter_ = cri.PodSandboxFilter(
            id=id,
            state=cri.PodSandboxStateValue(state=_SANDBOX_STATE_NAMES[state]) if state else None,
            label_selector=dict(labels or {}),
        )
        resp = await self._runtime(
            "ListPodSandbox", cri.ListPodSandboxRequest(filter=filter_), cri.ListPodSandboxResponse
        )
        return [
            CriSandbox(
                id=p.id,
                name=p.metadata.name,
                namespace=p.metadata.namespace,
                uid=p.metadata.uid,
                attempt=p.metadata.attempt,
                state=_SANDBOX_STATES.get(p.state, "NOTREADY"),
                created_at=from_unix_nanos(p.created_at),
                labels=dict(p.labels),
                annotations=dict(p.annotations),
                runtime_handler=p.runtime_handler,
            )
            for p in resp.items
        ]

    # ---- containers ----

    async def create_container(self, pod_sandbox_id: str, spec: ContainerSpec, sandbox: PodSandboxSpec) -> str:
        """Create a container in a sandbox (as the kubelet does: with the sandbox's config); returns its id."""
        resp = await self._runtime(
            "CreateContainer",
            cri.CreateContainerRequest(
                pod_sandbox_id=pod_sandbox_id,
                config=_container_config(spec, sandbox),
                sandbox_config=_sandbox_config(sandbox),
            ),
            cri.CreateContainerResponse,
        )
        return str(resp.container_id)

    async def start_container(self, container_id: str) -> None:
        await self._runtime(
            "StartContainer", cri.StartContainerRequest(container_id=container_id), cri.StartContainerResponse
        )

    async def stop_container(self, container_id: str, *, grace_seconds: int = 0, missing_ok: bool = False) -> None:
        """Stop a container: SIGTERM, then SIGKILL after `grace_seconds` (0: at once)."""
        await self._missing_ok(
            self._runtime(
                "StopContainer",
                cri.StopContainerRequest(container_id=container_id, timeout=grace_seconds),
                cri.StopContainerResponse,
                deadline=self._rpc.timeout + grace_seconds,
            ),
            missing_ok,
        )

    async def remove_container(self, container_id: str, *, missing_ok: bool = False) -> None:
        """Remove a container (stopping it first if it runs); its writable layer goes with it."""
        await self._missing_ok(
            self._runtime(
                "RemoveContainer", cri.RemoveContainerRequest(container_id=container_id), cri.RemoveContainerResponse
            ),
            missing_ok,
        )

    async def list_containers(
        self,
        *,
        id: str = "",
        pod_sandbox_id: str = "",
        state: ContainerState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[CriContainer]:
        """Containers, optionally filtered by id (or prefix), sandbox, state and labels."""
        filter_ = cri.ContainerFilter(
            id=id,
            pod_sandbox_id=pod_sandbox_id,
            state=cri.ContainerStateValue(state=_CONTAINER_STATE_NAMES[state]) if state else None,
            label_selector=dict(labels or {}),
        )
        resp = await self._runtime(
            "ListContainers", cri.ListContainersRequest(filter=filter_), cri.ListContainersResponse
        )
        return [
            CriContainer(
                id=c.id,
                pod_sandbox_id=c.pod_sandbox_id,
                name=c.metadata.name,
                attempt=c.metadata.attempt,
                image=c.image.image,
                image_ref=c.image_ref,
                state=_CONTAINER_STATES.get(c.state, "UNKNOWN"),
                created_at=from_unix_nanos(c.created_at),
                labels=dict(c.labels),
                annotations=dict(c.annotations),
            )
            for c in resp.containers
        ]

    async def container_status(self, container_id: str) -> CriContainerStatus:
        resp = await self._runtime(
            "ContainerStatus", cri.ContainerStatusRequest(container_id=container_id), cri.ContainerStatusResponse
        )
        s = resp.status
        return CriContainerStatus(
            id=s.id,
            name=s.metadata.name,
            attempt=s.metadata.attempt,
            state=_CONTAINER_STATES.get(s.state, "UNKNOWN"),
            image=s.image.image,
            image_ref=s.image_ref,
            created_at=from_unix_nanos(s.created_at),
            started_at=from_unix_nanos_or_none(s.started_at),
            finished_at=from_unix_nanos_or_none(s.finished_at),
            exit_code=s.exit_code,
            reason=s.reason,
            message=s.message,
            log_path=s.log_path,
            labels=dict(s.labels),
            annotations=dict(s.annotations),
            image_mounts=_image_mounts(s.mounts),
        )

    async def reopen_container_log(self, container_id: str) -> None:
        """Make the runtime reopen the container's log file (after log rotation renamed it)."""
        await self._runtime(
            "ReopenContainerLog",
            cri.ReopenContainerLogRequest(container_id=container_id),
            cri.ReopenContainerLogResponse,
        )

    async def list_container_stats(
        self, *, id: str = "", pod_sandbox_id: str = "", labels: Mapping[str, str] | None = None
    ) -> list[ContainerStats]:
        """Per-container stats; node-janitor reads the writable layer's usage."""
        resp = await self._runtime(
            "ListContainerStats",
            cri.ListContainerStatsRequest(
                filter=cri.ContainerStatsFilter(id=id, pod_sandbox_id=pod_sandbox_id, label_selector=dict(labels or {}))
            ),
            cri.ListContainerStatsResponse,
        )
        stats = []
        for s in resp.stats:
            layer = _fs_usage(s.writable_layer) if s.HasField("writable_layer") else None
            stats.append(
                ContainerStats(
                    id=s.attributes.id,
                    name=s.attributes.metadata.name,
                    attempt=s.attributes.metadata.attempt,
                    writable_layer_bytes=layer.used_bytes if layer else None,
                    writable_layer_inodes=layer.inodes_used if layer else None,
                    writable_layer_mountpoint=layer.mountpoint if layer else "",
                    labels=dict(s.attributes.labels),
                    annotations=dict(s.attributes.annotations),
                )
            )
        return stats

    # ---- helpers ----


def _image(i: cri.Image) -> CriImage:
    return CriImage(
        id=i.id,
        repo_tags=tuple(i.repo_tags),
        repo_digests=tuple(i.repo_digests),
        size=i.size,
        pinned=i.pinned,
    )


def _fs_usage(u: cri.FilesystemUsage) -> FilesystemUsage:
    return FilesystemUsage(
        mountpoint=u.fs_id.mountpoint,
        used_bytes=u.used_bytes.value if u.HasField("used_bytes") else None,
        inodes_used=u.inodes_used.value if u.HasField("inodes_used") else None,
        timestamp=from_unix_nanos(u.timestamp) if u.timestamp else None,
    )


def _namespace_options(host_network: bool) -> cri.NamespaceOption:
    # PID and IPC stay per pod (CRI's default kinds); the network is the node's when asked (no CNI needed).
    return cri.NamespaceOption(network=cri.NODE if host_network else cri.POD, pid=cri.POD, ipc=cri.POD)


def _sandbox_config(spec: PodSandboxSpec) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=spec.name, uid=spec.uid, namespace=spec.namespace, attempt=spec.attempt),
        hostname=spec.hostname,
        log_directory=spec.log_directory,
        labels=dict(spec.labels),
        annotations=dict(spec.annotations),
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=spec.cgroup_parent,
            security_context=cri.LinuxSandboxSecurityContext(namespace_options=_namespace_options(spec.host_network)),
        ),
    )


def _container_config(spec: ContainerSpec, sandbox: PodSandboxSpec) -> cri.ContainerConfig:
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=spec.name, attempt=spec.attempt),
        image=cri.ImageSpec(image=spec.image),
        command=list(spec.command),
        args=list(spec.args),
        working_dir=spec.working_dir,
        envs=[cri.KeyValue(key=k, value=v) for k, v in spec.envs.items()],
        labels=dict(spec.labels),
        annotations=dict(spec.annotations),
        log_path=spec.log_path,
        linux=cri.LinuxContainerConfig(
            security_context=cri.LinuxContainerSecurityContext(
                namespace_options=_namespace_options(sandbox.host_network)
            )
        ),
    )


def _image_mounts(mounts: Iterable[cri.Mount]) -> tuple[str, ...]:
    """The images of a container's image mounts (KEP-4639): each one's image (the ID the kubelet pulled) and its
    digest when the runtime reports one, each name once."""
    refs = (ref for m in mounts if m.HasField("image") for ref in (m.image.image, m.image.image_ref))
    return tuple(dict.fromkeys(ref for ref in refs if ref))
