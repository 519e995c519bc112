"""The fast log rotation loop beside the runs: exactly one LogRotator running with the key it was started for
(the containerd connection and the logs policy), restarted with a bounded backoff when it dies or cannot be built,
its failures counted and reported (Degraded=LogRotatorFailed) until it has run ROTATOR_HEALTHY seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from node_janitor.agent.metrics import AgentMetrics
from node_janitor.agent.report import MAX_MESSAGE
from node_janitor.runtime import RuntimeClientError

log = logging.getLogger(__name__)

ROTATOR_BACKOFF = (1.0, 300.0)
"""A dead log rotator is restarted after the first delay, doubled after each failure in a row up to the second."""
ROTATOR_HEALTHY = 60.0
"""A rotator that has run this long has recovered: its failures are forgotten (and the condition clears)."""


class Rotator(Protocol):
    """What the supervisor runs (`node.logs.LogRotator`): until `stop` is set."""

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass
class RotatorHealth:
    """The log rotator's failures in a row (it died, or could not be built) and when it may start again."""

    failures: int = 0
    error: str | None = None
    restart_at: float = 0.0

    def failed(self, error: str, now: float, backoff: tuple[float, float] = ROTATOR_BACKOFF) -> float:
        self.failures += 1
        self.error = error[:MAX_MESSAGE]
        first, cap = backoff
        delay = min(cap, first * 2.0 ** min(self.failures - 1, 30))
        self.restart_at = now + delay
        return delay


@dataclass
class _Running:
    key: tuple[Any, ...]
    stop: asyncio.Event
    task: asyncio.Task[None]
    started: float


class RotatorSupervisor:
    """`sync(key, build)`: the rotator running is the one for `key` (None: none runs). `build()` makes a new one
    (None: containerd is gone meanwhile, nothing starts); `on_change()` is told when the health changed."""

    def __init__(
        self,
        metrics: AgentMetrics,
        on_change: Callable[[], None],
        *,
        backoff: tuple[float, float] = ROTATOR_BACKOFF,
        healthy: float = ROTATOR_HEALTHY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics, self.on_change = metrics, on_change
        self.backoff, self.healthy, self.monotonic = backoff, healthy, monotonic
        self.health = RotatorHealth()
        self._running: _Running | None = None
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._running is not None and not self._running.task.done()

    def failure(self) -> tuple[int, str] | None:
        """The failures in a row and the last error, while it has not recovered."""
        health = self.health
        return (health.failures, health.error) if health.error is not None else None

    async def sync(self, key: tuple[Any, ...] | None, build: Callable[[], Awaitable[Rotator | None]]) -> None:
        async with self._lock:
            now = self.monotonic()
            running = self._running
            if running is not None and running.task.done() and not running.stop.is_set():
                self._running = None
                self._failed(task_error(running.task), now)
            elif running is not None and running.key == key:
                if self.health.failures and now - running.started >= self.healthy:
                    log.info("log rotator recovered after %d failure(s)", self.health.failures)
                    self.health = RotatorHealth()
                    self.on_change()
                return
            if self._running is not None:
                running, self._running = self._running, None
                running.stop.set()
                with contextlib.suppress(Exception):
                    await running.task
            if key is None or now < self.health.restart_at:
                return
            try:
                rotator = await build()
            except (RuntimeClientError, OSError) as exc:
                self._failed(f"cannot start: {type(exc).__name__}: {exc}", now)
                return
            if rotator is not None:
                stop = asyncio.Event()
                self._running = _Running(key, stop, asyncio.create_task(rotator.run(stop)), now)

    def _failed(self, error: str, now: float) -> None:
        """Counted, logged and reported (Degraded), then restarted by a later sync after a bounded backoff."""
        delay = self.health.failed(error, now, self.backoff)
        self.metrics.errors.labels("logrotator").inc()
        log.error("log rotator failed failures=%d restart_in=%.0fs: %s", self.health.failures, delay, error)
        self.on_change()


def task_error(task: asyncio.Task[Any]) -> str:
    """How a task ended: "cancelled", "returned", or its exception."""
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return "returned" if exc is None else f"{type(exc).__name__}: {exc}"
