"""Progress on stderr, only when stderr is a terminal (a pipe or a file gets nothing: the output stays the report).

- `RunProgress` (`df`, `prune`): a spinner with the elapsed time while the inventory is taken and the plan made
  (minutes on a node with thousands of images), then a bar while the plan is applied.
- `WaitProgress` (`run --wait`): the agents that answered, of those asked, and the time waited.

Both are transient: the lines are erased when they stop.
"""

from __future__ import annotations

import sys
from typing import Any, Self, TextIO

__all__ = ["RunProgress", "WaitProgress", "on_terminal"]


def on_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Bar:
    def __init__(self, enabled: bool, description: str, total: int | None) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        self._description, self._total = description, total

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(self._description, total=self._total)
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def update(self, **fields: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, **fields)


class RunProgress(_Bar):
    """`with RunProgress(on_terminal()) as progress: engine.run_once(..., on_plan=progress.start,
    on_result=progress.advance)`."""

    def __init__(self, enabled: bool, description: str = "Taking the inventory") -> None:
        super().__init__(enabled, description, None)

    def start(self, plan: Any) -> None:
        """The plan is made: a bar of its actions from now on."""
        if plan.actions:
            self.update(description="Removing", total=len(plan.actions), completed=0)
        else:
            self.update(description="Nothing to remove")

    def advance(self, result: Any) -> None:
        self.update(advance=1, description=f"{result.action.kind} {result.action.id[:19]}")


class WaitProgress(_Bar):
    """The agents' answers to `run --wait`."""

    def __init__(self, enabled: bool, asked: int) -> None:
        super().__init__(enabled, "Waiting for the agents' reports", asked)

    def answered(self, count: int) -> None:
        self.update(completed=count)
