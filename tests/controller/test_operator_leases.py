"""An agent that stops renewing its Lease is flagged (AgentsNotReporting) by the real operator, whatever its last
status heartbeat said (issue 21: at most 1 status write per node per 5 minutes, so the Lease is the liveness signal,
and a silent agent must still be flagged within 5 minutes: its Lease's duration, then at most one status resync or
Lease listing, 60 s each)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support.kube import ControlPlane
from support.operator import POOL, apply, cleanups, node, patch_status, policy, running_operator
from support.poll import wait_for

pytestmark = pytest.mark.kube

NAMESPACE = "nj-leases"
FLAGGED_WITHIN = 300.0
"""The issue's bound, as the deadline of the wait (not a speed figure: the Lease below lasts 3 s)."""


def _degraded(kube: ControlPlane, name: str) -> dict[str, Any] | None:
    status = kube.kubectl_json("get", "cleanuppolicy", name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Degraded"), None)


def _lease(kube: ControlPlane, node_name: str, seconds: int) -> None:
    renewed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    metadata = {"name": node_name, "namespace": NAMESPACE, "labels": {"nodejanitor.io/agent-lease": "true"}}
    spec = {"holderIdentity": node_name, "leaseDurationSeconds": seconds, "renewTime": renewed}
    apply(kube, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec})


def test_an_agent_whose_lease_runs_out_is_flagged_though_its_heartbeat_is_recent(
    kube: ControlPlane, crds: object, tmp_path: Path
) -> None:
    kube.kubectl("delete", "cleanuppolicies", "--all", "--wait=true")
    apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    for name in ("lease-1", "lease-2"):
        node(kube, name, **{POOL: "lease"})
    with running_operator(kube, tmp_path / "operator", "--standalone", f"--agent-namespace={NAMESPACE}"):
        policy(kube, "lease", {POOL: "lease"})
        wait_for("NodeCleanups of pool lease", lambda: len(cleanups(kube, "lease-")) == 2)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _lease(kube, "lease-1", 3600)  # alive for the whole test
        _lease(kube, "lease-2", 3)  # renewed once, then its agent stops
        for name in ("lease-1", "lease-2"):
            patch_status(kube, name, {"heartbeatTime": stamp, "diskPercent": 10.0})

        flagged = wait_for(
            "lease-2 flagged silent",
            lambda: (d := _degraded(kube, "lease")) and d["reason"] == "AgentsNotReporting" and d,
            FLAGGED_WITHIN,
        )
        assert flagged["status"] == "True" and "lease-2" in flagged["message"] and "lease-1" not in flagged["message"]
        # its agent comes back (a renewal): no longer flagged
        _lease(kube, "lease-2", 3600)
        wait_for("lease-2 alive again", lambda: (d := _degraded(kube, "lease")) and d["reason"] == "AsExpected",
                 FLAGGED_WITHIN)  # fmt: skip
    kube.kubectl("delete", "cleanuppolicies", "--all", "--wait=true")
