"""`run` and `status` on the real apiserver: NodeCleanups written as the operator writes them, and a stand-in
agent that answers a run request as the real one does (status.lastRun.runRequest = the token). The real agent
answers the annotation in tests/agent/test_node_agent.py and tests/e2e/test_helm_e2e.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.api.nodecleanup import RUN_REQUEST_ANNOTATION
from support.agentbed import apply_nodecleanup
from support.kube import ControlPlane
from support.operator import node, patch_status
from support.terminal import Terminal

pytestmark = pytest.mark.kube

POOL = "test.nodejanitor.io/cli-pool"
DEADLINE = 60


class StandInAgent(threading.Thread):
    """Follows the NodeCleanups `names` with a watch and answers each run request once, with `errors` for those
    named in `failing` (a dry run gets a plan)."""

    def __init__(self, kube: ControlPlane, names: list[str], failing: frozenset[str] = frozenset()) -> None:
        super().__init__(daemon=True)
        self.kube, self.names, self.failing = kube, set(names), failing
        self.tokens: dict[str, str] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        from kubernetes import client, watch

        custom = client.CustomObjectsApi(self.kube.api_client)
        listing = custom.list_cluster_custom_object("nodejanitor.io", "v1alpha1", "nodecleanups")
        stream = watch.Watch().stream(
            custom.list_cluster_custom_object, "nodejanitor.io", "v1alpha1", "nodecleanups",
            resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=DEADLINE,
        )  # fmt: skip
        self.ready.set()
        for event in stream:
            meta = event["object"]["metadata"]
            token = (meta.get("annotations") or {}).get(RUN_REQUEST_ANNOTATION)
            if meta["name"] in self.names and token and meta["name"] not in self.tokens:
                self.tokens[meta["name"]] = token
                self.answer(meta["name"], token)
            if set(self.tokens) == self.names:
                return

    def answer(self, name: str, token: str) -> None:
        dry = token.startswith("dry-run:")
        patch_status(self.kube, name, {
            "diskPercent": 61.5,
            "lastRun": {
                "trigger": "request", "startTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "durationSeconds": 1.25, "dryRun": dry, "actions": 2, "plannedBytes": 5 * 2**20,
                "reclaimedBytes": 0 if dry else 5 * 2**20, "runRequest": token,
                "errors": ["remove-image docker.io/library/busy:1: in use"] if name in self.failing else [],
                "plan": [{"kind": "remove-image", "ref": "docker.io/library/old:1", "bytes": 4 * 2**20,
                          "reason": "lru-under-pressure"}] if dry else [],
            },
            "fileSystems": [{"name": "imagefs", "path": "/var/lib/containerd", "sizeBytes": 2**30,
                             "usedBytes": 2**29, "usedPercent": 50.0}],
        })  # fmt: skip


def _cli(kube: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node_janitor", *args, f"--kubeconfig={kube.kubeconfig}"],
        capture_output=True, text=True, timeout=DEADLINE + 30, check=False,
    )  # fmt: skip


def _cleanup(kube: ControlPlane, name: str) -> dict[str, Any]:
    return dict(kube.kubectl_json("get", "nodecleanup", name))


def test_run_dry_run_wait_writes_only_the_annotation(kube: ControlPlane, crds: object) -> None:
    apply_nodecleanup(kube, "cli-run-1", {"images": {"minAge": "1h"}})
    before = _cleanup(kube, "cli-run-1")
    agent = StandInAgent(kube, ["cli-run-1"])
    agent.start()
    assert agent.ready.wait(DEADLINE)
    terminal = Terminal([sys.executable, "-m", "node_janitor", "run", "cli-run-1", "--dry-run", "--wait",
                         "--timeout=60s", f"--kubeconfig={kube.kubeconfig}"], stdin_tty=False)  # fmt: skip
    code, out, shown = terminal.finish()
    agent.join(DEADLINE)
    assert code == 0, shown
    assert "Waiting for the agents' reports" in shown  # the progress, on the terminal's stderr
    assert "dry run (nothing removed) on cli-run-1: trigger request" in out
    assert "docker.io/library/old:1" in out and "lru-under-pressure" in out and "50.0%" in out
    after = _cleanup(kube, "cli-run-1")
    assert after["metadata"]["annotations"][RUN_REQUEST_ANNOTATION] == agent.tokens["cli-run-1"]
    assert agent.tokens["cli-run-1"].startswith("dry-run:")
    # the dry run bumped no generation and touched no spec: neither the operator nor the agent sees a new policy
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"] and "runRequest" not in after["spec"]


def test_run_selector_waits_for_every_node_and_reports_errors(kube: ControlPlane, crds: object) -> None:
    names = ["cli-sel-a", "cli-sel-b"]
    for name in [*names, "cli-sel-none"]:
        node(kube, name, **{POOL: "sel"})
    node(kube, "cli-sel-other", **{POOL: "other"})
    for name in [*names, "cli-sel-other"]:
        apply_nodecleanup(kube, name, {})
    agent = StandInAgent(kube, names, failing=frozenset({"cli-sel-b"}))
    agent.start()
    assert agent.ready.wait(DEADLINE)
    result = _cli(kube, "run", "-l", f"{POOL}=sel", "--wait", "--timeout=60s", "-o", "json")
    agent.join(DEADLINE)
    assert result.returncode == 1, result.stderr  # cli-sel-b's run reported an error
    assert "node-janitor: warning: node cli-sel-none has no NodeCleanup" in result.stderr
    items = {i["node"]: i for i in json.loads(result.stdout)["items"]}
    assert set(items) == set(names)  # not cli-sel-other: its Node does not match
    assert all(i["answered"] and i["status"]["lastRun"]["runRequest"] == agent.tokens[n] for n, i in items.items())
    assert items["cli-sel-b"]["status"]["lastRun"]["errors"] == ["remove-image docker.io/library/busy:1: in use"]
    assert RUN_REQUEST_ANNOTATION not in (_cleanup(kube, "cli-sel-other")["metadata"].get("annotations") or {})

    # the summary tables; -o yaml of the requests without waiting
    agent = StandInAgent(kube, names)
    agent.start()
    assert agent.ready.wait(DEADLINE)
    wide = _cli(kube, "run", "-l", f"{POOL}=sel", "--wait", "--timeout=60s", "-o", "wide")
    agent.join(DEADLINE)
    assert wide.returncode == 0, wide.stderr
    lines = wide.stdout.splitlines()
    assert lines[0].split() == ["NODE", "RUN", "ACTIONS", "PLANNED", "RECLAIMED", "ERRORS", "TRIGGER", "DURATION",
                                "DISK%", "REQUEST"]  # fmt: skip
    assert [line.split()[:2] for line in lines[1:]] == [["cli-sel-a", "run"], ["cli-sel-b", "run"]]
    assert all(line.split()[-2] == "61.5%" for line in lines[1:])
    asked = _cli(kube, "run", "-l", f"{POOL}=sel", "--dry-run", "-o", "yaml")
    assert asked.returncode == 0
    assert [(i["node"], i["dryRun"]) for i in yaml.safe_load(asked.stdout)["items"]] == [
        ("cli-sel-a", True), ("cli-sel-b", True)]  # fmt: skip

    nothing = _cli(kube, "run", "-l", f"{POOL}=nobody")
    assert nothing.returncode == 2 and "no Node matches" in nothing.stderr


def test_run_wait_without_an_agent_times_out_with_exit_1(kube: ControlPlane, crds: object) -> None:
    apply_nodecleanup(kube, "cli-run-silent", {})
    result = _cli(kube, "run", "cli-run-silent", "--wait", "--timeout=2s")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "node-janitor: error: no report from the agent of cli-run-silent within 2s (is it running?)"
    ]


def _status(kube: ControlPlane, name: str, disk: float | None, reclaimable: int | None, ran: timedelta | None,
            errors: int = 0) -> None:  # fmt: skip
    apply_nodecleanup(kube, name, {}, sources=[{"name": "cli-policy", "generation": 1, "priority": 0}])
    status: dict[str, Any] = {"heartbeatTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if disk is not None:
        status["diskPercent"] = disk
    if reclaimable is not None:
        status["reclaimableBytes"] = reclaimable
    if ran is not None:
        started = (datetime.now(UTC) - ran).strftime("%Y-%m-%dT%H:%M:%SZ")
        status["lastRun"] = {"trigger": "schedule", "startTime": started,
                             "errors": [f"error {i}" for i in range(errors)], "reclaimedBytes": 2**20}  # fmt: skip
    patch_status(kube, name, status)


def _rows(out: str, prefix: str = "cli-st-") -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.startswith(prefix)]


def test_status_is_a_fleet_table_sorted_by_disk(kube: ControlPlane, crds: object, tmp_path: Path) -> None:
    _status(kube, "cli-st-full", 93.5, 3 * 2**30, timedelta(minutes=5), errors=2)
    _status(kube, "cli-st-half", 50.0, 2**20, timedelta(hours=3))
    _status(kube, "cli-st-big", 70.25, 5 * 2**30, timedelta(days=2))
    _status(kube, "cli-st-new", None, None, None)  # no report yet: last, whatever the order

    table = _cli(kube, "status")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["NODE", "DISK%", "RECLAIMABLE", "LAST", "RUN", "ERRORS"]
    assert _rows(table.stdout) == [
        ["cli-st-full", "93.5%", "3Gi", "5m", "ago", "2"],
        ["cli-st-big", "70.2%", "5Gi", "2d", "ago", "0"],
        ["cli-st-half", "50.0%", "1Mi", "3h", "ago", "0"],
        ["cli-st-new", "-", "-", "never", "0"],
    ]
    by_reclaimable = _cli(kube, "status", "--sort-by", "reclaimable", "--no-headers")
    assert not by_reclaimable.stdout.startswith("NODE")
    assert [r[0] for r in _rows(by_reclaimable.stdout)] == ["cli-st-big", "cli-st-full", "cli-st-half", "cli-st-new"]
    by_errors = _cli(kube, "status", "--sort-by", "errors")
    assert _rows(by_errors.stdout)[0][0] == "cli-st-full"
    by_run = _cli(kube, "status", "--sort-by", "last-run")
    assert [r[0] for r in _rows(by_run.stdout)] == ["cli-st-full", "cli-st-half", "cli-st-big", "cli-st-new"]

    wide = _cli(kube, "status", "-o", "wide")
    assert wide.stdout.splitlines()[0].split()[6:] == ["TRIGGER", "RECLAIMED", "IMAGES", "READY", "HEARTBEAT",
                                                       "POLICY"]  # fmt: skip
    full = _rows(wide.stdout)[0]
    assert full[0] == "cli-st-full" and full[6:10] == ["schedule", "1Mi", "-", "Unknown"]  # no Ready condition set
    assert full[11:] == ["ago", "cli-policy"]  # heartbeat seconds ago, the winning policy
    doc = json.loads(_cli(kube, "status", "-o", "json").stdout)
    full_json = next(i for i in doc["items"] if i["node"] == "cli-st-full")
    assert (full_json["diskPercent"], full_json["reclaimableBytes"], full_json["errors"]) == (93.5, 3 * 2**30, 2)

    # as a kubectl plugin: kubectl finds kubectl-node_janitor on PATH
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "kubectl-node_janitor"
    plugin.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; from node_janitor.cli import plugin_main; "
                      f"sys.exit(plugin_main())' \"$@\"\n")  # fmt: skip
    plugin.chmod(0o755)
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    via_kubectl = subprocess.run([kubectl, "node-janitor", "status", f"--kubeconfig={kube.kubeconfig}"],
                                 capture_output=True, text=True, timeout=60, env=env, check=False)  # fmt: skip
    assert via_kubectl.returncode == 0, via_kubectl.stderr
    assert [r[0] for r in _rows(via_kubectl.stdout)] == [r[0] for r in _rows(table.stdout)]
