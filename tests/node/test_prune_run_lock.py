"""`prune --state-file DIR/last-used.json` holds DIR/run.lock for its run, the lock the agent's runs hold in its
state directory: a prune by hand never removes images while the node's agent does (and waits for it)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed
from support.kube import REPO

pytestmark = pytest.mark.containerd


def test_prune_waits_for_the_run_lock_an_agent_holds(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    bed = containerd_bed
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    lock = os.open(state_dir / "run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # what an agent's run holds
    command = [sys.executable, "-m", "node_janitor", "prune", "--state-file", str(state_dir / "last-used.json"),
               "--containerd-socket", bed.address, "--containerd-namespace", bed.namespace,
               "--pod-log-dir", str(bed.pod_log_dir)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    prune = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            prune.wait(timeout=5)  # an unlocked prune of this bed takes about a second
        os.close(lock)  # the agent's run ends
        _, err = prune.communicate(timeout=60)
        assert prune.returncode == 0, err.decode(errors="replace")
    finally:
        if prune.poll() is None:
            prune.kill()
            prune.wait()
    # A dry run takes no lock (it removes nothing): it does not wait.
    lock = os.open(state_dir / "run.lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        dry = subprocess.run([*command, "--dry-run"], capture_output=True, env=env, timeout=60, check=False)
        assert dry.returncode == 0, dry.stderr.decode(errors="replace")
    finally:
        os.close(lock)
