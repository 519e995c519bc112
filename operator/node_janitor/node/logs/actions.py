"""The vocabulary of log management: what a plan asks for (`LogAction`, with its `LogReason`), what applying
it did (`LogActionResult`), and the validated settings the planning functions use (`LogSettings`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from node_janitor.api.policy import ExtraLogPath, LogsPolicy
from node_janitor.node.inventory import LogFileEntry
from node_janitor.node.outcome import Outcome

SETTLE = timedelta(seconds=2)
"""A rotated file untouched for this long is complete: the runtime's old writer has flushed and closed it."""
LEFTOVER_GRACE = timedelta(minutes=1)
"""A `.tmp` file older than this is no compression in progress but the leftover of one that died."""
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class LogActionKind(StrEnum):
    ROTATE = "rotate-log"  # rename + ReopenContainerLog (+ remove the rotated file when `discard`)
    COMPRESS = "compress-log"
    REMOVE = "remove-log"
    REMOVE_POD_DIR = "remove-log-dir"
    REMOVE_NODE_LOG = "remove-node-log"  # a file an extraPaths rule governs


class LogReason(StrEnum):
    MAX_SIZE = "max-size"
    MAX_FILES = "max-files"
    COMPRESS = "compress"
    STALE_TMP = "stale-tmp"
    COMPRESSED_COPY = "compressed-copy"
    ORPHANED_POD = "orphaned-pod"
    NODE_BUDGET = "node-budget"
    LOG_FS_PRESSURE = "log-fs-pressure"
    MAX_AGE = "max-age"
    EXTRA_MAX_SIZE = "extra-max-size"


@dataclass(frozen=True, slots=True)
class LogAction:
    kind: LogActionKind
    path: str
    reason: LogReason
    bytes: int  # what it frees (0 for a plain rotation; unknown in advance for a compression)
    container_id: str = ""  # for rotations: the runtime container writing `path`
    pod: str = ""  # <namespace>/<name>
    container: str = ""
    discard: bool = False  # rotate, then remove the rotated file (budget, pressure, maxFiles 1)
    if_at_least: int = 0  # rotate only if the live file still has this many bytes

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(x for x in (self.pod, self.container) if x)


def freed_by(actions: Iterable[LogAction]) -> int:
    return sum(a.bytes for a in actions)


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The parsed, validated `logs` section of a policy, as the planning functions use it."""

    max_size: int = 10 * 2**20
    max_files: int = 5
    compress: bool = True
    node_budget: int | None = None
    remove_orphaned: bool = True
    orphan_grace: timedelta = timedelta(hours=1)
    extra_paths: tuple[ExtraLogPath, ...] = ()
    settle: timedelta = SETTLE
    leftover_grace: timedelta = LEFTOVER_GRACE

    def __post_init__(self) -> None:
        if self.max_size <= 0:
            raise ValueError(f"maxSize ({self.max_size}) must be greater than 0")
        if self.max_files < 1:
            raise ValueError(f"maxFiles ({self.max_files}) must be at least 1")
        if self.node_budget is not None and self.node_budget < 0:
            raise ValueError(f"nodeBudget ({self.node_budget}) must not be negative")

    @classmethod
    def from_policy(cls, policy: LogsPolicy) -> LogSettings:
        return cls(
            max_size=policy.max_size,
            max_files=policy.max_files,
            compress=policy.compress,
            node_budget=policy.node_budget,
            remove_orphaned=policy.remove_orphaned,
            orphan_grace=policy.orphan_grace_period,
            extra_paths=tuple(policy.extra_paths),
        )


def older_than(moment: datetime | None, now: datetime, age: timedelta) -> bool:
    """`moment` is known and at least `age` before `now`."""
    return moment is not None and now - moment >= age


def file_action(
    kind: LogActionKind,
    f: LogFileEntry,
    reason: LogReason,
    nbytes: int,
    *,
    container_id: str = "",
    discard: bool = False,
    if_at_least: int = 0,
) -> LogAction:
    """The action of `kind` on the log file `f`, with its pod and container named from the entry."""
    return LogAction(
        kind,
        f.path,
        reason,
        nbytes,
        container_id=container_id,
        pod=f"{f.pod_namespace}/{f.pod_name}",
        container=f.container,
        discard=discard,
        if_at_least=if_at_least,
    )


@dataclass(frozen=True, slots=True)
class LogActionResult:
    action: LogAction
    outcome: Outcome
    message: str = ""
    freed: int = 0  # bytes really freed on disk
    rotated_path: str = ""  # for rotations: the file the live log became
    rotated_length: int = 0  # for rotations: its length right after the runtime reopened the log
