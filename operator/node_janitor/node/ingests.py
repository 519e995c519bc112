"""In-flight pulls: containerd's content ingests (`content.ListStatuses`) and the bytes still to come.

A pull writes each blob into an ingest (`<root>/io.containerd.content.v1.content/ingest/<hash>/data`) before it
commits it. The ingest's `offset` is what is on disk already (`statvfs` counts it), its `total` what the blob will
be (the descriptor's size the puller knows; 0 or less: unknown). So `total - offset` bytes are still to come onto
the image file system: headroom the target must leave before they land (`pending`). Only in-flight ingests count:
one whose last write is older than `STALLED_AFTER` (an interrupted download left it) brings nothing soon.

An unknown total is not zero: it is reported as unknown (`Pending.unknown`), never summed as if nothing came.

What is not counted: the unpacked snapshot a layer becomes after its commit (about as large again, uncompressed,
decided by the snapshotter later); the fill rate (`agent/fillrate.py`) sees that growth as it happens.

The ingests' blobs are protected where they are: an ingest is no blob yet (the planner lists blobs only), and the
lease a pull holds keeps what it committed. `lease_ingests` names the ingests a lease holds, so the planner never
deletes a lease (expired or not) whose ingest is still being written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

INGESTS_RESOURCE = "ingests"
"""containerd's lease resource type of an ingest (its ref is the id)."""
STALLED_AFTER = timedelta(seconds=60)
"""An ingest not written for this long is not in flight (an interrupted pull's leftover, or a stalled one): its
remaining bytes are not expected soon. A pull that resumes writes again and counts again."""


@dataclass(frozen=True, slots=True)
class IngestEntry:
    """One uncommitted write of the content store (`runtime.IngestStatus`, as the engine keeps it)."""

    ref: str
    offset: int  # bytes written so far (on disk)
    total: int  # the size it will have; 0 or less: unknown
    updated_at: datetime | None = None  # its last write

    @property
    def known(self) -> bool:
        return self.total > 0

    @property
    def remaining(self) -> int:
        """Bytes still to come (0 when the total is unknown: see `Pending.unknown`)."""
        return max(0, self.total - self.offset) if self.known else 0

    def in_flight(self, now: datetime) -> bool:
        """Written within `STALLED_AFTER` of `now` (no time known: in flight, the safe side)."""
        return self.updated_at is None or now - self.updated_at <= STALLED_AFTER


@dataclass(frozen=True, slots=True)
class Pending:
    """What in-flight ingests will still add to the image file system."""

    bytes: int = 0
    """The remaining bytes of in-flight ingests whose total is known, summed."""
    unknown: int = 0
    """In-flight ingests whose total is unknown: their remaining bytes are unknown (not zero)."""
    ingests: int = 0
    """In-flight ingests."""
    stalled: int = 0
    """Ingests not written for `STALLED_AFTER`: not counted."""


def pending_bytes(ingests: Iterable[IngestEntry], now: datetime) -> Pending:
    """The bytes still to come of the ingests in flight at `now` (pure)."""
    total = unknown = count = stalled = 0
    for ingest in ingests:
        if not ingest.in_flight(now):
            stalled += 1
            continue
        count += 1
        if ingest.known:
            total += ingest.remaining
        else:
            unknown += 1
    return Pending(total, unknown, count, stalled)


def lease_ingests(resources: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The ingest refs among a lease's resources ((type, id) pairs)."""
    return frozenset(ident for kind, ident in resources if kind == INGESTS_RESOURCE)
