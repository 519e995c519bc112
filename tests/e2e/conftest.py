"""Fixtures of the end-to-end journeys (the install, the agent beside a real kubelet): the image
(hack/build-image.py, built once and cached), the control plane, real nodes (kubelet + kube-scheduler) and agents
as subprocesses (`support.agentbed`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.agentbed import agents as agents
from support.agentbed import crds_established as crds_established
from support.agentbed import node_name as node_name
from support.kube import REPO
from support.kube import kube as kube
from support.node import kube_node as kube_node
from support.node import kube_scheduler as kube_scheduler

BUILD_IMAGE = REPO / "hack" / "build-image.py"


@pytest.fixture(scope="session")
def image() -> dict[str, str]:
    """{"archive", "name", "id", "size"} of the node-janitor image, built once (cached across sessions by the
    hash of its inputs; about 100 s when it is not)."""
    result = subprocess.run([sys.executable, str(BUILD_IMAGE)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    info: dict[str, str] = json.loads(result.stdout)
    return info
