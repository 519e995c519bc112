"""The test bed itself: images built here import into a real containerd with the digests we computed."""

from __future__ import annotations

import pytest

from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.devbed.images import chain_ids

pytestmark = pytest.mark.containerd


def test_import_gives_expected_digests_snapshots_and_shared_blobs_once(containerd_bed: ContainerdBed) -> None:
    b = containerd_bed.builder
    base = Layer.random(2 << 20, "shared-base")
    one = b.build("example.com/one:v1", [b.busybox_layer(), base, Layer.random(1 << 20, "one")])
    two = b.build("example.com/two:v1", [b.busybox_layer(), base, Layer.random(1 << 20, "two")])
    before = containerd_bed.usage().used
    containerd_bed.import_images([one, two])

    refs = set(containerd_bed.ctr("images", "ls", "-q").stdout.split())
    assert {"example.com/one:v1", "example.com/two:v1", one.id, two.id} <= refs

    blobs = {line.split()[0] for line in containerd_bed.ctr("content", "ls", "-q").stdout.splitlines()}
    assert set(one.blobs) | set(two.blobs) <= blobs

    snaps = set(containerd_bed.ctr("snapshots", "--snapshotter", "overlayfs", "ls").stdout.split())
    for image in (one, two):
        assert set(chain_ids([layer.diff_id for layer in image.layers])) <= snaps

    # Incompressible layers: the disk grows by at least the unique blob bytes plus their unpacked copies.
    distinct_blobs = set(one.blobs) | set(two.blobs)
    assert len(distinct_blobs) == len(one.blobs) + len(two.blobs) - 2  # busybox and base layers are shared
    grown = containerd_bed.usage().used - before
    assert grown >= 2 * (2 << 20) + 2 * 2 * (1 << 20)


def test_fill_leaves_what_was_asked(small_disk_bed: ContainerdBed) -> None:
    small_disk_bed.fill(leave_available=8 << 20)
    assert abs(small_disk_bed.usage().available - (8 << 20)) < (1 << 20)
    small_disk_bed.drain()
    assert small_disk_bed.usage().available > 100 << 20


def test_fill_to_nothing_leaves_not_one_block(small_disk_bed: ContainerdBed) -> None:
    small_disk_bed.import_images(small_disk_bed.builder.random_images("fill", 3, 10 << 20))
    small_disk_bed.fill(leave_available=0)
    assert small_disk_bed.usage().available == 0
    with pytest.raises(OSError):  # not even a small state file fits (2 KiB were left beside containerd 2.3)
        (small_disk_bed.disk / "state.json").write_bytes(b"{}" * 150)
