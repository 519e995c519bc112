"""The pure parts of bench/bench_precision.py: the kubelet's image GC rule, the store after removals, the passes."""

from __future__ import annotations

import argparse
from datetime import timedelta

from bench.bench_planner import NOW, build_inventory
from bench.bench_precision import remembered_use, run_janitor, run_kubelet
from bench.kubelet_rule import KubeletImage, kubelet_gc_pass, remove_images
from node_janitor.node.plan import FEWEST_IMAGES, LEAST_RECENTLY_USED

H = timedelta(hours=1)
MIN_AGE = timedelta(minutes=2)


def ten_images() -> list[KubeletImage]:
    return [
        KubeletImage("a", 100, NOW - 10 * H),
        KubeletImage("b", 60, NOW - 20 * H, last_used=NOW - 1 * H),
        KubeletImage("c", 80, NOW - 30 * H),
        KubeletImage("d", 500, NOW - 50 * H, in_use=True),
        KubeletImage("e", 500, NOW - 50 * H, pinned=True),
        KubeletImage("f", 500, NOW - timedelta(minutes=1)),  # younger than minAge
        KubeletImage("g", 500, NOW - 50 * H, last_used=NOW),  # used at freeTime
        KubeletImage("h", 10, NOW - 40 * H),
        KubeletImage("i", 50, NOW - 45 * H, last_used=NOW - 5 * H),
        KubeletImage("j", 30, NOW - 45 * H, last_used=NOW - 2 * H),
    ]


def test_kubelet_rule_never_used_first_by_detection_then_lru_until_the_count_reaches_bytes_to_free() -> None:
    # usage 90% >= 85: bytesToFree = 1000 * 25 / 100 - 100 = 150; order h, c, a (zero lastUsed), f skipped...
    p = kubelet_gc_pass(ten_images(), 1000, 100, 85, 75, MIN_AGE, NOW)
    assert (p.triggered, p.usage_percent, p.bytes_to_free) == (True, 90, 150)
    assert p.picks == ("h", "c", "a") and p.counted == 190
    # ...then i, j, b by last use; d, e, f and g never
    p = kubelet_gc_pass(ten_images(), 1000, 0, 85, 10, MIN_AGE, NOW)
    assert p.picks == ("h", "c", "a", "i", "j", "b") and p.counted == 330


def test_kubelet_rule_usage_is_truncated_and_nothing_happens_below_high() -> None:
    assert not kubelet_gc_pass(ten_images(), 1000, 200, 85, 75, MIN_AGE, NOW).triggered
    p = kubelet_gc_pass(ten_images(), 1000, 151, 85, 75, MIN_AGE, NOW)  # 84.9% used counts as 85
    assert p.triggered and p.bytes_to_free == 99 and p.picks == ("h", "c", "a")


def test_removing_one_of_two_images_on_a_shared_base_frees_only_its_own_layer() -> None:
    inv = build_inventory(2, n_bases=1, app_layers=(1, 1), in_use=0)
    blobs = {b.digest: b.size for b in inv.blobs}
    own = blobs["sha256:app0-0"] * 3 + blobs["sha256:cfg0"] + blobs["sha256:man0"]  # blob + 2x snapshot
    after, freed = remove_images(inv, ["sha256:cfg0"], NOW)
    assert freed == own
    assert [i.id for i in after.images] == ["sha256:cfg1"] and "sha256:rt0" in {b.digest for b in after.blobs}
    fs, fs_after = inv.file_system("imagefs"), after.file_system("imagefs")
    assert fs is not None and fs_after is not None and fs_after.used == fs.used - own
    _, all_freed = remove_images(inv, ["sha256:cfg0", "sha256:cfg1"], NOW)
    assert all_freed == fs.used  # nothing else is on the disk


def test_passes_reach_the_low_watermark_and_the_plan_needs_one() -> None:
    args = argparse.Namespace(high=85, low=75, min_age=MIN_AGE, max_passes=50)
    inv = build_inventory(40, n_bases=2, n_os=1, base_mib=(30, 120), app_mib=(1, 15))
    used = remembered_use(inv, 1)
    kubelet = run_kubelet(inv, used, args)
    assert kubelet.final_percent <= 75 and kubelet.passes > 1 and kubelet.counted > kubelet.freed
    lru, fewest = (run_janitor(inv, used, args, selection) for selection in (LEAST_RECENTLY_USED, FEWEST_IMAGES))
    for janitor in (lru, fewest):
        assert janitor.passes == 1 and janitor.final_percent <= 75 and janitor.counted == janitor.freed
    assert fewest.images < lru.images
