"""When the agent writes its NodeCleanup status (issue 21; pure, the clock passed in).

Every agent used to patch its whole status every 60 s: 5,000 nodes made 83 writes a second to etcd, each an event
the operator decoded. Now a status goes out when something a reader uses changed, as the kubelet posts its
NodeStatus:

- at once when a run ended (lastRun), a condition turned (type, status or reason), or the spec generation applied
  (observedGeneration) moved;
- coalesced, at most one write per `coalesce` seconds, when only what the operator and `node-janitor status` read
  changed: imageRefs (what the operator protects), the image count, a file system's or the disk's use moving to
  another whole percent (space or inodes);
- otherwise a heartbeat every `heartbeat` seconds (300 with a renewed Lease, the agent's liveness signal; the
  measuring interval without one, as before: an operator of an older release reads only heartbeatTime).

Bytes (usage rows, reclaimable) ride along with the next write: they move with every log line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["StatusGate", "significant", "urgent"]


def urgent(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be written at once when it changes."""
    conditions = tuple(
        sorted((c.get("type"), c.get("status"), c.get("reason")) for c in status.get("conditions") or ())
    )
    return conditions, status.get("observedGeneration"), _frozen(status.get("lastRun"))


def significant(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """What is written within the coalescing interval when it changes (besides `urgent`)."""
    file_systems = tuple(
        (fs.get("name"), _whole(fs.get("usedPercent")), _whole(fs.get("inodesUsedPercent")))
        for fs in status.get("fileSystems") or ()
    )
    return (
        tuple(status.get("imageRefs") or ()),
        status.get("imageRefsOmitted"),
        status.get("imageRefsPacked"),
        status.get("imageCount"),
        _whole(status.get("diskPercent")),
        file_systems,
        tuple(sorted((c.get("type"), c.get("message")) for c in status.get("conditions") or ())),
    )


def _whole(value: Any) -> int | None:
    return math.floor(value) if isinstance(value, int | float) else None


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


class StatusGate:
    """Remembers the last status written and answers how long the next one may wait."""

    def __init__(self, coalesce: float, heartbeat: float) -> None:
        self.coalesce, self.heartbeat = coalesce, heartbeat
        self._sent_at: float | None = None
        self._urgent: tuple[Any, ...] | None = None
        self._significant: tuple[Any, ...] | None = None

    def due_in(self, status: Mapping[str, Any], now: float, heartbeat: float | None = None) -> float:
        """Seconds until `status` should be written (0: now)."""
        if self._sent_at is None or urgent(status) != self._urgent:
            return 0.0
        since = now - self._sent_at
        if significant(status) != self._significant:
            return max(0.0, self.coalesce - since)
        return max(0.0, (self.heartbeat if heartbeat is None else heartbeat) - since)

    def sent(self, status: Mapping[str, Any], now: float) -> None:
        self._sent_at, self._urgent, self._significant = now, urgent(status), significant(status)

    def forget(self) -> None:
        """The stored status is not what was sent (the NodeCleanup was made again): the next one goes at once."""
        self._sent_at = self._urgent = self._significant = None
