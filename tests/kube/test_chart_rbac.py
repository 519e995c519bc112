"""The chart's ServiceAccounts, ClusterRoles and node-bound admission policy against a real apiserver, used
through the ServiceAccounts' own tokens: every request within a component's rights succeeds, requests
beyond them are refused (403), and an agent's token bound to a pod on node A may write NodeCleanup A's
status and no other node's.

Nodes and Pods with spec.nodeName are created through the API: no kubelet runs here, none is needed for
the apiserver to issue a pod-bound token carrying the node's name (authentication.kubernetes.io/node-name).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.kube import REPO, ControlPlane

pytestmark = pytest.mark.kube

CHART = REPO / "charts" / "node-janitor"
RELEASE = NAMESPACE = "nj-rbac"
OPERATOR_SA = f"{RELEASE}-node-janitor-operator"
AGENT_SA = f"{RELEASE}-node-janitor-agent"
NODE_A, NODE_B = "nj-rbac-node-a", "nj-rbac-node-b"
# What the test applies of the chart: its identities and their rights (no workload runs here).
KINDS = {
    "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "ClusterKopfPeering",
}  # fmt: skip


@dataclass(frozen=True)
class Identities:
    operator: Path
    agent_a: Path
    """The agent's token bound to a pod on node A."""
    agent_unbound: Path
    """The agent's ServiceAccount with a token bound to no pod (so to no node)."""


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


def _node_cleanup(node: str) -> dict[str, Any]:
    return {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "NodeCleanup", "metadata": {"name": node},
            "spec": {"nodeName": node}}  # fmt: skip


def _event(name: str, node: str) -> str:
    return _json({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node},
        "reason": "Test", "message": "rbac test", "type": "Normal",
    })  # fmt: skip


@pytest.fixture(scope="module")
def identities(kube: ControlPlane, crds: tuple[str, ...]) -> Iterator[Identities]:
    kube.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/clusterkopfpeerings.kopf.dev")
    out = kube.helm("template", RELEASE, str(CHART), "-n", NAMESPACE, "--set", f"operator.peeringName={RELEASE}").stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d["kind"] in KINDS]
    assert {d["kind"] for d in docs} == KINDS
    manifest = yaml.safe_dump_all(docs)
    nodes = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in (NODE_A, NODE_B)]
    kube.kubectl("create", "namespace", NAMESPACE)
    try:
        kube.kubectl("apply", "-f", "-", input=manifest)
        for obj in [*nodes, _node_cleanup(NODE_A), _node_cleanup(NODE_B)]:
            kube.kubectl("apply", "-f", "-", input=_json(obj))
        pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-a", "namespace": NAMESPACE},
            "spec": {"nodeName": NODE_A, "serviceAccountName": AGENT_SA,
                     "containers": [{"name": "agent", "image": "node-janitor:test"}]},
        }  # fmt: skip
        kube.kubectl("apply", "-f", "-", input=_json(pod))

        def token(sa: str, *bound: str) -> str:
            return kube.kubectl("create", "token", sa, "-n", NAMESPACE, "--duration=1h", *bound).stdout.strip()

        yield Identities(
            operator=kube.token_kubeconfig(token(OPERATOR_SA), "nj-operator"),
            agent_a=kube.token_kubeconfig(
                token(AGENT_SA, "--bound-object-kind=Pod", "--bound-object-name=agent-a"), "nj-agent-a"
            ),
            agent_unbound=kube.token_kubeconfig(token(AGENT_SA), "nj-agent-unbound"),
        )
    finally:
        for node in (NODE_A, NODE_B):
            kube.kubectl("delete", "nodecleanup", node, "node", node, "--ignore-not-found", check=False)
        kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifest, check=False)
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def run(kube: ControlPlane, who: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return kube.kubectl(*args, input=input, kubeconfig=who, check=False)


def allowed(kube: ControlPlane, who: Path, *args: str, input: str | None = None) -> str:
    result = run(kube, who, *args, input=input)
    assert result.returncode == 0, f"refused: kubectl {' '.join(args)}\n{result.stderr}"
    return result.stdout


def forbidden(kube: ControlPlane, who: Path, *args: str, input: str | None = None) -> str:
    result = run(kube, who, *args, input=input)
    assert result.returncode != 0, f"allowed: kubectl {' '.join(args)}\n{result.stdout}"
    assert "Forbidden" in result.stderr or "forbidden" in result.stderr, result.stderr
    return result.stderr


def _status_patch(percent: float) -> list[str]:
    return ["--subresource=status", "--type=merge", "-p", _json({"status": {"diskPercent": percent}})]


def _wait_for_admission_policy(kube: ControlPlane, who: Path) -> None:
    """The admission plugin picks a new policy up from its informer within a second or so: wait until it
    refuses the cross-node write before checking anything."""
    deadline = time.monotonic() + 30
    while run(kube, who, "patch", "nodecleanup", NODE_B, *_status_patch(1.0)).returncode == 0:
        assert time.monotonic() < deadline, "the ValidatingAdmissionPolicy never took effect"
        time.sleep(0.2)
    attempt = 0
    while run(kube, who, "create", "-f", "-", input=_event(f"nj-rbac-probe-{attempt}", NODE_B)).returncode == 0:
        kube.kubectl("delete", "event", "-n", "default", f"nj-rbac-probe-{attempt}")
        assert time.monotonic() < deadline, "the Events ValidatingAdmissionPolicy never took effect"
        attempt += 1
        time.sleep(0.2)


def test_operator_rights(kube: ControlPlane, identities: Identities) -> None:
    op = identities.operator
    for args in (
        ["get", "nodes"], ["get", "pods", "-A"], ["get", "deployments,replicasets,statefulsets,daemonsets", "-A"],
        ["get", "jobs,cronjobs", "-A"], ["get", "cleanuppolicies"], ["get", "nodecleanups"],
        ["get", "clusterkopfpeerings"],
    ):  # fmt: skip
        allowed(kube, op, *args)
    name = "nj-rbac-node-c"
    allowed(
        kube, op, "apply", "--server-side", "--field-manager=node-janitor", "-f", "-", input=_json(_node_cleanup(name))
    )
    allowed(
        kube, op, "patch", "nodecleanup", name, "--type=merge", "-p", '{"spec": {"runRequest": "2026-01-01T00:00:00Z"}}'
    )
    forbidden(kube, op, "patch", "nodecleanup", name, *_status_patch(50.0))  # the agents own the status
    allowed(kube, op, "delete", "nodecleanup", name)
    allowed(kube, op, "create", "-f", "-", input=_event("nj-rbac-operator", NODE_A))
    allowed(
        kube, op, "patch", "clusterkopfpeering", RELEASE, "--type=merge", "-p", '{"status": {"me": {"priority": 0}}}'
    )

    policy = {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": "nj-rbac"},
              "spec": {}}  # fmt: skip
    forbidden(kube, op, "create", "-f", "-", input=_json(policy))  # policies are the cluster admin's
    kube.kubectl("apply", "-f", "-", input=_json(policy))
    try:
        allowed(kube, op, "patch", "cleanuppolicy", "nj-rbac", "--subresource=status", "--type=merge",
                "-p", '{"status": {"matchedNodes": 2}}')  # fmt: skip
        forbidden(kube, op, "patch", "cleanuppolicy", "nj-rbac", "--type=merge", "-p", '{"spec": {"priority": 5}}')
        forbidden(kube, op, "delete", "cleanuppolicy", "nj-rbac")
    finally:
        kube.kubectl("delete", "cleanuppolicy", "nj-rbac")

    # Nodes are read, never written; nothing beyond what it needs is readable.
    forbidden(kube, op, "label", "node", NODE_A, "x=y")
    forbidden(kube, op, "delete", "node", NODE_B)
    forbidden(kube, op, "patch", "node", NODE_A, "--subresource=status", "--type=merge", "-p", '{"status": {}}')
    forbidden(kube, op, "get", "secrets", "-A")
    forbidden(kube, op, "get", "configmaps", "-n", NAMESPACE)
    forbidden(kube, op, "get", "customresourcedefinitions")  # the operator scans no CRDs
    forbidden(kube, op, "delete", "pod", "agent-a", "-n", NAMESPACE)
    forbidden(kube, op, "create", "deployment", "x", "--image=busybox", "-n", NAMESPACE)
    other = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "nj-rbac-other"}}
    kube.kubectl("apply", "-f", "-", input=_json(other))
    try:  # another operator's peering
        forbidden(kube, op, "patch", "clusterkopfpeering", "nj-rbac-other", "--type=merge", "-p", '{"status": {}}')
    finally:
        kube.kubectl("delete", "clusterkopfpeering", "nj-rbac-other")


def test_agent_rights(kube: ControlPlane, identities: Identities) -> None:
    agent = identities.agent_a
    _wait_for_admission_policy(kube, agent)
    allowed(kube, agent, "get", "node", NODE_A)
    allowed(kube, agent, "get", "nodes", f"--field-selector=metadata.name={NODE_A}")
    allowed(kube, agent, "get", "nodecleanups", f"--field-selector=metadata.name={NODE_A}")
    allowed(kube, agent, "create", "-f", "-", input=_event("nj-rbac-agent", NODE_A))

    forbidden(kube, agent, "label", "node", NODE_A, "x=y")
    forbidden(kube, agent, "patch", "node", NODE_A, "--subresource=status", "--type=merge", "-p", '{"status": {}}')
    forbidden(
        kube, agent, "patch", "nodecleanup", NODE_A, "--type=merge", "-p", '{"spec": {"policy": {"paused": true}}}'
    )
    forbidden(kube, agent, "delete", "nodecleanup", NODE_A)
    forbidden(kube, agent, "create", "-f", "-", input=_json(_node_cleanup("nj-rbac-node-d")))
    forbidden(kube, agent, "get", "pods", "-A")
    forbidden(kube, agent, "get", "secrets", "-n", NAMESPACE)
    forbidden(kube, agent, "get", "cleanuppolicies")
    forbidden(kube, agent, "get", "deployments", "-A")


def test_agent_writes_only_its_own_nodes_status(kube: ControlPlane, identities: Identities) -> None:
    agent = identities.agent_a
    _wait_for_admission_policy(kube, agent)
    allowed(kube, agent, "patch", "nodecleanup", NODE_A, *_status_patch(42.5))
    assert kube.kubectl_json("get", "nodecleanup", NODE_A)["status"]["diskPercent"] == 42.5

    refused = forbidden(kube, agent, "patch", "nodecleanup", NODE_B, *_status_patch(99.0))
    assert f"may write only NodeCleanup {NODE_A}, not {NODE_B}" in refused, refused
    assert "diskPercent" not in kube.kubectl_json("get", "nodecleanup", NODE_B).get("status", {})

    # Without a node in its token (not bound to a pod) the agent's ServiceAccount writes nothing at all.
    refused = forbidden(kube, identities.agent_unbound, "patch", "nodecleanup", NODE_A, *_status_patch(1.0))
    assert "must use a token bound to a pod on a node" in refused, refused
    assert kube.kubectl_json("get", "nodecleanup", NODE_A)["status"]["diskPercent"] == 42.5

    # Events too: about its own Node only, and nothing without a node in its token.
    allowed(kube, agent, "create", "-f", "-", input=_event("nj-rbac-own", NODE_A))
    refused = forbidden(kube, agent, "create", "-f", "-", input=_event("nj-rbac-other", NODE_B))
    assert f"may post Events only about Node or NodeCleanup {NODE_A}" in refused, refused
    refused = forbidden(kube, identities.agent_unbound, "create", "-f", "-", input=_event("nj-rbac-unbound", NODE_A))
    assert "must use a token bound to a pod on a node" in refused, refused
    assert kube.kubectl("get", "event", "-n", "default", "nj-rbac-other", check=False).returncode != 0

    # The policy binds only the agent: the admin (and the operator, for specs) are not narrowed by it.
    kube.kubectl("patch", "nodecleanup", NODE_B, *_status_patch(7.0))
