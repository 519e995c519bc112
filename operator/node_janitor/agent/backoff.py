"""A target that cannot be met is reported, not chased (issue 18): after a run that leaves a file system above its
low watermark with nothing more it may remove, the agent says so once (a condition, a metric, one Event per
episode) and runs again only when something changed. Pure: the agent feeds it file systems, the runtime's
fingerprint, the policy generation and the monotonic clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from node_janitor.node.inventory import FileSystemEntry

USAGE_MOVE = 0.05
"""A file system's used bytes moving by this fraction of its capacity (either way) is a change worth a new run: a
safety net for data the runtime does not list. Small moves are noise (the file system's own metadata moved a
160 MiB test disk by 3 MB, 2%, within seconds) and what a run may remove shows in the runtime's fingerprint."""
FIRST_DELAY = 300.0
MAX_DELAY = 3600.0
"""With nothing else changing, the next try waits FIRST_DELAY, then twice as long each time up to MAX_DELAY: time
alone may make data removable (an image reaching minAge, an exited container its age)."""

RuntimeFingerprint = frozenset[str]
"""What the runtime holds that a run could remove or that protects something: container ids with their states,
image ids (`runtime_fingerprint`). A change is any change of the containers (one removed may leave its image
unused), or an image that arrived."""


def runtime_fingerprint(containers: Iterable[tuple[str, str]], images: Iterable[str]) -> RuntimeFingerprint:
    """(container id, state) pairs and image ids, as one comparable value."""
    return frozenset([*(f"c:{cid}:{state}" for cid, state in containers), *(f"i:{image}" for image in images)])


@dataclass
class Episode:
    """One stretch of runs that could not reach the target."""

    short_bytes: int
    message: str
    policy: object
    used: dict[str, tuple[int, int]]  # file system name -> (used bytes, capacity) right after the last run
    retry_at: float  # monotonic: the time fallback
    delay: float
    runtime: RuntimeFingerprint | None = None  # the runtime right after the last run (set by the monitor)
    runs: int = 1
    released: bool = False  # something changed since the last run: the next trigger may run


@dataclass
class TargetBackoff:
    """The current episode of an unreachable target, if any."""

    episode: Episode | None = None
    history: list[str] = field(default_factory=list)  # why each retry was allowed (for logs and tests)

    @property
    def blocked(self) -> bool:
        """An episode is going on and nothing changed since its last run: no watermark or pressure run."""
        return self.episode is not None and not self.episode.released

    def record(
        self,
        short_bytes: int,
        message: str,
        policy: object,
        file_systems: Iterable[FileSystemEntry],
        now: float,
        eligible_in: float | None = None,
    ) -> bool:
        """The outcome of a real run: `short_bytes` above the low watermark are left (0: reached); `eligible_in`:
        seconds until something the run kept only for its age may go (an image reaching minAge), which brings the
        next try forward. Returns True when this run starts an episode (the one time an Event is posted)."""
        if short_bytes <= 0:
            self.episode = None
            return False
        used = {fs.name: (fs.used, fs.used + fs.available) for fs in file_systems}
        first = self.episode is None
        delay = FIRST_DELAY if self.episode is None else min(MAX_DELAY, self.episode.delay * 2)
        retry_at = now + delay if eligible_in is None else min(now + delay, now + max(0.0, eligible_in))
        runs = 1 if self.episode is None else self.episode.runs + 1
        self.episode = Episode(short_bytes, message, policy, used, retry_at, delay, runs=runs)
        return first

    def note_runtime(self, fingerprint: RuntimeFingerprint) -> None:
        """The runtime as it is after the run (the baseline of `changed`), once per episode run."""
        if self.blocked and self.episode is not None and self.episode.runtime is None:
            self.episode.runtime = fingerprint

    def changed(
        self,
        policy: object,
        file_systems: Iterable[FileSystemEntry],
        fingerprint: RuntimeFingerprint | None,
        now: float,
    ) -> str | None:
        """Why a new run may help now (None: nothing changed, keep waiting; also None without an episode)."""
        e = self.episode
        if e is None:
            return None
        if e.released:
            return None
        why = _why(e, policy, {fs.name: fs for fs in file_systems}, fingerprint, now)
        if why is not None:
            e.released = True  # one more run; it records the episode's next step
            self.history.append(why)
        return why

    def end(self) -> None:
        self.episode = None


def _why(
    e: Episode,
    policy: object,
    file_systems: Mapping[str, FileSystemEntry],
    fingerprint: RuntimeFingerprint | None,
    now: float,
) -> str | None:
    if policy != e.policy:
        return "the policy changed"
    for name, (used, capacity) in e.used.items():
        fs = file_systems.get(name)
        if fs is not None and abs(fs.used - used) > USAGE_MOVE * capacity:
            return f"{name} usage moved by {fs.used - used:+d} bytes"
    if fingerprint is not None and e.runtime is not None:
        if {x for x in fingerprint if x.startswith("c:")} != {x for x in e.runtime if x.startswith("c:")}:
            return "the runtime's containers changed"
        # An image that arrived may be removable; one that went frees nothing more (CRI's image list may still
        # show an image the run removed for a moment after the run: not a change).
        if fingerprint - e.runtime:
            return "an image arrived"
    if now >= e.retry_at:
        return "time passed (an image reached minAge, or the retry delay)"
    return None
