"""File names in a container's log directory, as kubelet's container_log_manager writes and reads them:

* `<attempt>.log`: what the runtime writes for one attempt of a container (CRI's `log_path`);
* `<attempt>.log.<YYYYMMDD-HHMMSS>.<microseconds>`: a rotated file (kubelet's timestamp, in UTC, plus
  microseconds: with checks every 100 ms, second resolution collides, and a rename would overwrite a file);
* `<rotated>.gz`: its gzip copy, written to a `.tmp` file first, then renamed;
* `*.tmp`: what a compression that died left behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

ROTATED_TIME_FORMAT = "%Y%m%d-%H%M%S"  # kubelet's timestampFormat
COMPRESS_SUFFIX = ".gz"
TMP_SUFFIX = ".tmp"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LogFileKind(StrEnum):
    LOG = "log"  # <attempt>.log
    ROTATED = "rotated"  # <attempt>.log.<timestamp>
    COMPRESSED = "compressed"  # <attempt>.log.<timestamp>.gz
    TMP = "tmp"  # *.tmp
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class LogName:
    kind: LogFileKind
    attempt: int = -1
    rotated_at: datetime | None = None


_NAME = re.compile(
    r"^(?P<attempt>\d+)\.log(?:\.(?P<stamp>\d{8}-\d{6})(?:\.(?P<micro>\d{6}))?(?P<gz>\.gz)?)?$", re.ASCII
)


def parse_log_name(name: str) -> LogName:
    """What a file in a container's log directory is, from its name alone."""
    if name.endswith(TMP_SUFFIX):
        return LogName(LogFileKind.TMP)
    m = _NAME.match(name)
    if m is None:
        return LogName(LogFileKind.OTHER)
    attempt = int(m["attempt"])
    if m["stamp"] is None:
        return LogName(LogFileKind.LOG, attempt)
    try:
        rotated_at = datetime.strptime(m["stamp"], ROTATED_TIME_FORMAT).replace(
            microsecond=int(m["micro"] or 0), tzinfo=UTC
        )
    except ValueError:
        return LogName(LogFileKind.OTHER)
    return LogName(LogFileKind.COMPRESSED if m["gz"] else LogFileKind.ROTATED, attempt, rotated_at)


def rotated_name(log_path: str, at: datetime) -> str:
    """`<log_path>.<YYYYMMDD-HHMMSS>.<microseconds>` in UTC: kubelet's name, unique at sub-second rates."""
    at = at.astimezone(UTC)
    return f"{log_path}.{at.strftime(ROTATED_TIME_FORMAT)}.{at.microsecond:06d}"
