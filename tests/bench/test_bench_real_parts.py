"""The pure parts of the real-bed benchmarks: reading the kubelet's image GC log lines, the remediation monitor's
timings, the compressible layers the precision bench builds."""

from __future__ import annotations

import gzip

from bench.bench_precision_real import OVER_HIGH, REMOVING
from bench.bench_remediation import Monitor
from bench.realbed import text_layer

# Two lines as kubelet v1.32.4 writes them at --v=2 (copied from a bed's kubelet.log).
LOG = (
    'I1201 09:35:08.626271     594 image_gc_manager.go:383] "Disk usage on image filesystem is over the high '
    'threshold, trying to free bytes down to the low threshold" usage=91 highThreshold=85 amountToFree=102180864 '
    "lowThreshold=70\n"
    'I1201 09:35:08.626314     594 image_gc_manager.go:487] "Removing image to free bytes" '
    'imageID="sha256:84d608bc6bb4d5e2b38a8793b35f589885532d0768c0470a44507931ddb7d16c" size=13959194 '
    'runtimeHandler=""\n'
)


def test_the_kubelets_gc_lines_give_the_amount_and_each_removed_image() -> None:
    over = OVER_HIGH.search(LOG)
    assert over is not None and int(over[1]) == 102180864
    assert [(m[1][:15], int(m[2])) for m in REMOVING.finditer(LOG)] == [("sha256:84d608bc", 13959194)]


def test_monitor_timings_from_samples() -> None:
    m = Monitor.__new__(Monitor)  # no thread, no kube: only the samples
    m.disk = [(0.0, 0, 60.0), (1.0, 0, 80.0), (2.0, 0, 86.0), (3.0, 0, 90.0), (4.0, 0, 70.0), (5.0, 0, 59.0)]
    m.pressure = [(0.0, False), (2.5, True), (3.5, True), (6.5, False)]
    crossed = m.first(lambda p: p > 85)
    assert crossed == 2.0 and m.first(lambda p: p < 85, crossed) == 4.0
    assert m.first(lambda p: p > 95) is None and m.first(lambda p: p < 85, None) is None
    assert m.since(1.0, 5.0) == 4.0 and m.since(None, 5.0) is None
    assert m.pressure_true() == (2.5, 4.0)


def test_text_layers_compress_like_real_ones() -> None:
    layer = text_layer(1 << 20, "t")
    assert len(gzip.decompress(layer.blob)) == len(layer.tar)
    assert 0.45 < len(layer.blob) / len(layer.tar) < 0.65
