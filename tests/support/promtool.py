"""promtool (Prometheus' rule checker and unit-test runner), built by hack/build-promtool.sh from the version
hack/promtool/go.mod pins, cached in ~/.cache/node-janitor/promtool-<version>/."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .kube import REPO, _module_version, cache_dir

BUILD_SCRIPT = REPO / "hack" / "build-promtool.sh"
MODULE = "github.com/prometheus/prometheus"


def promtool_path() -> Path:
    return cache_dir() / f"promtool-{_module_version('promtool', MODULE)}" / "promtool"


def find_promtool() -> Path:
    """The cached promtool; builds it first if missing (about ten minutes on a cold machine)."""
    path = promtool_path()
    if not path.is_file():
        subprocess.run([str(BUILD_SCRIPT)], check=True)
    assert path.is_file(), f"{path} missing after {BUILD_SCRIPT}"
    return path
