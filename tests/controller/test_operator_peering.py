"""Two operator replicas with kopf peering against the real apiserver: the second waits while the first lives,
and takes over when it stops. (kopf's peering CRD is applied here, as the chart ships it.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.kube import ControlPlane
from support.operator import START_DEADLINE, Operator, cleanups, node, policy
from support.poll import wait_for

pytestmark = pytest.mark.kube

PEERING = "nj-test-peering"
PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
    "spec": {"group": "kopf.dev", "scope": "Cluster",
             "names": {"kind": "ClusterKopfPeering", "plural": "clusterkopfpeerings", "singular": "clusterkopfpeering"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {
                     "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                     "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]},
}  # fmt: skip


@pytest.fixture
def peering(kube: ControlPlane, crds: object) -> Iterator[str]:
    kube.kubectl("apply", "-f", "-", input=json.dumps(PEERING_CRD))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/clusterkopfpeerings.kopf.dev")
    kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                                                       "metadata": {"name": PEERING}}))  # fmt: skip
    yield PEERING
    kube.kubectl("delete", "clusterkopfpeering", PEERING, "--ignore-not-found")


def test_a_second_replica_waits_and_takes_over(kube: ControlPlane, peering: str, tmp_path: Path) -> None:
    first = Operator(kube, tmp_path / "first", "--peering", peering)
    second: Operator | None = None
    try:
        wait_for("the first replica", lambda: first.get("/readyz")[0] == 200, START_DEADLINE)
        node(kube, "peer-1", **{"test.nodejanitor.io/pool": "peer"})
        policy(kube, "peer", {"test.nodejanitor.io/pool": "peer"})
        wait_for("the first replica's NodeCleanup", lambda: "peer-1" in cleanups(kube, "peer-"))

        second = Operator(kube, tmp_path / "second", "--peering", peering)
        # both replicas keep their records in the peering object; the younger one (lower priority) stays paused
        wait_for(
            "two peers", lambda: len(kube.kubectl_json("get", "clusterkopfpeering", peering).get("status") or {}) == 2
        )
        wait_for("the second replica started", lambda: second.get("/readyz")[0] == 200, START_DEADLINE)
        node(kube, "peer-2", **{"test.nodejanitor.io/pool": "peer"})
        wait_for("the first replica handling peer-2", lambda: "peer-2" in cleanups(kube, "peer-"))
        assert second.metric("node_janitor_operator_synced") == 0  # it has handled nothing
        assert second.get("/readyz")[0] == 200  # a waiting replica is ready to take over

        first.stop()
        assert first.process.returncode == 0  # SIGTERM: a clean exit, its peer record removed
        wait_for("the second replica resuming", lambda: "Resuming operations" in second.log_text(), 60)
        node(kube, "peer-3", **{"test.nodejanitor.io/pool": "peer"})
        wait_for("the second replica handling peer-3", lambda: "peer-3" in cleanups(kube, "peer-"))
        assert second.metric("node_janitor_operator_synced") == 1
    except BaseException:
        print("first:", first.log_tail(), "second:", second.log_tail() if second else "", sep="\n")
        raise
    finally:
        first.stop()
        if second is not None:
            second.stop()
