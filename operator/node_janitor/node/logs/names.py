"""File names in a container's log directory, as kubelet's container_log_manager writes and reads them:

* `<attempt>.log`: what the runtime writes for one attempt of a container (CRI's `log_path`);
* `<attempt>.log.<YYYYMMDD-HHMMSS>.<microseconds>`: a rotated file (kubelet's timestamp, in UTC, plus
  microseconds: with checks every 100 ms, second resolution collides, and a rename would overwrite a file);
* `<rotated>.gz`: its gzip copy, written to a draft `.<rotated>.<unique>.draft` first (O_EXCL), then renamed;
* `.<rotated>.<unique>.draft`, `<rotated>[.<unique>].tmp`: what a compression that died left behind (ours; the
  kubelet's or an older node-janitor's).

A draft's name starts with a dot, so it is outside the kubelet's glob of a container's files (`<attempt>.log*`):
the kubelet's log cleanup removes every `*.tmp` there (`cleanupUnusedLogs`), compresses every other plain file and
counts them all against maxFiles; a draft named `<rotated>.<unique>.tmp` was deleted under a compression running
beside a kubelet that rotates too (issue 18).

Nothing else in the tree is ever touched: names the runtime would never write (`notes.txt`, an attempt beyond
CRI's uint32), and pod directories whose names are not kubelet's (`my_photos_2019`, names that are not UTF-8).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

ROTATED_TIME_FORMAT = "%Y%m%d-%H%M%S"  # kubelet's timestampFormat
COMPRESS_SUFFIX = ".gz"
TMP_SUFFIX = ".tmp"
DRAFT_SUFFIX = ".draft"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # sorts a file without a time first


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
    r"^(?P<attempt>\d{1,10})\.log"
    r"(?:\.(?P<stamp>\d{8}-\d{6})(?:\.(?P<micro>\d{6}))?(?:(?P<gz>\.gz)|(?P<tmp>(?:\.[A-Za-z0-9_-]{1,32})?\.tmp))?)?$",
    re.ASCII,
)
_DRAFT = re.compile(
    r"^\.(?P<attempt>\d{1,10})\.log\.(?P<stamp>\d{8}-\d{6})(?:\.(?P<micro>\d{6}))?\.[A-Za-z0-9_-]{1,32}"
    + re.escape(DRAFT_SUFFIX)
    + "$",
    re.ASCII,
)
MAX_ATTEMPT = 2**32 - 1  # CRI's ContainerMetadata.attempt is a uint32


def parse_log_name(name: str) -> LogName:
    """What a file in a container's log directory is, from its name alone: a name the runtime or a rotation
    (kubelet's or ours) writes, or OTHER (never touched, not counted)."""
    draft = _DRAFT.match(name)
    m = draft or _NAME.match(name)
    if m is None or int(m["attempt"]) > MAX_ATTEMPT:
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
    if draft is not None or m["tmp"]:
        return LogName(LogFileKind.TMP, attempt, rotated_at)
    return LogName(LogFileKind.COMPRESSED if m["gz"] else LogFileKind.ROTATED, attempt, rotated_at)


# kubelet's pod log directory, `<namespace>_<pod name>_<pod UID>`: a namespace is a DNS-1123 label, a pod name a
# DNS-1123 subdomain (neither has an underscore), the UID a UUID (API pods) or 32 hex digits (static pods: the
# hash of their manifest). Container names are DNS-1123 labels.
_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_POD_DIR = re.compile(
    rf"^(?P<namespace>{_LABEL})_(?P<name>{_LABEL}(?:\.{_LABEL})*)_"
    r"(?P<uid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$",
    re.ASCII,
)
_CONTAINER_DIR = re.compile(rf"^{_LABEL}$", re.ASCII)


def parse_pod_dir_name(name: str) -> tuple[str, str, str] | None:
    """(namespace, pod name, UID) if `name` has the shape kubelet gives a pod's log directory, else None."""
    m = _POD_DIR.match(name)
    if m is None or len(m["name"]) > 253:
        return None
    return m["namespace"], m["name"], m["uid"]


def is_container_dir_name(name: str) -> bool:
    return _CONTAINER_DIR.match(name) is not None


def draft_name(rotated_path: str, unique: str) -> str:
    """Where the gzip copy of `rotated_path` is written before it is put in place (see the module docstring)."""
    directory, base = os.path.split(rotated_path)
    return os.path.join(directory, f".{base}.{unique}{DRAFT_SUFFIX}")


def rotated_name(log_path: str, at: datetime) -> str:
    """`<log_path>.<YYYYMMDD-HHMMSS>.<microseconds>` in UTC: kubelet's name, unique at sub-second rates."""
    at = at.astimezone(UTC)
    return f"{log_path}.{at.strftime(ROTATED_TIME_FORMAT)}.{at.microsecond:06d}"
