"""Ahead of the fill: each watched file system's short-window growth rate, the image file system's projected time to
the kubelet's eviction threshold, the prediction trigger's hysteresis, and how often the monitor samples. No I/O:
the monitor feeds in the file systems it measured, the bytes pulls in flight still bring (`node.ingests`), the
policy's thresholds and the monotonic clock.

The rate (`FillRate`) is a least-squares slope over the last WINDOW_SECONDS of samples (or over their last
SHORT_WINDOW_SECONDS when that is steeper: the onset of a fill) of the *inflow*: the used
bytes with removals added back. Removals (ours, the kubelet's image GC, a log file deleted) are not negative
inflow: right after a run freed 10% of the disk the pulls go on at the same pace, and a plain slope would say the
disk empties. A removal is a drop while a run of ours goes on, or a drop of DROP_FRACTION of the disk or more from
one sample to the next; smaller drops count (a temporary file written and deleted is no fill: its jitter cancels).

The image file system's level is its projected use (used + what pulls in flight still bring): a pull's bytes count
in the level from when its ingest announces them. They are no inflow, neither when announced nor when they land: an
announcement is a step whose pace nobody knows yet (a 40 MiB pull through a slow link announced in one sample read as
a fill of 47 MB/s, and its run removed every unused image), and its landing is bytes the level already holds. The
rate is what grows unannounced: unpacking, logs, writes, and pulls too quick to be seen in flight.

The trigger (`FillPredictor.due`) fires when the projected use (used + pending) would reach `evictionPercent` in
less than `predictHorizon` plus the time a run takes (the slowest recent run, at least DEFAULT_RUN_SECONDS), and a
run to the low watermark would have something to do (the projected use plus what lands during a run is above
`lowPercent`). Hysteresis: once fired, it fires again only when the rate rises by REARM_RATE_FACTOR or the level by
REARM_POINTS; it is re-armed when the danger is clearly over (the time to the threshold beyond CLEAR_FACTOR times
the horizon, or no fill at all). So a steady fill near the line fires once, a burst that stops fires once, and a
fill that keeps going fires again each REARM_POINTS it climbs (each run has something new to remove).

Sampling (`FillPredictor.interval`): FAST_INTERVAL while a file system is within NEAR_POINTS of its high watermark
(or above it), filling at FAST_RATE or more, or while containerd writes ingests (a pull in flight: the fill that
outruns a 2 s tick; the fill-rate sweep saw a wave go from 52% past 75% between two ticks); the monitor's own
interval otherwise: statvfs and ListStatuses cost microseconds, and the idle agent keeps its 2 s tick
(bench/bench_agent_cost.py).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from node_janitor.api.policy import Thresholds
from node_janitor.node.inventory import FileSystemEntry

WINDOW_SECONDS = 15.0
"""The rate's window: long enough to smooth a pull's layer-by-layer steps, short enough that a fill that stops is
forgotten within it."""
SHORT_WINDOW_SECONDS = 1.0
"""The rate is the steeper of the window's slope and the slope of its last second: a fill that starts is seen within
a second at the fast interval, not after the window has filled with it."""
MIN_SAMPLES = 3
MIN_SPAN_SECONDS = 0.5
"""A rate needs MIN_SAMPLES samples spanning this much time (at the fast interval: within a second)."""
MIN_RATE_FRACTION = 0.0002
"""Below 0.02% of the disk a second (an hour and a half for 100%) the disk is not filling: no forecast."""
FAST_RATE_FRACTION = 0.001
"""At 0.1% of the disk a second or more, the monitor samples fast."""
NEAR_POINTS = 3.0
"""Within this many points of the high watermark (or above it), the monitor samples fast."""
FAST_INTERVAL = 0.25
"""Seconds between samples while near a watermark or filling fast."""
DEFAULT_RUN_SECONDS = 2.0
"""What a run is expected to take before one was measured (and at least)."""
RUN_MEMORY = 5
"""The expected run time is the slowest of the last RUN_MEMORY runs."""
HEADROOM_MARGIN_SECONDS = 2.0
"""A predicted run leaves room for what lands during a run plus this (the monitor's interval): its headroom."""
DROP_FRACTION = 0.005
"""A drop of 0.5% of the disk or more between two samples is a removal, not negative inflow."""
REARM_RATE_FACTOR = 2.0
REARM_POINTS = 2.0
CLEAR_FACTOR = 2.0


class FillRate:
    """One file system's inflow rate: a least-squares slope over the samples of the last `window` seconds."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self.samples: deque[tuple[float, float]] = deque()  # (monotonic time, inflow bytes)
        self._last_used: int | None = None
        self._last_pending = 0
        self._inflow = 0.0

    def add(self, now: float, used: int, capacity: int = 0, *, pending: int = 0, removing: bool = False) -> None:
        """A sample: `used` bytes of `capacity` at monotonic `now`, `pending` bytes announced and still to come;
        `removing`: a run of ours goes on. Announced bytes are no inflow, nor their landing; a removal since the last
        sample is not counted as negative inflow (module docstring)."""
        pending = max(0, pending)
        if self._last_used is not None:
            # what pending lost landed (used grew by as much): only its fall offsets used, never its rise
            delta = used - self._last_used + min(0, pending - self._last_pending)
            if delta < 0 and (removing or -delta >= DROP_FRACTION * capacity):
                delta = 0  # a removal (or a pull given up), not negative inflow
            self._inflow += delta
        self._last_used = used
        self._last_pending = pending
        self.samples.append((now, self._inflow))
        while self.samples and self.samples[0][0] < now - self.window:
            self.samples.popleft()

    def _recent(self, min_samples: int) -> float | None:
        if not self.samples:
            return None
        since = self.samples[-1][0] - SHORT_WINDOW_SECONDS
        return _slope([s for s in self.samples if s[0] >= since], min_samples)

    def steady_rate(self) -> float | None:
        """Bytes a second to extrapolate (what a run leaves room for): the whole window's slope, or the last
        second's when lower (a one-off burst, a large file written at once, is not extrapolated at its peak speed,
        nor after it stopped). None: too few samples."""
        whole, recent = _slope(self.samples, MIN_SAMPLES), self._recent(MIN_SAMPLES)
        return whole if whole is None or recent is None else min(whole, recent)

    def rate(self, min_samples: int = MIN_SAMPLES) -> float | None:
        """Bytes a second: the slope over the window, or over its last SHORT_WINDOW_SECONDS when that is steeper (a
        fill that just started shows there first) or under half of it (the fill stopped: a step in the window is no
        rate). None: too few samples, or too short a span, to say."""
        whole = _slope(self.samples, min_samples)
        recent = self._recent(min_samples)
        if whole is None or recent is None:
            return whole
        return recent if recent < whole / 2 else max(whole, recent)


def _slope(samples: Sequence[tuple[float, float]], min_samples: int) -> float | None:
    """The least-squares slope of (t, v) samples (None: fewer than `min_samples`, or spanning under
    MIN_SPAN_SECONDS)."""
    n = len(samples)
    if n < max(2, min_samples) or samples[-1][0] - samples[0][0] < MIN_SPAN_SECONDS:
        return None
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var <= 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / var


@dataclass(frozen=True)
class Forecast:
    """The image file system's outlook: its projected use (used + what pulls in flight still bring), capacity, the
    eviction threshold in bytes and the inflow rate (bytes a second; 0 when it is not filling)."""

    used: int
    capacity: int
    eviction_bytes: int
    rate: float
    steady_rate: float = 0.0
    """The whole window's rate (`FillRate.steady_rate`): what the headroom extrapolates."""

    @property
    def used_percent(self) -> float:
        return 100.0 * self.used / max(1, self.capacity)

    @property
    def filling(self) -> bool:
        return self.rate >= MIN_RATE_FRACTION * self.capacity

    @property
    def seconds_to_eviction(self) -> float:
        """When the projected use reaches the eviction threshold at this rate (inf: not filling; 0: there)."""
        if self.used >= self.eviction_bytes:
            return 0.0
        if not self.filling:
            return math.inf
        return (self.eviction_bytes - self.used) / self.rate

    def headroom(self, seconds: float) -> int:
        """Bytes expected in `seconds` at the steady rate (the whole window's)."""
        return int(self.steady_rate * seconds) if self.filling else 0


def projected(file_systems: Iterable[FileSystemEntry], pending: int) -> list[FileSystemEntry]:
    """The file systems with the image file system's use projected: `pending` bytes (pulls in flight) counted as
    used already (the watermark trigger treats used + pending as the use)."""
    if pending <= 0:
        return list(file_systems)
    return [
        replace(fs, used=fs.used + pending, available=max(0, fs.available - pending)) if fs.name == "imagefs" else fs
        for fs in file_systems
    ]


@dataclass
class _Fired:
    rate: float
    used_percent: float


@dataclass
class FillPredictor:
    """Every watched file system's rate, the image file system's forecast, and the prediction trigger (module
    docstring). `observe` each monitor tick, `due` whether to queue a predicted run, `note_run` after each run."""

    window: float = WINDOW_SECONDS
    rates: dict[str, FillRate] = field(default_factory=dict)
    forecast: Forecast | None = None
    run_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=RUN_MEMORY))
    fired: _Fired | None = None

    def observe(
        self,
        file_systems: Iterable[FileSystemEntry],
        thresholds: Thresholds,
        now: float,
        pending: int = 0,
        *,
        removing: bool = False,
    ) -> Forecast | None:
        """One tick's samples (`file_systems` as measured, `pending` the bytes in-flight pulls still bring to the
        image file system, `now` monotonic, `removing` while a run of ours goes on). Returns the image file system's
        forecast (None: not measured)."""
        self.forecast = None
        for fs in file_systems:
            rate = self.rates.setdefault(fs.name, FillRate(self.window))
            # The image file system's level is its projected use; announced bytes are in it, not in its rate.
            fs_pending = max(0, pending) if fs.name == "imagefs" else 0
            use = fs.used + fs_pending
            rate.add(now, fs.used, fs.used + fs.available, pending=fs_pending, removing=removing)
            if fs.name == "imagefs":
                capacity = fs.used + fs.available
                self.forecast = Forecast(
                    used=use,
                    capacity=capacity,
                    eviction_bytes=int(capacity * thresholds.eviction_percent / 100),
                    rate=max(0.0, rate.rate() or 0.0),
                    steady_rate=max(0.0, rate.steady_rate() or 0.0),
                )
        return self.forecast

    @property
    def expected_run_seconds(self) -> float:
        return max((DEFAULT_RUN_SECONDS, *self.run_seconds))

    def note_run(self, seconds: float) -> None:
        self.run_seconds.append(max(0.0, seconds))

    def lead_seconds(self, thresholds: Thresholds) -> float:
        """How far ahead a fill counts: the horizon plus a run."""
        return thresholds.predict_horizon.total_seconds() + self.expected_run_seconds

    def headroom(self, thresholds: Thresholds) -> int:
        """Bytes a run should leave room for on the image file system beyond the pulls in flight: what lands while
        it runs (0 with prediction off, or no fill)."""
        if not thresholds.predict or self.forecast is None:
            return 0
        return self.forecast.headroom(self.expected_run_seconds + HEADROOM_MARGIN_SECONDS)

    def due(self, thresholds: Thresholds) -> bool:
        """Whether to queue a predicted run now (and, when so, remember it: the hysteresis)."""
        forecast = self.forecast
        if not thresholds.predict or forecast is None:
            return False
        lead = self.lead_seconds(thresholds)
        eta = forecast.seconds_to_eviction
        if eta >= lead:
            if eta > CLEAR_FACTOR * lead:
                self.fired = None  # the danger is over: the next fill fires again
            return False
        low_bytes = forecast.capacity * thresholds.low_percent / 100
        if forecast.used + self.headroom(thresholds) <= low_bytes:
            return False  # a run to the low watermark would have nothing to do
        fired = self.fired
        if fired is not None:
            faster = forecast.rate >= REARM_RATE_FACTOR * fired.rate and (
                forecast.rate - fired.rate >= MIN_RATE_FRACTION * forecast.capacity
            )
            higher = forecast.used_percent >= fired.used_percent + REARM_POINTS
            if not (faster or higher):
                return False
        self.fired = _Fired(forecast.rate, forecast.used_percent)
        return True

    def interval(
        self, file_systems: Iterable[FileSystemEntry], thresholds: Thresholds, normal: float, pulling: bool = False
    ) -> float:
        """Seconds to the next sample: FAST_INTERVAL near the high watermark, while filling fast, or while a pull
        is in flight (`pulling`: containerd writes ingests)."""
        if pulling:
            return min(normal, FAST_INTERVAL)
        for fs in file_systems:
            if fs.used_percent >= thresholds.high_percent - NEAR_POINTS:
                return min(normal, FAST_INTERVAL)
            rate = self.rates.get(fs.name)
            speed = rate.rate(min_samples=2) if rate is not None else None
            if speed is not None and speed >= FAST_RATE_FRACTION * (fs.used + fs.available):
                return min(normal, FAST_INTERVAL)
        return normal
