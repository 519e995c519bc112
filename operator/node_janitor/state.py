"""What the node remembers across restarts: when each image was last used by a container.

Containers come and go (kubelet removes exited ones), so "least recently used" needs memory. The file is
small JSON, written to a temporary name and renamed; a failed write (a full disk: ENOSPC) is reported and
never stops a cleanup, which is exactly when it matters most.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from pathlib import Path

from node_janitor.inventory import Inventory


def observe_last_used(inventory: Inventory, now: datetime, known: dict[str, datetime]) -> dict[str, datetime]:
    """`known` updated with what the inventory shows: a running container uses its image now; an exited one
    used it until it finished. Images that are gone are forgotten."""
    updated = dict(known)
    for image_id, containers in inventory.image_users.items():
        for c in containers:
            seen = now if c.running else (c.finished_at or c.created_at)
            if seen and (image_id not in updated or updated[image_id] < seen):
                updated[image_id] = seen
    present = {i.id for i in inventory.images}
    return {k: v for k, v in updated.items() if k in present}


class LastUsedStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> tuple[dict[str, datetime], str | None]:
        """The remembered times and a warning if the file could not be read (then nothing is remembered)."""
        if self.path is None or not self.path.exists():
            return {}, None
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {k: datetime.fromisoformat(v) for k, v in raw.get("lastUsed", {}).items()}, None
        except (OSError, ValueError, AttributeError) as exc:
            return {}, f"ignoring unreadable state file {self.path}: {exc}"

    def save(self, last_used: dict[str, datetime]) -> str | None:
        """Write atomically; returns a warning instead of raising when the disk refuses (ENOSPC, EROFS...)."""
        if self.path is None:
            return None
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = {"lastUsed": {k: v.isoformat() for k, v in sorted(last_used.items())}}
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return f"could not save state to {self.path}: {exc.strerror or exc}"
        return None
