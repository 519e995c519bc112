"""Cross-process locks of a node's cleanup, flock(2) behind an asyncio lock: one for a pod log tree, shared by every
pass over it and by the fast rotator, in this process and across processes (the agent's rotator, a `prune` run by
hand); one for the runs that remove images, shared by every agent process on the node (a DaemonSet rollout with
surge runs two)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def _flock(fd: int | None, poll_interval: float) -> AsyncIterator[None]:
    """flock(fd) (polled, so the event loop goes on while another process holds it); closes
    `fd` at the end (which releases the flock). Without a descriptor, only this process is kept in order."""
    try:
        if fd is not None:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # another process holds it
                    await asyncio.sleep(poll_interval)
        yield
    finally:
        if fd is not None:
            os.close(fd)


class LogTreeLock:
    """flock(2) on the pod log directory itself (no file of ours in kubelet's tree), behind an asyncio lock.

    Held by each step of a `LogPass` from its snapshot to the last rotation or removal it applies (not its
    compressions: those are safe by themselves, see `compression`), and by each rotator check. So a step never
    plans on a tree the rotator is renaming under it, and two processes never rotate or remove at once. Without
    a directory to lock (none yet, or not a directory), only this process is kept in order.
    """

    def __init__(self, root: Path, *, poll_interval: float = 0.02) -> None:
        self.root = root
        self.poll_interval = poll_interval
        self._local = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._local:
            try:
                fd: int | None = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                fd = None
            async with _flock(fd, self.poll_interval):
                yield


class RunLock:
    """flock(2) on a lock file of ours (`run.lock` in the agent's state directory, which every agent process on
    the node shares), behind an asyncio lock: held by each engine run from its inventory to its last removal, so
    two processes never plan on the same images nor remove at once (the second plans on what the first left).

    A separate lock from the log tree's: a run's log pass takes that one for each of its steps, and the rotators
    must not wait for a whole run. If the file cannot be opened (a read-only or full disk before it was ever
    created), the run goes on, locked in this process only: freeing a full disk comes before ordering runs."""

    def __init__(self, path: Path, *, poll_interval: float = 0.05) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self._local = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._local:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                log.warning("run lock %s unavailable, running unlocked across processes: %s", self.path, exc)
                fd = None
            async with _flock(fd, self.poll_interval):
                yield
