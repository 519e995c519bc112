"""Fixtures of the install tests: the image (hack/build-image.py, built once and cached), the control plane and
real nodes (kubelet + kube-scheduler)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testbed.kube import REPO
from testbed.kube import kube as kube
from testbed.node import kube_node as kube_node
from testbed.node import kube_scheduler as kube_scheduler

BUILD_IMAGE = REPO / "hack" / "build-image.py"


@pytest.fixture(scope="session")
def image() -> dict[str, str]:
    """{"archive", "name", "id", "size"} of the node-janitor image, built once (cached across sessions by the
    hash of its inputs; about 100 s when it is not)."""
    result = subprocess.run([sys.executable, str(BUILD_IMAGE)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    info: dict[str, str] = json.loads(result.stdout)
    return info
