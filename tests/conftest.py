"""Shared fixtures. Real parts only: a private containerd per test (starts in well under a second)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed, ImageBuilder
from node_janitor.devbed.registry import Registry

COMPAT_LANE = (
    "node",
    "runtime",
    "cli/test_cli_real.py",
    "agent/test_agent_remediation.py",
    "agent/test_agent_outages.py",
    "agent/test_agent_target.py",
    "agent/test_agent_logs.py",
    "e2e/test_agent_kubelet.py",
    "e2e/test_kubelet_pull.py",
)
"""The tests (paths under tests/) of the compatibility lane (hack/test.sh: env NJ_LANE=compat, on the oldest
Kubernetes and containerd we support): those whose outcome depends on the runtime's or the kubelet's version (the
engine and its logs on a real containerd, the CRI client, the agent end to end on a real containerd and beside a
real kubelet). The operator's and the chart's tests talk to the apiserver alone, and the agent's other tests run its
parts on fakes: they run in the newest lane only (both lanes together must fit CI's 90 minutes, cold)."""


def in_compat_lane(relative: Path) -> bool:
    """Whether the test file `relative` (to tests/) is in the compatibility lane."""
    return any(relative == Path(p) or Path(p) in relative.parents for p in COMPAT_LANE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the compatibility lane (NJ_LANE=compat), only its tests run; the others are deselected."""
    if os.environ.get("NJ_LANE", "") != "compat":
        return
    tests = Path(__file__).resolve().parent
    keep = [in_compat_lane(item.path.resolve().relative_to(tests)) for item in items]
    if not all(keep):
        config.hook.pytest_deselected(items=[item for item, kept in zip(items, keep, strict=True) if not kept])
        items[:] = [item for item, kept in zip(items, keep, strict=True) if kept]


@pytest.fixture(scope="session")
def image_builder() -> ImageBuilder:
    return ImageBuilder()


def _bed(factory: pytest.TempPathFactory, builder: ImageBuilder, disk_size: int) -> Iterator[ContainerdBed]:
    if os.geteuid() != 0:
        pytest.fail("the containerd test bed needs root (loop mounts, runc); run the suite as root")
    base: Path = factory.mktemp("containerd")
    with ContainerdBed(base, disk_size=disk_size, builder=builder) as bed:
        yield bed


@pytest.fixture
def containerd_bed(tmp_path_factory: pytest.TempPathFactory, image_builder: ImageBuilder) -> Iterator[ContainerdBed]:
    """A fresh private containerd on a 512 MiB loop-mounted ext4 disk, torn down after the test."""
    yield from _bed(tmp_path_factory, image_builder, 512 << 20)


@pytest.fixture
def small_disk_bed(tmp_path_factory: pytest.TempPathFactory, image_builder: ImageBuilder) -> Iterator[ContainerdBed]:
    """Like `containerd_bed` but on a 160 MiB disk, for tests where the disk fills up."""
    yield from _bed(tmp_path_factory, image_builder, 160 << 20)


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A private OCI registry (distribution) on 127.0.0.1, plain HTTP, empty; a bed pulls from it after
    `bed.trust_plain_http_registry(registry.host)`."""
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg
