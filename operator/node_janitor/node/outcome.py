"""What became of one action, for every executor of the node engine: the image executor (`execute`) and the log
janitor (`logs/`) report in the same terms. Imports nothing of ours."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # not safe any more (e.g. a container started using the image), or already gone elsewhere
    FAILED = "failed"
