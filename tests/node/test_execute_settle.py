"""What a run freed is read once the file system has it: containerd 2.x may release a removal's space after the
call returned (kubernetes#130663), and a figure read at once says nothing was freed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from node_janitor.node.engine import NodeEngine
from node_janitor.node.last_used import LastUsedStore
from support.enginebed import rules
from support.fakeruntime import IMAGE_FS, T0, FakeDisk, FakeHost, FakeRuntime
from support.logfakes import FakeClock

MiB = 1 << 20


class LateRelease:
    """A disk's share of the store that reaches the file system `reads` statvfs calls after it dropped."""

    def __init__(self, source: Callable[[], int], reads: int) -> None:
        self.source, self.reads = source, reads
        self.shown = source()
        self.waited = 0

    def __call__(self) -> int:
        now = self.source()
        if now >= self.shown or self.waited >= self.reads:
            self.shown, self.waited = now, 0
        else:
            self.waited += 1
        return self.shown


def _engine(tmp_path: Path, runtime: FakeRuntime, host: FakeHost) -> NodeEngine:
    (tmp_path / "pods").mkdir(exist_ok=True)
    return NodeEngine(
        runtime.cri,
        runtime.containerd,
        pod_log_dir=tmp_path / "pods",
        state=LastUsedStore(tmp_path / "state.json"),
        clock=FakeClock(T0.replace(month=6)),
        host=host,
    )


async def test_freed_bytes_are_measured_after_the_runtime_released_them(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    for name in ("a", "b", "c"):
        runtime.add_image(f"example.com/{name}:v1", [("base", 2 * MiB), (name, 8 * MiB)])
    late = LateRelease(runtime.stored_bytes, reads=3)
    host = FakeHost({IMAGE_FS: FakeDisk(40 * MiB, 0, [late])})  # ~28 MiB of 40: 70% used

    spec = {"thresholds": {"highPercent": 60, "lowPercent": 50}, "images": {"minAge": "0s"}}
    report = await _engine(tmp_path, runtime, host).run_once(rules(spec))

    assert report.errors == []
    execution = report.execution
    assert execution is not None and execution.planned_bytes > 0
    # What the removals freed reached the disk three reads late; the figure is the one after that (it was 0).
    assert execution.reclaimed_bytes == execution.done_bytes


async def test_a_release_smaller_than_planned_ends_the_wait_when_the_disk_stops_dropping(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    for name in ("a", "b"):
        runtime.add_image(f"example.com/{name}:v1", [(name, 8 * MiB)])
    disk = FakeDisk(24 * MiB, 0, [runtime.stored_bytes])
    host = FakeHost({IMAGE_FS: disk})
    engine = _engine(tmp_path, runtime, host)
    spec = {"thresholds": {"highPercent": 50, "lowPercent": 40}, "images": {"minAge": "0s"}}

    # Something else writes 1 MiB on the disk right after each removal: the disk never gains all it was to.
    def grow(call: str) -> None:
        if call.startswith("RemoveImage"):
            disk.base += MiB

    runtime.before_call = grow
    report = await engine.run_once(rules(spec))
    execution = report.execution
    assert execution is not None and execution.done_bytes > 0
    assert 0 < execution.reclaimed_bytes < execution.done_bytes  # read after a bounded wait, not forever


async def test_a_run_asked_to_stop_does_not_wait_for_the_release(tmp_path: Path) -> None:
    """SIGTERM finishes the removal in flight and exits within seconds: the settle wait is not one of them."""
    runtime = FakeRuntime()
    for name in ("a", "b"):
        runtime.add_image(f"example.com/{name}:v1", [(name, 8 * MiB)])
    never = LateRelease(runtime.stored_bytes, reads=10**9)  # the release never reaches the disk
    reads_before = []

    def counting() -> int:
        reads_before.append(1)
        return never()

    host = FakeHost({IMAGE_FS: FakeDisk(24 * MiB, 0, [counting])})
    engine = _engine(tmp_path, runtime, host)
    spec = {"thresholds": {"highPercent": 50, "lowPercent": 40}, "images": {"minAge": "0s"}}
    removed: list[str] = []
    runtime.before_call = lambda call: removed.append(call) if call.startswith("RemoveImage") else None

    reads_at_plan = []
    report = await engine.run_once(
        rules(spec),
        on_plan=lambda plan: reads_at_plan.append(len(reads_before)),
        should_stop=lambda: bool(removed),
    )

    execution = report.execution
    assert execution is not None and len(removed) == 1
    # After planning: the executor's figure before, its one figure after, the report's; no settle loop, which
    # reads every 0.2 s until the disk stops dropping for 1 s (8 reads here before the fix).
    assert len(reads_before) - reads_at_plan[0] <= 3
