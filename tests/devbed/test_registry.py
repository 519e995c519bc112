"""The loopback registry: distribution on 127.0.0.1, our push client, and CRI pulling from it over plain HTTP."""

from __future__ import annotations

import pytest

from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.devbed.registry import Registry, repository_of
from node_janitor.runtime import CriClient


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com/team/app:v1", ("team/app", "v1")),
        ("localhost:5000/app", ("app", "latest")),
        ("app:1.2", ("app", "1.2")),
        ("library/app", ("library/app", "latest")),
        ("example.com/app:v1@sha256:" + "1" * 64, ("app", "v1")),
    ],
)
def test_repository_of(name: str, expected: tuple[str, str]) -> None:
    assert repository_of(name) == expected


def test_push_serves_what_was_built(registry: Registry, containerd_bed: ContainerdBed) -> None:
    b = containerd_bed.builder
    assert registry.host.startswith("127.0.0.1:")
    one = b.build("example.com/reg/one:v1", [b.busybox_layer(), Layer.random(1 << 20, "reg-one")])
    two = b.build("example.com/reg/two:v1", [b.busybox_layer(), Layer.random(1 << 20, "reg-two")])
    assert registry.push(one) == f"{registry.host}/reg/one:v1"
    assert registry.push(two, tag="v2") == f"{registry.host}/reg/two:v2"  # the busybox blob is there already
    assert registry.push(one) == f"{registry.host}/reg/one:v1"  # again: nothing new, same digest
    assert registry.manifest_digest("reg/one", "v1") == one.manifest_digest
    assert registry.manifest_digest("reg/two", "v2") == two.manifest_digest
    assert registry.manifest_digest("reg/two", "v1") is None


async def test_cri_pulls_an_index_from_it(registry: Registry, containerd_bed: ContainerdBed) -> None:
    bed, b = containerd_bed, containerd_bed.builder
    amd = b.build("example.com/multi:v1", [b.busybox_layer(), Layer.random(1 << 20, "multi-amd64")])
    arm = b.build(
        "example.com/multi:v1", [Layer.random(1 << 20, "multi-arm64")], architecture="arm64"
    )  # never fetched: this node runs amd64
    index = b.index("example.com/multi:v1", [amd, arm])
    ref = registry.push(index)
    assert registry.manifest_digest("multi", "v1") == index.manifest_digest
    bed.trust_plain_http_registry(registry.host)
    async with CriClient(bed.address) as cri:
        assert await cri.pull_image(ref, deadline=300) == amd.id
        pulled = await cri.image_status(ref)
        assert pulled is not None and pulled.id == amd.id
        assert pulled.repo_digests == (f"{registry.host}/multi@{index.manifest_digest}",)
    blobs = set(bed.ctr("content", "ls", "-q").stdout.split())
    assert set(amd.blobs) <= blobs and arm.layers[0].digest not in blobs
