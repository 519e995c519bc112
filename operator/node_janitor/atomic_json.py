"""One atomic JSON write for every small state file of ours (the last-use state, the agent's policy and status).

The document goes to a temporary file of a unique name beside the target, created with O_EXCL | O_NOFOLLOW (a name
planted there, a symlink included, is refused, never followed), is fsynced, and renamed over the target: a crash
leaves the old or the new file, never half of one, and two writers never share a temporary file. A target that is
a symlink or not a regular file is left alone (someone else's file, or a mistake): the write is refused. Nothing is
raised: a failure (ENOSPC on a full disk, which is when the node needs us most; EROFS...) comes back as a reason
that the caller turns into its warning, and no temporary file of ours is left behind. Imports nothing of ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, document: Any, *, sort_keys: bool = False) -> str | None:
    """Write `document` as JSON to `path` atomically; None, or why it was not written (one short phrase)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    created = False  # a name planted at `tmp` is not ours to remove
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return "it is not a regular file"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        created = True
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, sort_keys=sort_keys)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return str(exc.strerror or exc)
    return None
