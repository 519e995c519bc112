"""The log format of both long-running components (`node-janitor agent`, `node-janitor operator`): one line per
record on stderr, in UTC, either

- `text`: `time=2026-12-03T07:30:00.123Z level=INFO logger=node_janitor.node.execute action kind=remove-image ...`
  (the messages themselves are key=value), or
- `json`: `{"time": "...", "level": "INFO", "logger": "...", "msg": "...", <the record's fields>}`: a record's
  `extra` fields (every deletion carries `kind`, `id`/`path`, `reason`, `bytes`, `outcome`) become keys.

`--log-level` sets the threshold (debug, info, warning, error); kopf's per-object lines stay at warning and above
unless the level is debug."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

# The attributes every LogRecord has; anything else on a record came from `extra=` (or kopf's own extras).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_KOPF_NOISE = ("k8s_skip", "k8s_ref", "settings")  # kopf's own extras: not for the reader


def _stamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's `extra` fields (JSON-able as they are, else as text)."""
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD or key in _KOPF_NOISE or key.startswith("_"):
            continue
        fields[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
    return fields


class TextFormatter(logging.Formatter):
    """`time=... level=... logger=... <message>`; a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"time={_stamp(record.created)} level={record.levelname} logger={record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, the record's `extra` fields, and `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _stamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            document.setdefault(key, value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    """The process's logging: one handler on `stream` (stderr) with the chosen format, at `level`."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    numeric = getattr(logging, level.upper())
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    logging.getLogger("kopf.objects").setLevel(numeric if numeric == logging.DEBUG else max(numeric, logging.WARNING))
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
