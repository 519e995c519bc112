"""A status the apiserver refuses for good (here a ValidatingAdmissionPolicy stands in for, say, a CRD stricter than
the agent: it refuses any status listing imageRefs, with 422 Invalid) holds back neither the run's Event on the Node
nor the heartbeat: the agent sends the conditions (Degraded, StatusRefused) and heartbeatTime alone."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from node_janitor.devbed import ContainerdBed
from support.agentbed import (
    AgentFactory,
    apply_nodecleanup,
    build_images,
    condition,
    import_one_by_one,
    node_events,
    status,
    wait_for,
)
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]


def _refusing_policy(node: str) -> str:
    name = f"refuse-status-{node}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["nodejanitor.io"], "apiVersions": ["*"],
                                                    "operations": ["UPDATE"], "resources": ["nodecleanups/status"]}]},
            "matchConditions": [{"name": "this-node", "expression": f"request.name == '{node}'"}],
            "validations": [{"expression": "!has(object.status) || !has(object.status.imageRefs)"
                                           " || size(object.status.imageRefs) == 0",
                             "message": "imageRefs refused by the test", "reason": "Invalid"}],
        },
    }  # fmt: skip
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name}, "spec": {"policyName": name, "validationActions": ["Deny"]},
    }  # fmt: skip
    return yaml.safe_dump_all([policy, binding])


def _probe_refused(kube: ControlPlane, node: str) -> bool:
    """Whether the policy is in force: a status with imageRefs is refused (if it got through, it is taken back)."""
    patch = kube.kubectl("patch", "nodecleanup", node, "--subresource=status", "--type=merge",
                         "-p", json.dumps({"status": {"imageRefs": ["probe"]}}), check=False)  # fmt: skip
    if patch.returncode != 0:
        return "imageRefs refused by the test" in patch.stderr
    kube.kubectl("patch", "nodecleanup", node, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": {"imageRefs": None}}))  # fmt: skip
    return False


async def test_a_refused_status_holds_back_neither_the_event_nor_the_heartbeat(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = containerd_bed
    import_one_by_one(bed, build_images(bed, "refused", 2))
    apply_nodecleanup(kube, node_name, {"thresholds": {"highPercent": 2, "lowPercent": 1}, "images": {"minAge": "1s"}})
    manifests = _refusing_policy(node_name)
    kube.kubectl("apply", "-f", "-", input=manifests)
    try:
        wait_for("the admission policy in force", lambda: _probe_refused(kube, node_name), 30)
        await asyncio.sleep(1.1)  # minAge
        agent = agents.start(node_name, bed)
        # The startup run removes both images (the disk is above 2%): its Event is posted although every full status
        # (it lists the pause image) is refused.
        events = wait_for("the run's Event", lambda: [e for e in node_events(kube, node_name)
                                                      if e["reason"] == "CleanupDone"], 30)  # fmt: skip
        assert "startup run removed 2 object(s)" in events[0]["message"], events
        st = wait_for("the heartbeat", lambda: (s := status(kube, node_name)).get("heartbeatTime") and s, 30)
        degraded = condition(st, "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "StatusRefused"), st["conditions"]
        assert "imageRefs refused by the test" in degraded["message"]
        assert "lastRun" not in st and not st.get("imageRefs")  # only the conditions and the heartbeat got in
        assert agent.metrics()['node_janitor_errors_total{source="apiserver"}'] >= 1
    finally:
        kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifests)
