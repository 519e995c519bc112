"""One lock for a pod log tree, shared by every pass over it and by the fast rotator, in this process and
across processes (the agent's rotator, a `prune` run by hand)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path


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
                fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                yield
                return
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:  # another process's pass or rotator: its step is short
                        await asyncio.sleep(self.poll_interval)
                yield
            finally:
                os.close(fd)  # releases the flock
