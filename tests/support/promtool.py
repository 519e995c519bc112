"""promtool (Prometheus' rule checker and unit-test runner), built by hack/build-promtool.sh from the version
hack/promtool/go.mod pins, cached in ~/.cache/node-janitor/promtool-<version>/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .kube import REPO, cache_dir

BUILD_SCRIPT = REPO / "hack" / "build-promtool.sh"
MODULE = "github.com/prometheus/prometheus"


def promtool_path() -> Path:
    text = (REPO / "hack" / "promtool" / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(MODULE)}\s+(v\S+)", text, re.MULTILINE)
    assert match is not None, f"{MODULE} not found in hack/promtool/go.mod"
    return cache_dir() / f"promtool-{match.group(1)}" / "promtool"


def find_promtool() -> Path:
    """The cached promtool; builds it first if missing (about ten minutes on a cold machine)."""
    path = promtool_path()
    if not path.is_file():
        subprocess.run([str(BUILD_SCRIPT)], check=True)
    assert path.is_file(), f"{path} missing after {BUILD_SCRIPT}"
    return path
