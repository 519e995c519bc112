# ruff: noqa: E501  (manifests and expected rows read best one per line)
"""The operator against the real apiserver: `node-janitor operator --standalone` as a subprocess (no peering
CRD needed; tests/controller/test_operator_peering.py runs two replicas with peering), Node objects created
through the API (the operator needs no kubelet), fake agent reports written to NodeCleanup status through
the status subresource, as the agent does."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node_janitor.api.nodecleanup import RUN_REQUEST_ANNOTATION, is_dry_run_request
from support.kube import ControlPlane
from support.metrics_doc import undocumented
from support.operator import (
    DEADLINE,
    POOL,
    Operator,
    apply,
    cleanups,
    node,
    patch_status,
    policy,
    running_operator,
    sources,
)
from support.poll import wait_for

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module")
def operator(kube: ControlPlane, crds: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    # Policies other tests left behind (an empty selector selects every node) would blur what these test.
    kube.kubectl("delete", "cleanuppolicies", "--all", "--wait=true")
    with running_operator(kube, tmp_path_factory.mktemp("operator")) as op:
        yield op


def test_policy_makes_one_nodecleanup_per_matching_node_and_none_for_others(
    operator: Operator, kube: ControlPlane
) -> None:
    for name, pool in (("sel-a1", "a"), ("sel-a2", "a"), ("sel-b1", "b")):
        node(kube, name, **{POOL: pool})
    policy(kube, "sel-a", {POOL: "a"}, thresholds={"highPercent": 70, "lowPercent": 50}, images={"keep": ["x/*"]})

    found = wait_for(
        "NodeCleanups of pool a", lambda: (c := cleanups(kube, "sel-")) and set(c) == {"sel-a1", "sel-a2"} and c
    )
    nodes = {n["metadata"]["name"]: n for n in kube.kubectl_json("get", "nodes")["items"]}
    for name, cleanup in found.items():
        spec = cleanup["spec"]
        assert spec["nodeName"] == name
        assert spec["policy"]["thresholds"]["highPercent"] == 70 and spec["policy"]["images"]["keep"] == ["x/*"]
        assert spec["sources"] == [{"name": "sel-a", "generation": 1, "priority": 0}]
        (owner,) = cleanup["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", name, nodes[name]["metadata"]["uid"])
        managers = {m["manager"] for m in cleanup["metadata"]["managedFields"]}
        assert "node-janitor-operator" in managers
    # sel-b1 never gets one, even after the operator has had time for it
    time.sleep(1)
    assert "sel-b1" not in cleanups(kube, "sel-")


def test_relabelling_moves_a_node_between_policies(operator: Operator, kube: ControlPlane) -> None:
    node(kube, "move-1", **{POOL: "move-x"})
    policy(kube, "move-x", {POOL: "move-x"}, priority=5, images={"keep": ["keep-x/*"]})
    policy(kube, "move-y", {POOL: "move-y"}, dryRun=True)
    policy(kube, "move-all", {"test.nodejanitor.io/move": "yes"}, priority=1, paused=True, images={"keep": ["all/*"]})

    wait_for("move-1 under move-x", lambda: sources(cleanups(kube, "move-")["move-1"]) == ["move-x"])
    kube.kubectl("label", "node", "move-1", f"{POOL}=move-y", "--overwrite")
    spec = wait_for("move-1 under move-y",
                    lambda: (c := cleanups(kube, "move-").get("move-1")) and sources(c) == ["move-y"] and c["spec"])  # fmt: skip
    assert spec["policy"]["dryRun"] is True and spec["policy"]["images"]["keep"] == []

    # a second selecting policy: the higher priority wins as a whole, keep patterns and paused are unioned
    kube.kubectl("label", "node", "move-1", "test.nodejanitor.io/move=yes", f"{POOL}=move-x", "--overwrite")
    spec = wait_for("move-1 under move-x and move-all",
                    lambda: (c := cleanups(kube, "move-").get("move-1")) and sources(c) == ["move-x", "move-all"] and c["spec"])  # fmt: skip
    assert spec["policy"]["images"]["keep"] == ["keep-x/*", "all/*"]
    assert spec["policy"]["paused"] is True and spec["policy"]["dryRun"] is False

    kube.kubectl("label", "node", "move-1", f"{POOL}-", "test.nodejanitor.io/move-")
    wait_for("move-1's NodeCleanup deleted", lambda: "move-1" not in cleanups(kube, "move-"))


def test_deleting_a_node_or_the_policy_removes_nodecleanups(operator: Operator, kube: ControlPlane) -> None:
    node(kube, "del-1", **{POOL: "del"})
    node(kube, "del-2", **{POOL: "del"})
    policy(kube, "del", {POOL: "del"})
    wait_for("NodeCleanups of del", lambda: set(cleanups(kube, "del-")) == {"del-1", "del-2"})
    kube.kubectl("delete", "node", "del-2")
    wait_for("del-2's NodeCleanup gone with its Node", lambda: set(cleanups(kube, "del-")) == {"del-1"})
    kube.kubectl("delete", "cleanuppolicy", "del")
    wait_for("no NodeCleanup of del", lambda: not cleanups(kube, "del-"))


def test_a_policy_the_models_refuse_leaves_its_nodes_their_last_valid_spec(
    operator: Operator, kube: ControlPlane
) -> None:
    """A policy the apiserver accepts but the models refuse (here a glob with a bracket expression on the way to
    containerd's tree: the CRD's CEL rules do not cover those) used to select nothing: its nodes' NodeCleanups
    went, with its keep and paused, and the agents fell back to the defaults."""
    node(kube, "inv-1", **{POOL: "inv"})
    policy(kube, "inv", {POOL: "inv"}, paused=True, images={"keep": ["localhost/aged-*"]})
    before = wait_for("inv-1", lambda: cleanups(kube, "inv-").get("inv-1"))
    policy(kube, "inv", {POOL: "inv"}, paused=True, images={"keep": ["localhost/aged-*"]},
           logs={"extraPaths": [{"glob": "/var/l[i]b/containerd/x.log", "maxAge": "1h"}]})  # fmt: skip

    def ready(name: str) -> dict[str, Any]:
        status = kube.kubectl_json("get", "cleanuppolicy", name).get("status") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})

    invalid = wait_for("Ready=False InvalidSpec", lambda: (c := ready("inv")).get("reason") == "InvalidSpec" and c)
    kept = cleanups(kube, "inv-")["inv-1"]  # (the nodes pass, debounced 0.2 s, ran before this 2 s status pass)
    assert kept["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert kept["spec"]["policy"]["paused"] is True and kept["spec"]["policy"]["images"]["keep"] == ["localhost/aged-*"]
    assert invalid["observedGeneration"] == 2 and "keep their last valid spec" in invalid["message"]
    assert "reaches /var/lib/containerd" in invalid["message"]
    assert "event=kept nodecleanup=inv-1 invalid-policies=inv" in operator.log_text()

    policy(kube, "inv", {POOL: "inv"}, images={"keep": ["localhost/aged-*"]})  # valid again: applied
    spec = wait_for("inv-1 under generation 3", lambda: (c := cleanups(kube, "inv-").get("inv-1"))
                    and c["spec"]["sources"][0]["generation"] == 3 and c["spec"])  # fmt: skip
    assert spec["policy"]["paused"] is False and spec["policy"]["images"]["keep"] == ["localhost/aged-*"]
    wait_for("Ready again", lambda: ready("inv").get("reason") == "Applied")


def test_deleted_nodecleanup_is_recreated_and_foreign_edits_are_undone(operator: Operator, kube: ControlPlane) -> None:
    node(kube, "heal-1", **{POOL: "heal"})
    policy(kube, "heal", {POOL: "heal"})
    uid = wait_for("heal-1", lambda: cleanups(kube, "heal-").get("heal-1"))["metadata"]["uid"]
    kube.kubectl("delete", "nodecleanup", "heal-1")
    wait_for("heal-1 recreated", lambda: (c := cleanups(kube, "heal-").get("heal-1")) and c["metadata"]["uid"] != uid)
    kube.kubectl("patch", "nodecleanup", "heal-1", "--type=merge", "-p", '{"spec": {"policy": {"paused": true}}}')
    wait_for("heal-1 repaired", lambda: cleanups(kube, "heal-")["heal-1"]["spec"]["policy"]["paused"] is False)


def test_fields_another_manager_injects_into_the_policy_are_gone_within_seconds(
    operator: Operator, kube: ControlPlane
) -> None:
    """A merge patch (another field manager, as `node-janitor run`'s rights allow without the chart's admission
    policy) sets optional fields the operator leaves unset along with a runRequest. Server-side apply alone never
    removes them (they are not the operator's); the operator claims them and drops them, and the runRequest,
    which is not the operator's, stays."""
    node(kube, "inject-1", **{POOL: "inject"})
    policy(kube, "inject", {POOL: "inject"})
    wait_for("inject-1", lambda: cleanups(kube, "inject-").get("inject-1"))
    injected = {"runRequest": "2026-01-01T00:00:00Z", "policy": {"logs": {"nodeBudget": "1"},
                "images": {"maxUnusedAge": "1s"}, "containers": {"removeExitedAfter": "0s"}}}  # fmt: skip
    kube.kubectl("patch", "nodecleanup", "inject-1", "--type=merge", "--field-manager=intruder",
                 "-p", json.dumps({"spec": injected}))  # fmt: skip
    started = time.monotonic()

    def clean() -> dict[str, Any] | None:
        spec = cleanups(kube, "inject-")["inject-1"]["spec"]
        policy = spec["policy"]
        leftovers = ("nodeBudget" in policy["logs"], "maxUnusedAge" in policy["images"], policy["containers"])
        return spec if leftovers == (False, False, {}) else None

    try:
        spec = wait_for("the injected fields gone", clean, 15)
    except AssertionError:
        print(json.dumps(cleanups(kube, "inject-")["inject-1"], indent=1))
        print(operator.log_tail())
        raise
    print(f"injected fields gone after {time.monotonic() - started:.1f} s")
    assert spec["runRequest"] == "2026-01-01T00:00:00Z"
    managers = {m["manager"] for m in cleanups(kube, "inject-")["inject-1"]["metadata"]["managedFields"]
                if "f:policy" in json.dumps(m.get("fieldsV1", {}))}  # fmt: skip
    assert managers == {"node-janitor-operator"}, managers


def test_unchanged_effective_policy_writes_nothing(operator: Operator, kube: ControlPlane) -> None:
    for name in ("same-1", "same-2"):
        node(kube, name, **{POOL: "same"})
    policy(kube, "same", {POOL: "same"})
    wait_for("NodeCleanups of same", lambda: set(cleanups(kube, "same-")) == {"same-1", "same-2"})
    time.sleep(1)  # let the operator see its own writes come back
    versions = {n: c["metadata"]["resourceVersion"] for n, c in cleanups(kube, "same-").items()}
    unchanged = operator.metric("node_janitor_operator_unchanged_total", object="nodecleanup")

    # things that touch the nodes and the policy but not the effective policy
    kube.kubectl("label", "node", "same-1", "unrelated=1")
    kube.kubectl("annotate", "node", "same-2", "unrelated=1")
    kube.kubectl("annotate", "cleanuppolicy", "same", "unrelated=1")
    kube.kubectl("label", "cleanuppolicy", "same", "unrelated=1")
    # the operator recomputed same-1 (its labels changed; the policy's metadata is no spec change and the
    # annotation no label change, so they mark nothing) and found nothing to write
    wait_for("a recomputation", lambda: operator.metric("node_janitor_operator_unchanged_total", object="nodecleanup")
             > unchanged)  # fmt: skip
    time.sleep(1)
    assert {n: c["metadata"]["resourceVersion"] for n, c in cleanups(kube, "same-").items()} == versions


def test_workload_images_are_protected_where_they_are_held(operator: Operator, kube: ControlPlane) -> None:
    for name in ("img-1", "img-2"):
        node(kube, name, **{POOL: "img"})
    policy(kube, "img", {POOL: "img"})
    wait_for("NodeCleanups of img", lambda: set(cleanups(kube, "img-")) == {"img-1", "img-2"})
    # the fake agents report what their nodes hold
    patch_status(kube, "img-1", {"imageRefs": ["docker.io/library/busybox:1.36", "registry.example/cron/only:v1",
                                              "docker.io/library/app:latest"]})  # fmt: skip
    patch_status(kube, "img-2", {"imageRefs": ["docker.io/library/busybox:1.36"]})
    cron = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "img-cron", "namespace": "default"},
        "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "init", "image": "app"}],
            "containers": [{"name": "c", "image": "registry.example/cron/only:v1"}]}}}}},
    }  # fmt: skip
    apply(kube, cron)
    wait_for("the CronJob's images protected on img-1",
             lambda: cleanups(kube, "img-")["img-1"]["spec"]["protectedImages"]
             == ["docker.io/library/app:latest", "registry.example/cron/only:v1"])  # fmt: skip
    img2 = cleanups(kube, "img-")["img-2"]
    assert img2["spec"]["protectedImages"] == []
    kube.kubectl("delete", "cronjob", "img-cron", "-n", "default")
    wait_for("protection lifted", lambda: cleanups(kube, "img-")["img-1"]["spec"]["protectedImages"] == [])
    # img-2 holds none of those images: it was never written
    assert cleanups(kube, "img-")["img-2"]["metadata"]["resourceVersion"] == img2["metadata"]["resourceVersion"]


def test_a_workload_pinned_by_tag_and_digest_protects_the_digest_ref_its_node_holds(
    operator: Operator, kube: ControlPlane
) -> None:
    """containerd records a pull of `repo:tag@digest` under `repo@digest` (the tag dropped), so that is what the
    agent reports: the operator must meet it with the workload's reference."""
    digest = "sha256:" + "5e" * 32
    node(kube, "pin-1", **{POOL: "pin"})
    policy(kube, "pin", {POOL: "pin"})
    wait_for("NodeCleanup of pin-1", lambda: "pin-1" in cleanups(kube, "pin-"))
    patch_status(kube, "pin-1", {"imageRefs": [f"registry.example/pinned/app@{digest}", "registry.example/other:v1"]})
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pin-deploy", "namespace": "default"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "pin"}}, "template": {
            "metadata": {"labels": {"app": "pin"}},
            "spec": {"containers": [{"name": "c", "image": f"registry.example/pinned/app:v1@{digest}"}]}}},
    }  # fmt: skip
    apply(kube, deployment)
    try:
        wait_for("the pinned image protected on pin-1",
                 lambda: cleanups(kube, "pin-")["pin-1"]["spec"]["protectedImages"]
                 == [f"registry.example/pinned/app@{digest}"])  # fmt: skip
    finally:
        kube.kubectl("delete", "deployment", "pin-deploy", "-n", "default")


def test_an_image_volume_of_a_deployment_is_protected_where_it_is_held(operator: Operator, kube: ControlPlane) -> None:
    """KEP-4639 (GA in 1.36): the kubelet pulls `volumes[].image.reference` and containerd mounts it; no container
    runs that image, so only the volume makes it a workload image."""
    if kube.binaries.kubernetes_minor < 36:
        pytest.skip(f"image volumes are GA from Kubernetes 1.36 (this bed: {kube.binaries.kubernetes_version})")
    node(kube, "vol-1", **{POOL: "vol"})
    policy(kube, "vol", {POOL: "vol"})
    wait_for("NodeCleanup of vol-1", lambda: "vol-1" in cleanups(kube, "vol-"))
    patch_status(kube, "vol-1", {"imageRefs": ["registry.example/models/weights:v3", "docker.io/library/app:latest",
                                              "registry.example/other:v1"]})  # fmt: skip
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vol-deploy", "namespace": "default"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "vol"}}, "template": {
            "metadata": {"labels": {"app": "vol"}},
            "spec": {"containers": [{"name": "c", "image": "app",
                                     "volumeMounts": [{"name": "weights", "mountPath": "/weights"}]}],
                     "volumes": [{"name": "weights", "image": {"reference": "registry.example/models/weights:v3",
                                                               "pullPolicy": "IfNotPresent"}}]}}},
    }  # fmt: skip
    apply(kube, deployment)
    stored = kube.kubectl_json("get", "deployment", "vol-deploy", "-n", "default")["spec"]["template"]["spec"]
    assert stored["volumes"][0]["image"]["reference"] == "registry.example/models/weights:v3"  # not dropped
    try:
        wait_for("the image volume protected on vol-1",
                 lambda: cleanups(kube, "vol-")["vol-1"]["spec"]["protectedImages"]
                 == ["docker.io/library/app:latest", "registry.example/models/weights:v3"])  # fmt: skip
    finally:
        kube.kubectl("delete", "deployment", "vol-deploy", "-n", "default")


def test_policy_status_aggregates_the_node_reports(operator: Operator, kube: ControlPlane) -> None:
    for name in ("agg-1", "agg-2", "agg-3"):
        node(kube, name, **{POOL: "agg"})
    policy(kube, "agg", {POOL: "agg"}, thresholds={"highPercent": 80, "lowPercent": 60})
    wait_for("NodeCleanups of agg", lambda: len(cleanups(kube, "agg-")) == 3)
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def run(reclaimed: int, errors: list[str]) -> dict[str, Any]:
        return {"trigger": "watermark", "startTime": stamp, "durationSeconds": 2.0, "reclaimedBytes": reclaimed,
                "errors": errors}  # fmt: skip

    patch_status(kube, "agg-1", {"heartbeatTime": stamp, "diskPercent": 91.5, "lastRun": run(3 * 2**20, [])})
    patch_status(kube, "agg-2", {"heartbeatTime": stamp, "diskPercent": 40.0, "lastRun": run(2**20, ["boom"])})
    patch_status(kube, "agg-3", {"heartbeatTime": stamp, "diskPercent": 10.0})

    def status() -> dict[str, Any] | None:
        s = kube.kubectl_json("get", "cleanuppolicy", "agg").get("status") or {}
        return s if s.get("reclaimedBytes") == 4 * 2**20 else None

    s = wait_for("the aggregated status", status)
    assert (s["matchedNodes"], s["nodesUnderPressure"], s["reclaimed"]) == (3, 1, "4Mi")
    assert s["lastRunTime"] == (now + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = {c["type"]: c for c in s["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Ready"]["reason"] == "Applied"
    assert conditions["Degraded"]["status"] == "True" and conditions["Degraded"]["reason"] == "AgentErrors"
    assert "agg-2" in conditions["Degraded"]["message"]
    assert {c["observedGeneration"] for c in s["conditions"]} == {1} and s["observedGeneration"] == 1

    # Events on the policy for the notable changes
    def reasons() -> set[str]:
        events = kube.kubectl_json("get", "events", "-A", "--field-selector",
                                   "involvedObject.kind=CleanupPolicy,involvedObject.name=agg")["items"]  # fmt: skip
        return {e["reason"] for e in events}

    wait_for("Events on the policy", lambda: {"AgentErrors", "NodesUnderPressure", "NodesSelected"} <= reasons())

    # the node recovers: Degraded goes False
    patch_status(kube, "agg-2", {"lastRun": run(2**20, [])})
    wait_for("Degraded=False", lambda: {c["type"]: c["status"] for c in
                                        kube.kubectl_json("get", "cleanuppolicy", "agg")["status"]["conditions"]}
             ["Degraded"] == "False")  # fmt: skip


def test_metrics_health_and_readiness(operator: Operator, kube: ControlPlane) -> None:
    # Its own node and policy: the apply it counts is not one an earlier test happened to cause (alone, none had).
    node(kube, "met-1", **{POOL: "met"})
    policy(kube, "met", {POOL: "met"})
    wait_for("the NodeCleanup of met-1", lambda: "met-1" in cleanups(kube, "met-"))
    assert operator.get("/healthz")[0] == 200
    wait_for("/readyz synced", lambda: operator.get("/readyz") == (200, "synced\n"), 30)
    status, text = operator.get("/metrics")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"node_janitor_operator_writes", "node_janitor_operator_unchanged", "node_janitor_operator_synced",
            "node_janitor_operator_reconcile_duration_seconds"} <= names  # fmt: skip
    assert operator.metric("node_janitor_operator_synced") == 1
    assert undocumented(text) == set()  # docs/metrics.md lists every one
    assert (
        operator.metric("node_janitor_operator_writes_total", object="nodecleanup", operation="apply", outcome="ok") > 0
    )


class FakeAgent(threading.Thread):
    """Answers one run request the way the agent does: status.lastRun.runRequest = the token, and for a dry
    run (token `dry-run:...`) the plan. (The real agent is tested on its own; this stands in for it here.)"""

    def __init__(self, kube: ControlPlane, name: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.name, self.token = kube, name, ""

    def run(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            meta = self.kube.kubectl_json("get", "nodecleanup", self.name)["metadata"]
            if token := (meta.get("annotations") or {}).get(RUN_REQUEST_ANNOTATION):
                self.token = token
                break
            time.sleep(0.2)
        else:
            return
        dry = is_dry_run_request(self.token)
        patch_status(self.kube, self.name, {"lastRun": {
            "trigger": "request", "startTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "durationSeconds": 1.25,
            "dryRun": dry, "actions": 2, "plannedBytes": 5 * 2**20, "reclaimedBytes": 0, "runRequest": self.token,
            "plan": [{"kind": "remove-image", "ref": "docker.io/library/old:1", "bytes": 4 * 2**20, "reason": "lru-under-pressure"},
                     {"kind": "remove-snapshot", "ref": "sha256:abc", "bytes": 2**20, "reason": "orphan"}]},
            "fileSystems": [{"name": "imagefs", "path": "/var/lib/containerd", "sizeBytes": 2**30,
                             "usedBytes": 2**29, "usedPercent": 50.0}]})  # fmt: skip


def test_run_wait_prints_the_report(operator: Operator, kube: ControlPlane) -> None:
    node(kube, "run-1", **{POOL: "run"})
    policy(kube, "run", {POOL: "run"})
    wait_for("run-1", lambda: cleanups(kube, "run-").get("run-1"))
    agent = FakeAgent(kube, "run-1")
    agent.start()
    result = subprocess.run(
        [sys.executable, "-m", "node_janitor", "run", "run-1", "--dry-run", "--wait", "--timeout=60s",
         f"--kubeconfig={kube.kubeconfig}"], capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    agent.join(5)
    assert result.returncode == 0, result.stderr
    assert agent.token.startswith("dry-run:")
    out = result.stdout
    assert "dry run (nothing removed) on run-1: trigger request" in out
    assert "remove-image" in out and "docker.io/library/old:1" in out and "4Mi" in out and "lru-under-pressure" in out
    assert "imagefs" in out and "50.0%" in out
    # the operator's apply never takes the request back; the request is no spec change
    time.sleep(1)
    cleanup = kube.kubectl_json("get", "nodecleanup", "run-1", "--show-managed-fields")
    assert cleanup["metadata"]["annotations"][RUN_REQUEST_ANNOTATION] == agent.token
    assert "runRequest" not in cleanup["spec"]
    assert {m["manager"] for m in cleanup["metadata"]["managedFields"]} >= {"node-janitor-run", "node-janitor-operator"}


def test_run_on_a_node_without_nodecleanup_is_a_one_line_error(operator: Operator, kube: ControlPlane) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node_janitor", "run", "no-such-node", f"--kubeconfig={kube.kubeconfig}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "node-janitor: error: node no-such-node has no NodeCleanup: no CleanupPolicy selects it "
        "(or the operator is not running)"
    ]


def test_a_restarted_operator_finds_nothing_to_write(operator: Operator, kube: ControlPlane, tmp_path: Path) -> None:
    """A second operator in --dry-run (as a restart would) recomputes every NodeCleanup and policy status the
    first one wrote, from its fresh listing, and finds each equal to what is stored: not one write."""
    for kind in ("nodes", "images", "policies"):
        wait_for(
            f"the running operator idle ({kind})",
            lambda k=kind: operator.metric("node_janitor_operator_pending", kind=k) == 0,
        )  # type: ignore[misc]
    time.sleep(3)  # past the status debounce
    selected = len(
        kube.kubectl_json("get", "nodecleanups", "-l", "app.kubernetes.io/managed-by=node-janitor-operator")["items"]
    )
    policies = len(kube.kubectl_json("get", "cleanuppolicies")["items"])
    second = Operator(kube, tmp_path / "dry-run", "--standalone", "--dry-run")
    try:
        wait_for("every NodeCleanup recomputed",
                 lambda: second.metric("node_janitor_operator_unchanged_total", object="nodecleanup") >= selected)  # fmt: skip
        wait_for("every policy status recomputed",
                 lambda: second.metric("node_janitor_operator_unchanged_total", object="policy-status") >= policies)  # fmt: skip
        for outcome in ("dry-run", "ok"):
            assert second.metric("node_janitor_operator_writes_total", outcome=outcome) == 0, second.log_tail()
        assert "would-write" not in second.log_text()
    finally:
        second.stop()


def test_nodes_carry_nothing_of_ours(operator: Operator, kube: ControlPlane) -> None:
    """Runs last in this module: after everything above, no Node has an annotation, label, finalizer or
    managed field of the operator (only what the tests themselves set); no policy or NodeCleanup carries a
    kopf annotation or finalizer either."""
    nodes = kube.kubectl_json("get", "nodes", "--show-managed-fields")["items"]
    assert nodes
    for item in nodes:
        meta = item["metadata"]
        keys = [*meta.get("annotations", {}), *meta.get("labels", {})]
        ours = [k for k in keys if "kopf" in k or ("nodejanitor.io/" in k and not k.startswith("test.nodejanitor.io/"))]
        assert ours == [], meta["name"]
        assert not meta.get("finalizers"), meta["name"]
        managers = {m["manager"] for m in meta.get("managedFields", [])}
        assert not {m for m in managers if "node-janitor" in m or "kopf" in m}, (meta["name"], managers)
    for kind in ("cleanuppolicies", "nodecleanups"):
        for item in kube.kubectl_json("get", kind)["items"]:
            meta = item["metadata"]
            # nodejanitor.io/run-request is a person's (`node-janitor run`), never the operator's
            annotations = [k for k in meta.get("annotations", {}) if k != "nodejanitor.io/run-request"]
            assert not [k for k in annotations if "kopf" in k or "nodejanitor.io" in k], meta
            assert not meta.get("finalizers"), meta
