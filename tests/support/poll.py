"""One way for every test to wait for a condition: poll it with a generous deadline, never sleep a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .kube import KubectlError

T = TypeVar("T")

# What a probe may raise while the thing it looks at is not there yet: kubectl or the apiserver refusing (the
# object is not written yet), a file not written or half written, a key or item not present, a check not true yet.
NOT_YET: tuple[type[BaseException], ...] = (KubectlError, OSError, ValueError, LookupError, AssertionError)


class _Deadline:
    """What both pollers share: the deadline, the last value or exception seen, and the failure naming both."""

    def __init__(self, what: str, timeout: float) -> None:
        self.what, self.timeout = what, timeout
        self.at = time.monotonic() + timeout
        self.last: object = None

    def check(self) -> None:
        if time.monotonic() >= self.at:
            last = self.last
            error = AssertionError(f"timed out after {self.timeout:.0f}s waiting for {self.what} (last: {last!r})")
            raise error from last if isinstance(last, BaseException) else None


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    *,
    interval: float = 0.2,
    retry_on: tuple[type[BaseException], ...] = NOT_YET,
) -> T:
    """Poll `probe` until it returns something truthy and return that; an exception in `retry_on` counts as not
    yet. After `timeout` seconds fail naming `what` and the last value or exception seen."""
    deadline = _Deadline(what, timeout)
    while True:
        try:
            value = probe()
        except retry_on as exc:
            deadline.last = exc
        else:
            if value:
                return value
            deadline.last = value
        deadline.check()
        time.sleep(interval)


async def async_wait_for(
    what: str,
    probe: Callable[[], Awaitable[T | None]],
    within: float = 60.0,
    *,
    interval: float = 0.2,
    retry_on: tuple[type[BaseException], ...] = NOT_YET,
) -> T:
    """`wait_for` for an async probe (a runtime client's call), polled on the running event loop; `within`: its
    timeout in seconds."""
    deadline = _Deadline(what, within)
    while True:
        try:
            value = await probe()
        except retry_on as exc:
            deadline.last = exc
        else:
            if value:
                return value
            deadline.last = value
        deadline.check()
        await asyncio.sleep(interval)
