"""What the agent keeps in its state directory across restarts and outages.

- `policy.json`: the last NodeCleanup spec it saw (and its generation), applied while the apiserver does not
  answer; without it, or when that spec was unreadable, nothing is removed (`agent.policy`).
- `status.json`: the last status it reported or meant to report (a run finished while the apiserver was away is
  sent when it is back, also by the next agent after a restart).
- `last-used.json`: when each image was last used (`state.LastUsedStore`, the same file `prune --state-file` keeps).
- `run.lock`: flock(2)ed by each engine run (`logs.RunLock`): the agents of one node (a rollout with surge runs two,
  both with this directory) never run at once.

Every write goes through `node_janitor.atomic_json`: a unique temporary name beside the file (O_EXCL, O_NOFOLLOW),
fsynced and renamed over it; a crash leaves the old or the new file, never half of one; a symlink or anything but a
regular file at the path is left alone (the write is refused). A failed write (ENOSPC on a full disk, which is
when the agent works hardest) is a warning, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from node_janitor.atomic_json import write_json_atomically

log = logging.getLogger(__name__)


def write_atomically(path: Path, document: Any) -> str | None:
    """Write `document` as JSON to `path` atomically (`node_janitor.atomic_json`); a warning instead of raising."""
    if (reason := write_json_atomically(path, document, sort_keys=True)) is not None:
        return f"could not write {path}: {reason}"
    return None


def read_json(path: Path) -> tuple[Any, str | None]:
    """The JSON in `path` (None if absent) and a warning when it is unreadable (then None too)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"ignoring unreadable {path}: {exc}"


class AgentStore:
    """The state directory's files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.policy_path = directory / "policy.json"
        self.status_path = directory / "status.json"
        self.last_used_path = directory / "last-used.json"
        self.run_lock_path = directory / "run.lock"

    def _load(self, path: Path) -> dict[str, Any] | None:
        document, warning = read_json(path)
        if warning:
            log.warning("%s", warning)
        return document if isinstance(document, dict) else None

    def _save(self, path: Path, document: dict[str, Any]) -> None:
        if (warning := write_atomically(path, document)) is not None:
            log.warning("%s", warning)

    def load_policy(self) -> dict[str, Any] | None:
        """{"spec": <NodeCleanup spec>, "generation": N} as saved (with "error" when the agent could not read
        that spec), or None."""
        return self._load(self.policy_path)

    def save_policy(self, spec: Any, generation: int | None, *, error: str | None = None) -> None:
        document = {"spec": spec, "generation": generation}
        if error is not None:
            document["error"] = error
        self._save(self.policy_path, document)

    def forget_policy(self) -> None:
        with contextlib.suppress(OSError):
            self.policy_path.unlink()

    def load_status(self) -> dict[str, Any] | None:
        return self._load(self.status_path)

    def save_status(self, status: dict[str, Any]) -> None:
        self._save(self.status_path, status)
