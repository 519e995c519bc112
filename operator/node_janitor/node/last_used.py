"""What the node remembers across restarts: when each image was last used by a container.

Containers come and go (kubelet removes exited ones), so "least recently used" needs memory. The file is
small JSON (`{"kind": "node-janitor-state", "lastUsed": {image ID: RFC 3339 time}}`), written to a temporary
file of a unique name beside it, fsynced and renamed over the old one (`node_janitor.atomic_json`). A failed write (a
full disk: ENOSPC) is reported and never stops a cleanup, which is exactly when it matters most.

Every inventory is remembered (a run's, a dry run's, the agent's heartbeat `df`, on a paused node too): images used
between real runs must not look unused when they come. A time ahead of the inventory's (a clock stepped back, a
container's createdAt from a skewed runtime, a state file written on a clock in the future) is clamped to it:
otherwise that image would look used "in the future" and outlive every other one in least-recently-used order.

A file that is not our state (anything but a JSON object with our `kind`, or with only `lastUsed`, as files of
earlier versions have) is never overwritten: the path was probably a mistake. Entries of the wrong type (a
number, a time without a zone) are dropped with a warning.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from node_janitor.atomic_json import write_json_atomically
from node_janitor.node.inventory import Inventory

STATE_KIND = "node-janitor-state"
MAX_STATE_BYTES = 16 * 2**20  # ~100,000 images' worth; a larger file is not ours


def observe_last_used(inventory: Inventory, now: datetime, known: dict[str, datetime]) -> dict[str, datetime]:
    """`known` updated with what the inventory shows: a running container uses its image now; an exited one
    used it until it finished. Images that are gone are forgotten; a time after `now` is `now`."""
    updated = {k: min(v, now) for k, v in known.items()}
    for image_id, containers in inventory.image_users.items():
        for c in containers:
            seen = now if c.running else (c.finished_at or c.created_at)
            if seen:
                seen = min(seen, now)
                if image_id not in updated or updated[image_id] < seen:
                    updated[image_id] = seen
    present = {i.id for i in inventory.images}
    return {k: v for k, v in updated.items() if k in present}


class ForeignFile(ValueError):
    """The state path holds something that is not node-janitor's state."""


def parse_state(raw: Any) -> tuple[dict[str, datetime], list[str]]:
    """The remembered times in a decoded state document and what was dropped; ForeignFile if it is not ours."""
    if not isinstance(raw, dict) or raw.get("kind", STATE_KIND) != STATE_KIND or not set(raw) <= {"kind", "lastUsed"}:
        raise ForeignFile("it is not a node-janitor state file")
    entries = raw.get("lastUsed", {})
    if not isinstance(entries, dict):
        raise ForeignFile("its lastUsed is not an object")
    known: dict[str, datetime] = {}
    dropped: list[str] = []
    for image_id, value in entries.items():
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            dropped.append(f"{image_id}: {value!r}")
            continue
        known[image_id] = moment
    return known, dropped


class LastUsedStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._foreign: str | None = None  # why the file is not ours: then it is never written

    def load(self) -> tuple[dict[str, datetime], str | None]:
        """The remembered times and a warning if the file could not be read (then nothing is remembered)."""
        self._foreign = None
        if self.path is None:
            return {}, None
        try:
            with open(self.path, "rb") as f:
                text = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            self._foreign = f"cannot be read ({exc.strerror or exc})"
            return {}, f"ignoring state file {self.path}: {self._foreign}; it will not be written"
        if len(text) > MAX_STATE_BYTES:
            self._foreign = f"it is larger than {MAX_STATE_BYTES // 2**20} MiB"
            return {}, f"ignoring state file {self.path}: {self._foreign}; it will not be overwritten"
        try:
            known, dropped = parse_state(json.loads(text.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            self._foreign = str(exc) if isinstance(exc, ForeignFile) else "it is not JSON"
            return {}, f"ignoring state file {self.path}: {self._foreign}; it will not be overwritten"
        if dropped:
            more = f" (and {len(dropped) - 1} more)" if len(dropped) > 1 else ""
            warning = f"state file {self.path}: ignored last-use entries that are not times with a zone: "
            return known, warning + dropped[0] + more
        return known, None

    def save(self, last_used: dict[str, datetime]) -> str | None:
        """Write atomically; returns a warning instead of raising when the disk refuses (ENOSPC, EROFS...) or
        when the file is not ours."""
        if self.path is None:
            return None
        if self._foreign is not None:
            return f"did not save state to {self.path}: {self._foreign}"
        payload = {"kind": STATE_KIND, "lastUsed": {k: v.isoformat() for k, v in sorted(last_used.items())}}
        if (reason := write_json_atomically(self.path, payload)) is not None:
            return f"could not save state to {self.path}: {reason}"
        return None
