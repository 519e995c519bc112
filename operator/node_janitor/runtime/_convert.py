"""Small conversions shared by the CRI and containerd clients."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimestampLike(Protocol):
    """google.protobuf.Timestamp, as far as we read it."""

    seconds: int
    nanos: int


def from_timestamp(ts: TimestampLike) -> datetime:
    """A protobuf Timestamp -> an aware UTC datetime (microsecond precision)."""
    return EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def from_unix_nanos(nanos: int) -> datetime:
    """CRI's int64 nanoseconds since the epoch -> an aware UTC datetime (microsecond precision)."""
    return EPOCH + timedelta(microseconds=nanos // 1000)


def from_unix_nanos_or_none(nanos: int) -> datetime | None:
    """Like `from_unix_nanos`, with 0 (CRI's "not yet") as None."""
    return from_unix_nanos(nanos) if nanos else None


def to_dict(mapping: Mapping[str, str]) -> dict[str, str]:
    return dict(mapping)
