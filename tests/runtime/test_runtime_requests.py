"""What the clients put on the wire and how they read answers, against in-process gRPC servers.

The real-containerd tests (tests/runtime) prove containerd accepts these; here the exact requests are
pinned down: the Write stream's sequence, update masks, CRI configs, state and time conversions.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from node_janitor.runtime import (
    BlobInfo,
    ContainerdClient,
    ContainerSpec,
    CriClient,
    CriImage,
    Descriptor,
    PodSandboxSpec,
)
from node_janitor.runtime.containerd import WRITE_CHUNK
from node_janitor.runtime.gen.containerd.services.content.v1 import content_pb2
from node_janitor.runtime.gen.containerd.services.images.v1 import images_pb2
from node_janitor.runtime.gen.runtime.v1 import api_pb2


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nj-") as d:  # short: unix socket paths max out at 108 bytes
        yield Path(d) / "fake.sock"


@contextlib.asynccontextmanager
async def serve(path: Path, service: str, methods: dict[str, Any]) -> AsyncIterator[None]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, methods)])
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    try:
        yield
    finally:
        await server.stop(0)


def unary(fn: Callable[[Any, Any], Any], request_type: Any, response_type: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString
    )


def ts(seconds: int, nanos: int = 0) -> dict[str, int]:
    return {"seconds": seconds, "nanos": nanos}


async def test_write_content_stat_write_commit(sock: Path) -> None:
    data = bytes(range(256)) * (WRITE_CHUNK // 256 * 2 + 3)  # two full chunks and a bit
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    seen: list[content_pb2.WriteContentRequest] = []

    async def write(requests: Any, context: Any) -> Any:
        offset = 0
        async for req in requests:
            seen.append(req)
            offset += len(req.data)
            yield content_pb2.WriteContentResponse(action=req.action, offset=offset, digest=digest)

    async def info(request: Any, context: Any) -> Any:
        return content_pb2.InfoResponse(
            info=content_pb2.Info(
                digest=request.digest, size=len(data), created_at=ts(100), updated_at=ts(-62135596800)
            )
        )

    methods = {
        "Write": grpc.stream_stream_rpc_method_handler(
            write,
            request_deserializer=content_pb2.WriteContentRequest.FromString,
            response_serializer=content_pb2.WriteContentResponse.SerializeToString,
        ),
        "Info": unary(info, content_pb2.InfoRequest, content_pb2.InfoResponse),
    }
    async with serve(sock, "containerd.services.content.v1.Content", methods), ContainerdClient(str(sock)) as c:
        blob = await c.write_content("my-ref", data, labels={"k": "v"})

    created = datetime.fromtimestamp(100, UTC)
    # containerd leaves updated_at at Go's zero time until labels change: read as created_at.
    assert blob == BlobInfo(digest=digest, size=len(data), created_at=created, updated_at=created)
    actions = [content_pb2.WriteAction.Name(r.action) for r in seen]
    assert actions == ["STAT", "WRITE", "WRITE", "WRITE", "COMMIT"]
    stat, *writes, commit = seen
    assert (stat.ref, stat.total, stat.expected) == ("my-ref", len(data), digest)
    assert [w.offset for w in writes] == [0, WRITE_CHUNK, 2 * WRITE_CHUNK]
    assert b"".join(w.data for w in writes) == data
    assert (commit.total, commit.offset, commit.expected, dict(commit.labels)) == (
        len(data),
        len(data),
        digest,
        {"k": "v"},
    )


async def test_update_image_masks(sock: Path) -> None:
    masks: list[list[str]] = []

    async def update(request: Any, context: Any) -> Any:
        masks.append(list(request.update_mask.paths))
        # containerd 2.3.7 dereferences the target whatever the mask: without one it crashes (nil pointer in
        # images.imageFromProto), the whole daemon with it.
        assert request.image.HasField("target")
        return images_pb2.UpdateImageResponse(image=request.image)

    target = Descriptor(media_type="m", digest="sha256:aa", size=3)
    methods = {"Update": unary(update, images_pb2.UpdateImageRequest, images_pb2.UpdateImageResponse)}
    async with serve(sock, "containerd.services.images.v1.Images", methods), ContainerdClient(str(sock)) as c:
        record = await c.update_image("img", labels={"a": "1"})
        assert record.labels == {"a": "1"}
        assert (await c.update_image("img", target=target)).target == target
        await c.update_image("img", labels={"a": "1"}, target=target)
        await c.update_image("img", labels={"b": "2"}, fieldpaths=["labels.b"])
    assert masks == [["labels"], ["target"], ["target", "labels"], ["labels.b"]]


async def test_cri_configs_and_conversions(sock: Path) -> None:
    seen: dict[str, Any] = {}

    async def run(request: Any, context: Any) -> Any:
        seen["run"] = request
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id="pod-1")

    async def create(request: Any, context: Any) -> Any:
        seen["create"] = request
        return api_pb2.CreateContainerResponse(container_id="ctr-1")

    async def list_containers(request: Any, context: Any) -> Any:
        seen["list"] = request
        return api_pb2.ListContainersResponse(
            containers=[
                api_pb2.Container(
                    id="ctr-1",
                    pod_sandbox_id="pod-1",
                    metadata=api_pb2.ContainerMetadata(name="app", attempt=2),
                    image=api_pb2.ImageSpec(image="sha256:img"),
                    image_ref="sha256:img",
                    state=api_pb2.CONTAINER_EXITED,
                    created_at=1_700_000_000_123_456_789,
                    labels={"l": "1"},
                )
            ]
        )

    async def status(request: Any, context: Any) -> Any:
        return api_pb2.ContainerStatusResponse(
            status=api_pb2.ContainerStatus(id=request.container_id, state=api_pb2.CONTAINER_CREATED, created_at=5)
        )

    methods = {
        "RunPodSandbox": unary(run, api_pb2.RunPodSandboxRequest, api_pb2.RunPodSandboxResponse),
        "CreateContainer": unary(create, api_pb2.CreateContainerRequest, api_pb2.CreateContainerResponse),
        "ListContainers": unary(list_containers, api_pb2.ListContainersRequest, api_pb2.ListContainersResponse),
        "ContainerStatus": unary(status, api_pb2.ContainerStatusRequest, api_pb2.ContainerStatusResponse),
    }
    sandbox = PodSandboxSpec(name="p", namespace="ns", uid="u", attempt=1, log_directory="/logs", labels={"a": "b"})
    spec = ContainerSpec(
        name="app",
        image="img:v1",
        command=["/bin/sh"],
        args=["-c", "true"],
        log_path="app/0.log",
        envs={"B": "2", "A": "1"},
    )
    async with serve(sock, "runtime.v1.RuntimeService", methods), CriClient(str(sock)) as cri:
        assert await cri.run_pod_sandbox(sandbox, runtime_handler="runc") == "pod-1"
        assert await cri.create_container("pod-1", spec, sandbox) == "ctr-1"
        [listed] = await cri.list_containers(state="EXITED", labels={"l": "1"})
        created = await cri.container_status("ctr-2")

    run_req = seen["run"]
    assert run_req.runtime_handler == "runc"
    assert (run_req.config.metadata.name, run_req.config.metadata.attempt) == ("p", 1)
    assert run_req.config.log_directory == "/logs" and dict(run_req.config.labels) == {"a": "b"}
    ns = run_req.config.linux.security_context.namespace_options
    assert (ns.network, ns.pid, ns.ipc) == (api_pb2.NODE, api_pb2.POD, api_pb2.POD)

    create_req = seen["create"]
    assert create_req.pod_sandbox_id == "pod-1" and create_req.sandbox_config == run_req.config
    config = create_req.config
    assert (config.image.image, list(config.command), list(config.args)) == ("img:v1", ["/bin/sh"], ["-c", "true"])
    assert [(e.key, e.value) for e in config.envs] == [("B", "2"), ("A", "1")]  # order kept
    assert config.log_path == "app/0.log"
    assert config.linux.security_context.namespace_options.network == api_pb2.NODE

    assert seen["list"].filter.state.state == api_pb2.CONTAINER_EXITED
    assert dict(seen["list"].filter.label_selector) == {"l": "1"}
    assert (listed.name, listed.attempt, listed.state, listed.image) == ("app", 2, "EXITED", "sha256:img")
    assert listed.created_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert (created.state, created.started_at, created.finished_at) == ("CREATED", None, None)


def test_records_hash_without_their_mappings() -> None:
    a = CriImage(id="sha256:1", repo_tags=("a:1",), repo_digests=(), size=1)
    assert len({a, CriImage(id="sha256:1", repo_tags=("a:1",), repo_digests=(), size=1)}) == 1
    d1 = Descriptor(media_type="m", digest="sha256:1", size=1, annotations={"x": "1"})
    d2 = Descriptor(media_type="m", digest="sha256:1", size=1, annotations={"x": "2"})
    assert d1 != d2 and hash(d1) == hash(d2)
