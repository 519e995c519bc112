"""The fill rate and the prediction trigger (`agent.fillrate`, `Triggers.check`), on a fake monotonic clock: the
least-squares inflow rate, the projected time to the eviction threshold, the hysteresis (a steady fill near the line
fires once, a burst that stops fires once, a fill that keeps climbing fires again), the policy switch, the bytes of
pulls in flight counted as used, and the monitor's sampling interval."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node_janitor.agent.backoff import TargetBackoff
from node_janitor.agent.fillrate import (
    FAST_INTERVAL,
    REARM_POINTS,
    FillPredictor,
    FillRate,
    Forecast,
    projected,
)
from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.store import AgentStore
from node_janitor.agent.triggers import PendingRun, RunQueue, Triggers
from node_janitor.api.policy import Thresholds
from node_janitor.node.inventory import FileSystemEntry

SIZE = 10_000 * 4096  # about 40 MB: 1% is 409,600 bytes
ONE_PERCENT = SIZE // 100
TICK = 0.25


def _fs(used: float, name: str = "imagefs") -> FileSystemEntry:
    n = int(used)
    return FileSystemEntry(name, "/x", SIZE, n, SIZE - n)


def _policy(tmp_path: Path, thresholds: dict[str, Any] | None = None) -> PolicyHolder:
    holder = PolicyHolder("n", AgentStore(tmp_path / "state"))
    spec = {"nodeName": "n", "policy": {"thresholds": {"highPercent": 75, "lowPercent": 60, **(thresholds or {})}}}
    holder.observe({"metadata": {"name": "n", "generation": 1}, "spec": spec})
    return holder


class Monitor:
    """Triggers fed tick by tick with a disk whose use the test scripts. A queued run is taken at once and, with
    `runs_free`, frees what its target asks (the projected use plus its headroom down to the low watermark) before
    the next tick; without, it frees nothing (nothing removable)."""

    def __init__(self, tmp_path: Path, thresholds: dict[str, Any] | None = None, *, runs_free: bool = True) -> None:
        self.queue = RunQueue()
        self.triggers = Triggers(self.queue, TargetBackoff())
        self.policy = _policy(tmp_path, thresholds)
        self.runs_free = runs_free
        self.now = 1000.0
        self.used = 0.0
        self.runs: list[tuple[PendingRun, float]] = []  # each run and the level (percent) it was queued at

    def tick(self, pending: int = 0) -> None:
        self.triggers.check([_fs(self.used)], self.policy, runtime_up=True, runtime=None, now=self.now, pending=pending)
        if self.queue.pending:
            self.runs.append((self.queue.take_nowait(), self.used / ONE_PERCENT))
            if self.runs_free:
                t = self.policy.applied.thresholds
                target = self.used + pending + self.triggers.fill.headroom(t) - t.low_percent * ONE_PERCENT
                self.used -= max(0.0, min(target, self.used))
            self.queue.done()
        self.now += TICK

    def fill(self, seconds: float, percent_per_second: float, **kw: Any) -> Iterator[None]:
        for _ in range(int(seconds / TICK)):
            self.used += percent_per_second * ONE_PERCENT * TICK
            self.tick(**kw)
            yield

    def run(self, seconds: float, percent_per_second: float, **kw: Any) -> None:
        for _ in self.fill(seconds, percent_per_second, **kw):
            pass

    def triggers_fired(self) -> list[str]:
        return [run.trigger for run, _ in self.runs]

    def predicted(self) -> int:
        return self.triggers_fired().count("prediction")


# ---- the rate ----------------------------------------------------------------------------------------------------


def test_the_rate_is_the_least_squares_slope_of_the_samples() -> None:
    rate = FillRate(window=15.0)
    for i in range(20):
        rate.add(i * 0.5, 1_000_000 + 40_000 * i + (3_000 if i % 2 else -3_000))  # 80 kB/s with jitter
    assert rate.rate() == pytest.approx(80_000, rel=0.05)


def test_removals_are_not_negative_inflow() -> None:
    """A run freed 30% in the middle of a steady fill: the rate is still the fill's."""
    rate = FillRate(window=15.0)
    used = 50 * ONE_PERCENT
    for i in range(40):
        used += ONE_PERCENT // 4  # 1%/s at 4 samples a second
        if i == 20:
            used -= 30 * ONE_PERCENT
        rate.add(i * 0.25, used)
    assert rate.rate() == pytest.approx(ONE_PERCENT, rel=0.05)  # (the sample of the removal adds nothing)


def test_too_few_samples_say_nothing_and_old_ones_leave_the_window() -> None:
    rate = FillRate(window=5.0)
    rate.add(0.0, 0)
    rate.add(0.25, 10_000)
    assert rate.rate() is None  # two samples a quarter second apart: not a rate yet
    for i in range(2, 60):
        rate.add(i * 0.25, 10_000 if i < 30 else 10_000 + (i - 30) * 1000)
    assert rate.samples[0][0] >= 59 * 0.25 - 5.0
    assert rate.rate() == pytest.approx(4000, rel=0.01)  # only the last 5 s: 1000 bytes per quarter second


def test_the_time_to_the_threshold_is_what_is_left_over_the_rate() -> None:
    forecast = Forecast(used=70 * ONE_PERCENT, capacity=SIZE, eviction_bytes=85 * ONE_PERCENT, rate=ONE_PERCENT)
    assert forecast.seconds_to_eviction == pytest.approx(15.0)
    assert Forecast(used=10, capacity=SIZE, eviction_bytes=85 * ONE_PERCENT, rate=1).seconds_to_eviction == math.inf
    assert (
        Forecast(used=90 * ONE_PERCENT, capacity=SIZE, eviction_bytes=85 * ONE_PERCENT, rate=0).seconds_to_eviction == 0
    )


# ---- the trigger ---------------------------------------------------------------------------------------------------


def test_a_fast_fill_below_the_high_watermark_is_reclaimed_ahead(tmp_path: Path) -> None:
    """2%/s from 50%: evictionPercent 85 is 17 s away, within the 30 s horizon plus a run; a run to the low watermark
    has something to do once the projected use plus what lands during a run (8%) is above 60%. The runs keep the disk
    below the high watermark (75): the watermark never fires, and the first run came at about 52%."""
    monitor = Monitor(tmp_path)
    monitor.used = 50 * ONE_PERCENT
    monitor.run(20.0, 2.0)
    first, level = monitor.runs[0]
    assert first.trigger == "prediction" and first.to_low and 51 < level < 54
    assert "watermark" not in monitor.triggers_fired()
    assert max(level for _, level in monitor.runs) < 75
    assert monitor.predicted() <= 20  # about one a second at this pace: each run has new bytes to remove


def test_prediction_off_is_todays_behaviour(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, {"predict": False})
    monitor.used = 50 * ONE_PERCENT
    monitor.run(20.0, 2.0)
    assert set(monitor.triggers_fired()) == {"watermark"}
    assert all(level > 75 for _, level in monitor.runs)
    assert monitor.triggers.fill.headroom(monitor.policy.applied.thresholds) == 0


def test_a_slow_fill_far_from_the_threshold_is_left_alone(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path)
    monitor.used = 40 * ONE_PERCENT
    monitor.run(60.0, 0.25)  # 0.25%/s to 55%: evictionPercent 2 minutes away at least
    assert monitor.runs == []


def test_a_steady_fill_near_the_line_does_not_oscillate(tmp_path: Path) -> None:
    """0.3%/s at 76% projected: evictionPercent about 30 s away, right at the horizon plus a run, with jitter on
    every sample and nothing removable. The trigger fires once, then again only each REARM_POINTS the level climbs:
    never once a tick, nor once a wobble."""
    monitor = Monitor(tmp_path, {"highPercent": 80, "lowPercent": 70}, runs_free=False)
    monitor.used = 76 * ONE_PERCENT
    for i, _ in enumerate(monitor.fill(20.0, 0.3)):  # 6 points in 20 s (80 ticks)
        monitor.used += (1 if i % 2 else -1) * ONE_PERCENT * 0.1
    levels = [level for run, level in monitor.runs if run.trigger == "prediction"]
    assert 1 <= len(levels) <= 1 + 6 / REARM_POINTS
    assert all(b - a >= REARM_POINTS - 0.2 for a, b in itertools.pairwise(levels))


def test_a_burst_that_stops_does_not_trigger_again(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path)
    monitor.used = 50 * ONE_PERCENT
    monitor.run(8.0, 2.0)  # a burst: 16 points in 8 s
    during = monitor.predicted()
    assert during >= 1
    monitor.run(60.0, 0.0)  # then nothing more comes
    assert monitor.predicted() == during
    assert monitor.triggers.fill.fired is None  # and the trigger is armed again for the next fill


def test_a_fill_that_speeds_up_fires_again(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, runs_free=False)
    monitor.used = 70 * ONE_PERCENT  # 0.5%/s: 85% in 30 s
    monitor.run(2.0, 0.5)
    assert monitor.predicted() == 1
    monitor.run(1.0, 0.5)
    assert monitor.predicted() == 1  # the same rate, half a point higher: no
    monitor.run(1.0, 2.0)  # four times faster: yes, as soon as the slope shows it doubled
    assert monitor.predicted() == 2


def test_the_danger_over_re_arms_the_trigger(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, runs_free=False)
    monitor.used = 62 * ONE_PERCENT
    monitor.run(1.5, 1.0)
    assert monitor.predicted() == 1
    monitor.run(30.0, 0.0)  # a quiet half minute: the fill is over
    assert monitor.triggers.fill.fired is None
    monitor.run(2.0, 1.0)  # a new fill, from about the same level: seen within a second or so
    assert monitor.predicted() == 2


def test_pulls_in_flight_count_as_used(tmp_path: Path) -> None:
    """At 70% with 8% still to come: the projected use (78%) is above highPercent 75, a watermark run; the
    prediction counts the 8% too (a slow fill from 78% projected would otherwise look farther)."""
    monitor = Monitor(tmp_path)
    monitor.used = 70 * ONE_PERCENT
    monitor.tick()
    assert monitor.runs == []
    monitor.tick(pending=8 * ONE_PERCENT)
    assert monitor.triggers_fired() == ["watermark"]
    forecast = monitor.triggers.fill.forecast
    assert forecast is not None and forecast.used == 78 * ONE_PERCENT


def test_projected_adds_the_pending_bytes_to_the_image_file_system_only() -> None:
    image, logs = _fs(10), _fs(10, "logs")
    out = projected([image, logs], 5)
    assert (out[0].used, out[0].available) == (15, image.available - 5) and out[1] == logs


def test_the_headroom_is_what_lands_while_a_run_runs(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, runs_free=False)
    monitor.used = 30 * ONE_PERCENT
    monitor.run(5.0, 1.0)
    fill = monitor.triggers.fill
    fill.note_run(4.0)
    thresholds = monitor.policy.applied.thresholds
    assert fill.expected_run_seconds == 4.0
    assert fill.headroom(thresholds) == pytest.approx(ONE_PERCENT * (4.0 + 2.0), rel=0.02)


# ---- sampling ------------------------------------------------------------------------------------------------------


def test_sampling_is_fast_near_the_high_watermark_or_while_filling_fast() -> None:
    thresholds = Thresholds(high_percent=75, low_percent=60)
    fill = FillPredictor()
    assert fill.interval([_fs(50 * ONE_PERCENT)], thresholds, 2.0) == 2.0  # idle
    assert fill.interval([_fs(73 * ONE_PERCENT)], thresholds, 2.0) == FAST_INTERVAL  # near the watermark
    for t in range(3):  # 0.5%/s from 20%, at the idle 2 s tick
        fill.observe([_fs((20 + t) * ONE_PERCENT)], thresholds, t * 2.0)
    assert fill.interval([_fs(22 * ONE_PERCENT)], thresholds, 2.0) == FAST_INTERVAL
    assert fill.interval([_fs(22 * ONE_PERCENT, "logs")], thresholds, 2.0) == 2.0  # the logs' disk is not filling


def test_sampling_is_fast_while_a_pull_is_in_flight() -> None:
    """The fill-rate sweep (bench_fill_rate_kubelet, a 60% wave at 13-16%/s) took the disk from 52% past 75% between
    two 2 s ticks: the prediction never had the samples for a rate. containerd's ingests say a pull is writing
    before the disk shows it: sample fast from the first tick that sees one."""
    thresholds = Thresholds(high_percent=75, low_percent=60)
    fill = FillPredictor()
    idle = [_fs(20 * ONE_PERCENT)]
    assert fill.interval(idle, thresholds, 2.0) == 2.0
    assert fill.interval(idle, thresholds, 2.0, pulling=True) == FAST_INTERVAL
    assert fill.interval(idle, thresholds, 0.1, pulling=True) == 0.1  # never slower than asked


def test_bytes_landing_from_a_pull_already_counted_are_no_growth() -> None:
    """A pull announced 20% (its ingest's total) and writes it over 10 s: the projected use is flat meanwhile, so the
    rate does not count those bytes a second time."""
    thresholds = Thresholds(high_percent=75, low_percent=60)
    fill = FillPredictor()
    for i in range(41):
        landed = min(20 * ONE_PERCENT, i * ONE_PERCENT // 2)  # 2%/s of writes for 10 s
        fill.observe([_fs(50 * ONE_PERCENT + landed)], thresholds, i * 0.25, pending=20 * ONE_PERCENT - landed)
    forecast = fill.forecast
    assert forecast is not None and forecast.used == 70 * ONE_PERCENT and forecast.rate == pytest.approx(0, abs=1)


def test_a_pull_announced_at_once_is_a_level_not_a_rate() -> None:
    """A kubelet pull through a slow link announces its 16% in one sample and writes 0.1%/s of it: the projected use
    has the 16% at once, the rate does not read the step as a fill (the old series said 64%/s right after it, and the
    prediction's run removed every unused image: test_agent_kubelet's pull-then-create window on containerd 1.6)."""
    thresholds = Thresholds(high_percent=75, low_percent=60)
    fill = FillPredictor()
    for i in range(8):
        fill.observe([_fs(40 * ONE_PERCENT)], thresholds, i * 0.25)
    for i in range(8, 16):
        landed = (i - 8) * ONE_PERCENT // 40  # 0.1%/s
        fill.observe([_fs(40 * ONE_PERCENT + landed)], thresholds, i * 0.25, pending=16 * ONE_PERCENT - landed)
        forecast = fill.forecast
        assert forecast is not None and forecast.used == 56 * ONE_PERCENT
        assert forecast.rate == pytest.approx(0, abs=ONE_PERCENT / 100), i
    assert not fill.due(thresholds) and fill.headroom(thresholds) == 0
    # A pull given up: its announced bytes go, with the few that landed; no negative inflow either.
    fill.observe([_fs(40 * ONE_PERCENT)], thresholds, 16 * 0.25)
    assert fill.rates["imagefs"].steady_rate() == pytest.approx(0, abs=ONE_PERCENT / 100)


def test_a_pull_too_quick_to_be_seen_in_flight_is_inflow() -> None:
    thresholds = Thresholds(high_percent=75, low_percent=60)
    fill = FillPredictor()
    for i in range(8):  # 2%/s lands, never announced in a sample
        fill.observe([_fs(40 * ONE_PERCENT + i * ONE_PERCENT // 2)], thresholds, i * 0.25)
    forecast = fill.forecast
    assert forecast is not None and forecast.rate == pytest.approx(2 * ONE_PERCENT, rel=0.01)


def test_a_one_off_burst_is_not_extrapolated_at_its_peak_speed() -> None:
    """A 25% file written in half a second after 10 quiet seconds: the onset shows at once (the trigger's rate), but
    the headroom a run leaves extrapolates the window's rate, not 50% a second (bench_agent_cost's ballast went from
    80% to 53.1% with the peak rate)."""
    thresholds = Thresholds(high_percent=75, low_percent=60)
    fill = FillPredictor()
    for i in range(40):
        fill.observe([_fs(50 * ONE_PERCENT)], thresholds, i * 0.25)
    for i in range(40, 43):
        fill.observe([_fs((50 + 12.5 * (i - 39)) * ONE_PERCENT)], thresholds, i * 0.25)
    forecast = fill.forecast
    assert forecast is not None and forecast.rate > 20 * ONE_PERCENT
    assert fill.headroom(thresholds) < forecast.rate * (fill.expected_run_seconds + 2.0) / 3


def test_a_step_that_stopped_is_no_rate() -> None:
    """16 MiB written at once mid-run (tests/agent/test_agent_target.py's spill), then nothing: a second later the
    rate is the last second's (none), not the window's slope across the step, which kept a run's headroom for 15 s."""
    rate = FillRate(window=15.0)
    for i in range(40):
        rate.add(i * 0.25, 50 * ONE_PERCENT + (10 * ONE_PERCENT if i >= 32 else 0))
    whole = rate.steady_rate()
    assert rate.rate() == pytest.approx(0, abs=1) and whole == pytest.approx(0, abs=1)
