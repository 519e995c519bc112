"""Blob bytes and snapshot bytes in one unit, disk blocks: many small blobs are counted as what they take."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.node.engine import NodeEngine
from node_janitor.runtime import open_runtime

pytestmark = pytest.mark.containerd


async def test_small_blobs_count_whole_blocks(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        await containerd.wait_for_gc()  # what the bed's imports left behind their leases goes first
        before = (await engine.build_disk_report()).rows["content"].size
        used_before = bed.usage().used
        lease = await containerd.create_lease("small-blobs", expire=timedelta(hours=1))
        leased = containerd.with_lease(lease.id)
        for i in range(300):
            await leased.write_content(f"small-{i}", os.urandom(100))
        os.sync()
        grown = bed.usage().used - used_before
        counted = (await engine.build_disk_report()).rows["content"].size - before
        # 300 blobs of 100 bytes take 300 blocks (1.2 MiB), not 30 KB; the file system also grew by the
        # metadata database's pages, hence the slack.
        assert counted == 300 * bed.usage().block_size
        assert abs(grown - counted) <= 0.1 * counted + 256 * 1024, (grown, counted)
