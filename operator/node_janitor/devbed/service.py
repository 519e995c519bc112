"""What every bed process shares: `with` starts it, and stops what did start when the start fails half-way."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Service:
    """A process a test bed runs (containerd, the registry): subclasses define `start` and `stop`; `stop` must
    accept a half-started service."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
