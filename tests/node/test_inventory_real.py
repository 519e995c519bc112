"""Taking the inventory on a real containerd: failures of one call, empty namespaces, bad pod log dirs, and the
snapshot-usage cache a loop relies on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from node_janitor.api.policy import PolicyRules
from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.node.collect import CollectOptions, SnapshotUsageCache, collect_inventory
from node_janitor.node.engine import NodeEngine
from node_janitor.runtime import ContainerdClient, RuntimeClientError, SnapshotUsage, open_runtime

pytestmark = pytest.mark.containerd
MiB = 1 << 20


class FailingUsage:
    """The real client, except that Usage of one snapshot fails (the only part not real: containerd cannot be made
    to fail one Usage call on demand). It counts the usage calls in flight."""

    def __init__(self, real: ContainerdClient, bad_key: str, error: BaseException) -> None:
        self.real = real
        self.bad_key = bad_key
        self.error = error
        self.in_flight = 0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def snapshot_usage(self, key: str, snapshotter: str = "overlayfs") -> SnapshotUsage:
        self.calls += 1
        self.in_flight += 1
        try:
            if key == self.bad_key:
                raise self.error
            await asyncio.sleep(0.05)
            return await self.real.snapshot_usage(key, snapshotter)
        finally:
            self.in_flight -= 1


def _import_some(bed: ContainerdBed, n: int) -> list[str]:
    b = bed.builder
    images = [b.build(f"example.com/u{i}:v1", [b.busybox_layer(), Layer.random(64 * 1024, f"u{i}")]) for i in range(n)]
    bed.import_images(images)
    return [i.id for i in images]


async def test_one_failing_usage_call_is_a_warning_and_the_rest_is_measured(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    _import_some(bed, 4)
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        keys = [s.name for s in await containerd.list_snapshots()]
        source = FailingUsage(containerd, keys[0], RuntimeClientError("Usage failed: EIO"))
        options = CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        inventory = await collect_inventory(cri, source, options)  # type: ignore[arg-type]
        assert any("usage of 1 snapshot(s) unknown" in w and "EIO" in w for w in inventory.warnings)
        sizes = {s.key: s.size for s in inventory.snapshots}
        assert sizes[keys[0]] == 0 and all(sizes[k] > 0 for k in keys[1:])


async def test_an_unexpected_failure_leaves_no_sibling_call_running(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    _import_some(bed, 6)
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        keys = [s.name for s in await containerd.list_snapshots()]
        source = FailingUsage(containerd, keys[-1], OSError("boom"))
        options = CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        with pytest.raises(OSError, match="boom"):
            await collect_inventory(cri, source, options)  # type: ignore[arg-type]
        assert source.in_flight == 0  # every sibling was cancelled and awaited before the error surfaced
        calls = source.calls
        await asyncio.sleep(0.2)
        assert source.calls == calls


async def test_an_empty_namespace_and_a_bad_pod_log_dir_are_warnings(
    containerd_bed: ContainerdBed, tmp_path: Path
) -> None:
    bed = containerd_bed
    not_a_dir = tmp_path / "pods"
    not_a_dir.write_text("a file")
    async with open_runtime(bed.address, "nothing-here") as (cri, containerd):
        engine = NodeEngine(cri, containerd, namespace="nothing-here", pod_log_dir=not_a_dir)
        report = await engine.build_disk_report()
        assert any("namespace 'nothing-here' holds no images" in w for w in report.warnings), report.warnings
        assert any(f"pod log directory {not_a_dir} is not a directory" in w for w in report.warnings)
        result = await engine.run_once(PolicyRules())
        assert result.logs is None and not result.errors  # the log rules do not run on a bad directory
        assert any("is not a directory" in w for w in result.warnings)


async def test_a_second_inventory_measures_only_new_snapshots(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    _import_some(bed, 5)
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        source = FailingUsage(containerd, "-", RuntimeClientError("never"))
        cache = SnapshotUsageCache()
        options = CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        first = await collect_inventory(cri, source, options, cache=cache)  # type: ignore[arg-type]
        committed = [s for s in first.snapshots if s.kind == "COMMITTED"]
        assert source.calls == len(first.snapshots) and len(cache.entries) == len(committed) > 5
        await containerd.prepare_snapshot("scratch", committed[0].key)  # an active snapshot: measured each time
        second = await collect_inventory(cri, source, options, cache=cache)  # type: ignore[arg-type]
        assert source.calls == len(first.snapshots) + 1
        assert {s.key: s.size for s in second.snapshots if s.kind == "COMMITTED"} == {s.key: s.size for s in committed}
