"""The log rotator's supervisor (`agent.rotation`): one rotator per key, restarted with a bounded backoff when it
dies or cannot be built, its failures counted and reported until it has run long enough, stopped on request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from node_janitor.agent.metrics import AgentMetrics
from node_janitor.agent.rotation import RotatorHealth, RotatorSupervisor
from node_janitor.runtime import RuntimeClientError


class FlakyRotator:
    """Dies with an OSError on its first `failures` starts, then runs until stopped."""

    def __init__(self, starts: list[str], failures: int) -> None:
        self.starts, self.failures = starts, failures

    async def run(self, stop: asyncio.Event) -> None:
        self.starts.append("start")
        if len(self.starts) <= self.failures:
            raise OSError(28, "No space left on device")
        await stop.wait()
        self.starts.append("stopped")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _errors(metrics: AgentMetrics) -> float:
    return sum(s.value for m in metrics.registry.collect() for s in m.samples
               if s.name == "node_janitor_errors_total" and s.labels.get("source") == "logrotator")  # fmt: skip


async def _settle() -> None:
    """Lets the rotator task started by the last sync run up to its first wait (or its death)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_dead_log_rotator_is_restarted_with_backoff_counted_and_reported() -> None:
    starts: list[str] = []
    changes: list[bool] = []
    clock, metrics = Clock(), AgentMetrics()
    supervisor = RotatorSupervisor(metrics, lambda: changes.append(True), backoff=(1.0, 2.0), healthy=60.0,
                                   monotonic=clock)  # fmt: skip

    async def build() -> FlakyRotator:
        return FlakyRotator(starts, failures=3)

    key = (1, "logs")
    await supervisor.sync(key, build)  # first start: it dies
    await _settle()
    delays = []
    for t in (0.5, 1.4, 1.5, 2.0, 4.0, 4.5, 6.4, 6.5):
        clock.now = t
        await supervisor.sync(key, build)
        await _settle()
        delays.append((t, len(starts), supervisor.health.failures))
    # Each death is seen by the next sync: at 0.5 (restart after 1 s), at 2.0 (after 2 s), at 4.5 (after 2 s: the
    # cap); no start before its time; the fourth start runs.
    expected = [(0.5, 1, 1), (1.4, 1, 1), (1.5, 2, 1), (2.0, 2, 2), (4.0, 3, 2), (4.5, 3, 3), (6.4, 3, 3), (6.5, 4, 3)]
    assert delays == expected, delays
    assert supervisor.running and _errors(metrics) == 3 and len(changes) == 3
    assert supervisor.failure() == (3, "OSError: [Errno 28] No space left on device")
    clock.now = 6.5 + 59.9
    await supervisor.sync(key, build)
    assert supervisor.failure() is not None  # not long enough yet
    clock.now = 6.5 + 60.0
    await supervisor.sync(key, build)
    assert supervisor.failure() is None and supervisor.health.failures == 0 and len(changes) == 4  # recovered
    await supervisor.sync(None, build)  # stops it
    assert starts[-1] == "stopped" and not supervisor.running and len(starts) == 5


async def test_a_new_key_restarts_the_rotator_and_a_failed_build_is_a_failure() -> None:
    starts: list[str] = []
    clock, metrics = Clock(), AgentMetrics()
    supervisor = RotatorSupervisor(metrics, lambda: None, monotonic=clock)

    async def build() -> FlakyRotator:
        return FlakyRotator(starts, failures=0)

    await supervisor.sync((1, "a"), build)
    await _settle()
    await supervisor.sync((1, "a"), build)  # the same key: left running
    assert starts == ["start"]
    await supervisor.sync((2, "a"), build)  # a new connection: a new rotator
    await _settle()
    assert starts == ["start", "stopped", "start"]

    async def refused() -> FlakyRotator:
        raise RuntimeClientError("containerd: connection refused")

    await supervisor.sync((3, "a"), refused)
    assert supervisor.failure() == (1, "cannot start: RuntimeClientError: containerd: connection refused")
    assert not supervisor.running and _errors(metrics) == 1

    async def gone() -> None:
        return None  # containerd went away meanwhile: nothing starts, nothing failed

    clock.now = 10.0
    build_none: Callable[[], Awaitable[Any]] = gone
    await supervisor.sync((4, "a"), build_none)
    assert not supervisor.running and supervisor.health.failures == 1


def test_the_rotator_backoff_doubles_up_to_its_cap() -> None:
    health = RotatorHealth()
    assert [health.failed("x", 0.0) for _ in range(11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert health.restart_at == 300 and health.failures == 11
