# ruff: noqa: E501  (manifests and expected rows read best one per line)
"""The operator's pure parts: effective policy, protected images, workload images, the NodeCleanup it
applies, policy status and Events, run requests; and what the Reconciler marks for a change (against a
dict-backed stand-in for kopf's indexes: the real indexes run in tests/controller/test_operator.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from node_janitor.api import NodeCleanup, NodeCleanupSpec
from node_janitor.api.nodecleanup import is_dry_run_request
from node_janitor.api.policy import PolicyRules
from node_janitor.cli.run import make_run_request, render_run_report
from node_janitor.controller.effective import (
    build_node_cleanup,
    build_node_cleanup_spec,
    compute_effective_policy,
    compute_foreign_fields,
    compute_protected_images,
    is_in_sync,
)
from node_janitor.controller.leases import AgentLease, parse_agent_leases
from node_janitor.controller.metrics import OperatorMetrics
from node_janitor.controller.reconciler import Reconciler, ReconcilerSettings
from node_janitor.controller.status import Member, compute_policy_events, compute_policy_status, is_silent
from node_janitor.controller.views import (
    CleanupView,
    NodeView,
    PolicyView,
    build_cleanup_view,
    build_node_view,
    build_policy_view,
)
from node_janitor.controller.workloads import WORKLOAD_KINDS, WorkloadKind, compute_workload_images

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
POD_SPEC = WorkloadKind("Pod", "", "v1", "pods", ("spec",))
"""A bare pod spec (Pods are not indexed by the operator any more: their node's agent protects their images)."""


def policy_body(
    name: str, selector: Mapping[str, str] | None = None, generation: int = 1, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy",
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": generation},
        "spec": {"nodeSelector": {"matchLabels": dict(selector or {})}, **spec},
    }  # fmt: skip


def policy_view(name: str, selector: Mapping[str, str] | None = None, **spec: Any) -> PolicyView:
    return build_policy_view(policy_body(name, selector, **spec))


def node_view(name: str, pressure: bool = False, **labels: str) -> NodeView:
    conditions = [{"type": "DiskPressure", "status": "True" if pressure else "False"}]
    return build_node_view({"metadata": {"name": name, "uid": f"uid-{name}", "labels": labels},
                            "status": {"conditions": conditions}})  # fmt: skip


def cleanup_body(
    name: str, spec: dict[str, Any], status: dict[str, Any] | None = None, owner: str = ""
) -> dict[str, Any]:
    return {
        "apiVersion": "nodejanitor.io/v1alpha1", "kind": "NodeCleanup",
        "metadata": {"name": name, "uid": f"nc-{name}", "resourceVersion": "7", "creationTimestamp": "2026-12-01T08:00:00Z",
                     "labels": {"app.kubernetes.io/managed-by": "node-janitor-operator"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": owner or f"uid-{name}"}]},
        "spec": spec, **({"status": status} if status is not None else {}),
    }  # fmt: skip


# --- effective policy -------------------------------------------------------------------------------------


def test_highest_priority_wins_as_a_whole_and_protections_are_unioned() -> None:
    policies = [
        policy_view("base", {}, images={"keep": ["a/*", "shared/*"]}, thresholds={"highPercent": 90, "lowPercent": 80}),
        policy_view("build", {"pool": "build"}, priority=10, images={"keep": ["shared/*", "b/*"], "minAge": "1h"}),
        policy_view("freeze", {"pool": "build"}, priority=-5, paused=True, images={"keep": ["f/*"]}),
        policy_view("other", {"pool": "web"}, priority=100, paused=True),
    ]
    effective = compute_effective_policy(policies, {"pool": "build"})
    assert effective is not None
    assert [s.name for s in effective.sources] == ["build", "base", "freeze"]
    assert effective.rules.images.keep == ["shared/*", "b/*", "a/*", "f/*"]
    assert effective.rules.images.min_age == timedelta(hours=1)
    assert effective.rules.thresholds.high_percent == 85  # build's (the default), not base's 90
    assert effective.rules.paused is True
    assert compute_effective_policy(policies, {"pool": "none"}) is not None  # base selects everything
    assert compute_effective_policy(policies[1:], {"pool": "none"}) is None


def test_keep_workload_images_is_a_protection_and_is_unioned() -> None:
    off = policy_view("off", {}, priority=10, images={"keepWorkloadImages": False})
    on = policy_view("on", {"pool": "build"}, priority=-1)  # the default: true
    assert compute_effective_policy([off], {"pool": "build"}).rules.images.keep_workload_images is False  # type: ignore[union-attr]
    both = compute_effective_policy([off, on], {"pool": "build"})
    assert both is not None and [s.name for s in both.sources] == ["off", "on"]
    assert both.rules.images.keep_workload_images is True


def test_priority_ties_go_to_the_first_name() -> None:
    policies = [policy_view("zeta", {}, dryRun=True), policy_view("alpha", {})]
    effective = compute_effective_policy(policies, {})
    assert effective is not None and [s.name for s in effective.sources] == ["alpha", "zeta"]
    assert effective.rules.dry_run is False


def test_an_invalid_policy_selects_nothing_and_says_why() -> None:
    bad = build_policy_view(policy_body("bad", {}, thresholds={"highPercent": 50, "lowPercent": 70}))
    assert bad.error is not None and "lowPercent (70) must be less than highPercent (50)" in bad.error
    assert compute_effective_policy([bad], {}) is None


# --- protected images and the applied NodeCleanup ---------------------------------------------------------


def test_protected_images_are_the_workload_images_the_node_holds_compared_normalised() -> None:
    held = build_cleanup_view(
        cleanup_body("n", {"nodeName": "n"}, {"imageRefs": ["nginx", "quay.io/x/y:1", "busybox:1.36"]})
    )
    assert held.image_refs == {"docker.io/library/nginx:latest", "quay.io/x/y:1", "docker.io/library/busybox:1.36"}
    workload = compute_workload_images(POD_SPEC, {"spec": {"containers": [{"image": "docker.io/library/nginx"},
                                                                                {"image": "quay.io/x/y:1"}]}})  # fmt: skip
    assert compute_protected_images(held.image_refs, workload.__contains__, True) == [
        "docker.io/library/nginx:latest", "quay.io/x/y:1"]  # fmt: skip
    assert compute_protected_images(held.image_refs, workload.__contains__, False) == []


def test_a_workload_image_with_tag_and_digest_protects_the_digest_ref_the_node_records() -> None:
    """containerd records a pull of `repo:tag@digest` under `repo@digest`: that is what the agent reports."""
    digest = "sha256:" + "cd" * 32
    held = build_cleanup_view(cleanup_body("n", {"nodeName": "n"}, {"imageRefs": [f"registry.example/app@{digest}"]}))
    pod = {"spec": {"containers": [{"image": f"registry.example/app:v1@{digest}"}]}}
    workload = compute_workload_images(POD_SPEC, pod)
    assert compute_protected_images(held.image_refs, workload.__contains__, True) == [f"registry.example/app@{digest}"]


@pytest.mark.parametrize("kind", WORKLOAD_KINDS, ids=[k.kind for k in WORKLOAD_KINDS])
def test_workload_images_come_from_every_container_list_of_the_pod_spec(kind: Any) -> None:
    assert kind.kind != "Pod"  # (issue 21: bare Pods are their node's agent's, agent/pods.py)
    pod_spec = {"initContainers": [{"name": "i", "image": "init:1"}], "containers": [{"name": "c", "image": "app"}],
                "ephemeralContainers": [{"name": "d", "image": "registry.example/debug:2"}]}  # fmt: skip
    body: dict[str, Any] = pod_spec
    for part in reversed(kind.pod_spec_path):
        body = {part: body}
    assert compute_workload_images(kind, body) == {
        "docker.io/library/init:1", "docker.io/library/app:latest", "registry.example/debug:2"}  # fmt: skip
    assert compute_workload_images(kind, {"spec": None}) == frozenset()


@pytest.mark.parametrize("kind", WORKLOAD_KINDS, ids=[k.kind for k in WORKLOAD_KINDS])
def test_image_volumes_are_workload_images(kind: Any) -> None:
    """KEP-4639: `volumes[].image.reference` is pulled and mounted by the kubelet, with no container of it."""
    pod_spec = {
        "containers": [{"name": "c", "image": "app:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [
            {"name": "data", "image": {"reference": "registry.example/models/llm:v2", "pullPolicy": "IfNotPresent"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "odd", "image": {"reference": ""}},
            {"name": "odder", "image": None},
        ],
    }
    body: dict[str, Any] = pod_spec
    for part in reversed(kind.pod_spec_path):
        body = {part: body}
    assert compute_workload_images(kind, body) == {"docker.io/library/app:1", "registry.example/models/llm:v2"}


def test_the_applied_body_validates_and_never_names_run_request() -> None:
    node = node_view("n1", pool="a")
    effective = compute_effective_policy([policy_view("p", {"pool": "a"})], node.labels)
    assert effective is not None
    spec = build_node_cleanup_spec("n1", effective, ["docker.io/library/app:latest"])
    body = build_node_cleanup(node, spec)
    assert "runRequest" not in body["spec"] and "status" not in body
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-n1",
                                                    "controller": True}]  # fmt: skip
    assert NodeCleanup.from_manifest(body).spec == spec


def test_in_sync_ignores_spellings_and_run_request_but_not_owner_or_content() -> None:
    node = node_view("n1")
    effective = compute_effective_policy([policy_view("p", {})], {})
    assert effective is not None
    spec = build_node_cleanup_spec("n1", effective, [])
    stored = build_node_cleanup(node, spec)["spec"]
    stored["policy"]["images"]["minAge"] = "120s"  # what the apiserver keeps may be spelled differently
    stored["runRequest"] = "20261201T090000Z-abcd"
    assert is_in_sync(build_cleanup_view(cleanup_body("n1", stored)), node, spec)
    assert not is_in_sync(build_cleanup_view(cleanup_body("n1", stored, owner="old-node-uid")), node, spec)
    stored["protectedImages"] = ["docker.io/library/x:1"]
    assert not is_in_sync(build_cleanup_view(cleanup_body("n1", stored)), node, spec)
    assert not is_in_sync(None, node, spec)


# --- policy status and Events -----------------------------------------------------------------------------


def member(name: str, status: dict[str, Any] | None, *, pressure: bool = False, in_sync: bool = True,
           high: int = 80) -> Member:  # fmt: skip
    spec = {"nodeName": name, "policy": {"thresholds": {"highPercent": high, "lowPercent": high - 20}}}
    return Member(node_view(name, pressure), build_cleanup_view(cleanup_body(name, spec, status)), in_sync)


def run(reclaimed: int, start: datetime = NOW, errors: Iterable[str] = ()) -> dict[str, Any]:
    return {"trigger": "watermark", "startTime": start.isoformat(), "durationSeconds": 3.0,
            "reclaimedBytes": reclaimed, "errors": list(errors)}  # fmt: skip


LOGS_FS_AT_90 = {"name": "logs", "path": "/var/log", "sizeBytes": 10, "usedBytes": 9, "usedPercent": 90.0}


def test_status_aggregates_pressure_reclaimed_bytes_and_last_run() -> None:
    beat = NOW.isoformat()
    members = [
        member("a", {"heartbeatTime": beat, "diskPercent": 85.0, "lastRun": run(2**20, NOW - timedelta(hours=1))}),
        member("b", {"heartbeatTime": beat, "diskPercent": 50.0, "lastRun": run(2**21)}, pressure=True),
        member("c", {"heartbeatTime": beat, "fileSystems": [LOGS_FS_AT_90]}),
        member("d", {"heartbeatTime": beat, "diskPercent": 80.0, "lastRun": run(-5)}),  # at the watermark, not above
    ]
    status = compute_policy_status(policy_view("p", {}), members, NOW + timedelta(seconds=30), timedelta(minutes=5))
    assert (status.matched_nodes, status.nodes_under_pressure) == (4, 3)
    assert (status.reclaimed_bytes, status.reclaimed) == (3 * 2**20, "3Mi")
    assert status.last_run_time == NOW + timedelta(seconds=3)
    conditions = {c.type: c for c in status.conditions}
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("True", "Applied")
    assert (conditions["Degraded"].status, conditions["Degraded"].reason) == ("False", "AsExpected")
    assert {c.observed_generation for c in status.conditions} == {1}


def test_ready_and_degraded_reasons() -> None:
    stale = timedelta(minutes=5)
    pending = [member("a", None, in_sync=False), member("b", None)]
    ready = {c.type: c for c in compute_policy_status(policy_view("p", {}), pending, NOW, stale).conditions}["Ready"]
    assert (ready.status, ready.reason, ready.message) == ("False", "Applying", "1 of 2 nodes not updated yet: a")

    failing = [member("a", {"heartbeatTime": NOW.isoformat(), "lastRun": run(0, errors=["boom"])}),
               member("b", {"heartbeatTime": NOW.isoformat(), "conditions": [
                   {"type": "Degraded", "status": "True", "reason": "ContainerdUnreachable",
                    "lastTransitionTime": NOW.isoformat()}]})]  # fmt: skip
    degraded = {c.type: c for c in compute_policy_status(policy_view("p", {}), failing, NOW, stale).conditions}[
        "Degraded"
    ]
    assert (degraded.status, degraded.reason, degraded.message) == (
        "True",
        "AgentErrors",
        "2 nodes report errors: a, b",
    )

    silent = [member("a", {"heartbeatTime": (NOW - timedelta(minutes=6)).isoformat()}), member("b", None)]
    degraded = {c.type: c for c in compute_policy_status(policy_view("p", {}), silent, NOW, stale).conditions}[
        "Degraded"
    ]
    # b has never reported, but its NodeCleanup was created an hour ago: silent too
    assert (degraded.status, degraded.reason) == ("True", "AgentsNotReporting") and "a, b" in degraded.message

    bad = build_policy_view(policy_body("bad", {}, thresholds={"highPercent": 50, "lowPercent": 70}))
    none = {c.type: c for c in compute_policy_status(bad, [], NOW, stale).conditions}["Ready"]
    assert (none.status, none.reason) == ("False", "InvalidSpec")
    empty = {c.type: c for c in compute_policy_status(policy_view("p", {}), [], NOW, stale).conditions}["Ready"]
    assert (empty.status, empty.reason) == ("True", "NoMatchingNodes")


def test_an_unchanged_aggregate_equals_the_stored_status_and_transitions_keep_their_time() -> None:
    members = [member("a", {"heartbeatTime": NOW.isoformat()})]
    first = compute_policy_status(policy_view("p", {}), members, NOW, timedelta(minutes=5))
    stored = build_policy_view({**policy_body("p", {}), "status": first.model_dump(mode="json", exclude_none=True)})
    again = compute_policy_status(stored, members, NOW + timedelta(seconds=40), timedelta(minutes=5))
    assert again == first  # nothing to write
    failing = [member("a", {"heartbeatTime": NOW.isoformat(), "lastRun": run(0, errors=["x"])})]
    later = compute_policy_status(stored, failing, NOW + timedelta(seconds=50), timedelta(minutes=5))
    times = {c.type: c.last_transition_time for c in later.conditions}
    assert times == {"Ready": NOW, "Degraded": NOW + timedelta(seconds=50)}


def test_events_for_notable_changes_only() -> None:
    stale = timedelta(minutes=5)
    healthy = [member("a", {"heartbeatTime": NOW.isoformat()}), member("b", {"heartbeatTime": NOW.isoformat()})]
    first = compute_policy_status(policy_view("p", {}), healthy, NOW, stale)
    assert [(e.type, e.reason) for e in compute_policy_events(None, first)] == [("Normal", "NodesSelected")]
    assert compute_policy_events(first, first) == []

    failing = [member("a", {"heartbeatTime": NOW.isoformat(), "lastRun": run(0, errors=["x"])}, pressure=True),
               healthy[1], member("c", None, in_sync=False)]  # fmt: skip
    worse = compute_policy_status(policy_view("p", {}), failing, NOW, stale)
    events = {(e.type, e.reason): e.message for e in compute_policy_events(first, worse)}
    assert set(events) == {("Warning", "AgentErrors"), ("Normal", "NodesSelected"), ("Warning", "NodesUnderPressure")}
    assert events[("Normal", "NodesSelected")] == "selects 3 nodes (was 2)"  # and no Event for Applying
    recovered = [(e.type, e.reason) for e in compute_policy_events(worse, first)]
    assert ("Normal", "AsExpected") in recovered and ("Normal", "Applied") in recovered


# --- run requests -----------------------------------------------------------------------------------------


def test_run_request_tokens() -> None:
    dry, real = make_run_request(True, NOW), make_run_request(False, NOW)
    assert dry.startswith("dry-run:20261201T090000Z-") and is_dry_run_request(dry)
    assert real.startswith("20261201T090000Z-") and not is_dry_run_request(real) and not is_dry_run_request(None)
    assert make_run_request(False, NOW) != real


def test_run_report_renders_the_plan_errors_and_file_systems() -> None:
    status = {
        "lastRun": {"trigger": "request", "startTime": NOW.isoformat(), "durationSeconds": 1.5, "dryRun": True,
                    "actions": 3, "plannedBytes": 3 * 2**20, "runRequest": "dry-run:x", "errors": ["remove x: busy"],
                    "plan": [{"kind": "remove-image", "ref": "docker.io/library/old:1", "bytes": 2**21,
                              "reason": "lru-under-pressure"}]},
        "fileSystems": [{"name": "imagefs", "path": "/var/lib/containerd", "sizeBytes": 2**30, "usedBytes": 2**29,
                         "usedPercent": 50.0}],
    }  # fmt: skip
    text = render_run_report(NodeCleanup.from_manifest(cleanup_body("n1", {"nodeName": "n1"}, status)))
    lines = text.splitlines()
    assert lines[0] == "dry run (nothing removed) on n1: trigger request, started 2026-12-01 09:00:00Z, took 1.5s"
    assert lines[1].split() == ["actions:", "3", "planned:", "3Mi", "reclaimed:", "0"]
    assert lines[3].split() == ["KIND", "REF", "BYTES", "REASON"]
    assert lines[4].split() == ["remove-image", "docker.io/library/old:1", "2Mi", "lru-under-pressure"]
    assert "... and 2 more actions" in lines and "  remove x: busy" in lines
    assert lines[-1].split() == ["imagefs", "/var/lib/containerd", "512Mi", "1Gi", "50.0%"]
    assert (
        render_run_report(NodeCleanup.from_manifest(cleanup_body("n2", {"nodeName": "n2"})))
        == "n2: no run reported yet"
    )


# --- what a change touches ---------------------------------------------------------------------------------


class DictState:
    """Stands in for kopf's indexes (tests/controller/test_operator.py runs the real ones)."""

    def __init__(self) -> None:
        self.nodes_: dict[str, NodeView] = {}
        self.policies_: dict[str, PolicyView] = {}
        self.cleanups_: dict[str, CleanupView] = {}
        self.workload: set[str] = set()

    def node(self, name: str) -> NodeView | None:
        return self.nodes_.get(name)

    def nodes(self) -> Iterable[NodeView]:
        return self.nodes_.values()

    def policy(self, name: str) -> PolicyView | None:
        return self.policies_.get(name)

    def policies(self) -> Iterable[PolicyView]:
        return self.policies_.values()

    def cleanup(self, name: str) -> CleanupView | None:
        return self.cleanups_.get(name)

    def is_workload_image(self, ref: str) -> bool:
        return ref in self.workload

    def workload_images(self) -> Iterable[str]:
        return set(self.workload)


def test_a_change_marks_only_what_it_touches() -> None:
    reconciler = Reconciler(writer=None, metrics=OperatorMetrics(), settings=ReconcilerSettings())  # type: ignore[arg-type]
    state = DictState()
    reconciler.attach(state)
    for i in range(6):
        view = node_view(f"n{i}", pool="a" if i < 2 else "b" if i < 4 else "c")
        state.nodes_[view.name] = view
        reconciler.node_changed(view.name, view)
    a = policy_view("pa", {"pool": "a"})
    state.policies_["pa"] = a
    reconciler.policy_changed("pa", a)
    reconciler._nodes.items.clear(), reconciler._policies.items.clear()  # start from a quiet state

    moved = policy_view("pa", {"pool": "b"}, generation=2)
    reconciler.policy_changed("pa", moved)
    assert reconciler.pending()["nodes"] == {"n0", "n1", "n2", "n3"}  # the old and the new selector's nodes
    assert reconciler.pending()["policies"] == {"pa"}
    reconciler._nodes.items.clear(), reconciler._policies.items.clear()

    reconciler.node_changed("n5", node_view("n5", pool="c", unrelated="x"))
    assert reconciler.pending() == {"nodes": {"n5"}, "policies": set(), "images": set()}
    reconciler._nodes.items.clear()
    reconciler.node_changed("n2", node_view("n2", pressure=True, pool="b"))  # pressure: status only
    assert reconciler.pending() == {"nodes": set(), "policies": {"pa"}, "images": set()}

    reconciler.workload_changed("pods/default/p", frozenset({"docker.io/library/x:1"}))
    reconciler.workload_changed("pods/default/q", frozenset({"docker.io/library/x:1"}))
    assert reconciler.pending()["images"] == {"docker.io/library/x:1"}


def test_a_workload_image_marks_its_holders_and_a_heartbeat_alone_marks_no_policy() -> None:
    """Issue 21: the holders of a reference are found by scanning the views (no kopf index of reference ->
    holders), and an agent's heartbeat, which changes nothing a policy's status sums up, recomputes no policy."""
    reconciler = Reconciler(writer=None, metrics=OperatorMetrics(), settings=ReconcilerSettings())  # type: ignore[arg-type]
    state = DictState()
    reconciler.attach(state)
    policy = policy_view("p", {"pool": "a"})
    state.policies_["p"] = policy
    reconciler.policy_changed("p", policy)
    spec = {"policy": {}}

    def report(name: str, refs: list[str], heartbeat: str, used: float = 41.0) -> None:
        status = {"imageRefs": refs, "heartbeatTime": heartbeat, "diskPercent": used}
        view = build_cleanup_view(cleanup_body(name, {**spec, "nodeName": name}, status))
        state.cleanups_[name] = view
        reconciler.cleanup_changed(name, view)

    for name in ("n0", "n1", "n2"):
        state.nodes_[name] = node_view(name, pool="a")
        reconciler.node_changed(name, state.nodes_[name])
    report("n0", ["nginx:1.25", "busybox"], "2026-12-03T10:00:00Z")
    report("n1", ["docker.io/library/nginx:1.25"], "2026-12-03T10:00:00Z")
    report("n2", ["quay.io/x/y:1"], "2026-12-03T10:00:00Z")
    # Two nodes' spellings of one image are one string in memory.
    assert next(iter(state.cleanups_["n1"].image_refs)) is next(
        r for r in state.cleanups_["n0"].image_refs if r.endswith("nginx:1.25")
    )
    reconciler._nodes.items.clear(), reconciler._policies.items.clear()

    reconciler._distribute(["docker.io/library/nginx:1.25", "registry.example/none:1"])
    assert reconciler.pending()["nodes"] == {"n0", "n1"}
    reconciler._nodes.items.clear()
    reconciler._distribute(["docker.io/library/busybox:latest"])
    assert reconciler.pending()["nodes"] == {"n0"}
    reconciler._nodes.items.clear()

    computed: list[str] = []
    desired = reconciler._desired
    reconciler._desired = lambda st, node, cleanup: computed.append(node.name) or desired(st, node, cleanup)  # type: ignore[method-assign]
    assert all(m.in_sync is False for m in reconciler.members(policy))  # (nothing written here)
    assert sorted(computed) == ["n0", "n1", "n2"]
    report("n2", ["quay.io/x/y:1"], "2026-12-03T10:05:00Z")  # a heartbeat: same refs, same usage
    assert reconciler.pending() == {"nodes": set(), "policies": set(), "images": set()}
    computed.clear()
    reconciler.members(policy)  # a status resync after the heartbeat: nothing it reads changed, nothing recomputed
    assert computed == []
    report("n2", ["quay.io/x/y:1"], "2026-12-03T10:10:00Z", used=91.0)  # the usage changed: its policy's status
    assert reconciler.pending() == {"nodes": set(), "policies": {"p"}, "images": set()}


def test_nodecleanup_views_share_what_nodes_share() -> None:
    """Issue 21: 5,000 views hold 10 distinct policies and the same few thousand references: one parsed policy and
    one string each, not one per node; an invalid policy is still refused."""
    policy = PolicyRules().model_dump(mode="json", exclude_none=True)
    a, b = (
        build_cleanup_view(cleanup_body(n, {"nodeName": n, "policy": dict(policy), "protectedImages": ["docker.io/library/a:1"]},
                                        {"imageRefs": ["a:1"]}))
        for n in ("a", "b")
    )  # fmt: skip
    assert a.spec is not None and b.spec is not None and a.spec.policy is b.spec.policy
    assert a.spec.protected_images[0] is b.spec.protected_images[0] is next(iter(b.image_refs))
    bad = build_cleanup_view(cleanup_body("c", {"nodeName": "c", "policy": {"thresholds": {"highPercent": "85"}}}))
    assert bad.spec is None


class CountingState(DictState):
    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    def nodes(self) -> Iterable[NodeView]:
        self.scans += 1
        return super().nodes()


def test_a_status_pass_reads_only_the_policy_s_members_and_follows_every_change() -> None:
    reconciler = Reconciler(writer=None, metrics=OperatorMetrics(), settings=ReconcilerSettings())  # type: ignore[arg-type]
    state = CountingState()
    reconciler.attach(state)

    def put_node(name: str, view: NodeView | None) -> None:
        if view is None:
            state.nodes_.pop(name)
        else:
            state.nodes_[name] = view
        reconciler.node_changed(name, view)

    def put_policy(view: PolicyView) -> None:
        state.policies_[view.name] = view
        reconciler.policy_changed(view.name, view)

    def members(name: str) -> dict[str, bool]:
        policy = state.policy(name)
        assert policy is not None
        return {m.node.name: m.in_sync for m in reconciler.members(policy)}

    for i in range(6):
        put_node(f"n{i}", node_view(f"n{i}", pool="abc"[i // 2]))
    put_policy(policy_view("pa", {"pool": "a"}))
    put_policy(policy_view("pb", {"pool": "b"}))
    assert members("pa") == {"n0": False, "n1": False} and members("pb") == {"n2": False, "n3": False}
    assert state.scans == 1  # the first pass builds the selection from the index, later ones only read it

    put_node("n2", node_view("n2", pool="a"))  # relabelled
    put_node("n0", None)  # deleted
    assert members("pa") == {"n1": False, "n2": False} and members("pb") == {"n3": False}
    put_policy(policy_view("pb", {"pool": "c"}, generation=2))  # a new selector: one scan
    assert members("pb") == {"n4": False, "n5": False}
    assert state.scans == 2

    # in sync once its NodeCleanup holds the compiled spec; not any more when the policy changes
    node = state.nodes_["n1"]
    spec = reconciler._desired(state, node, None)
    assert spec is not None
    body = build_node_cleanup(node, spec)
    body["metadata"].update(uid="nc-n1", resourceVersion="8")
    cleanup = build_cleanup_view(body)
    state.cleanups_["n1"] = cleanup
    reconciler.cleanup_changed("n1", cleanup)
    assert members("pa") == {"n1": True, "n2": False}
    assert members("pa") == {"n1": True, "n2": False}  # (remembered: the same answer)
    put_policy(policy_view("pa", {"pool": "a"}, generation=2, thresholds={"highPercent": 90, "lowPercent": 70}))
    assert members("pa") == {"n1": False, "n2": False}


class RecordingWriter:
    """The ClusterWriter's NodeCleanup writes, recorded."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    async def apply_node_cleanup(self, body: Mapping[str, Any]) -> None:
        self.writes.append(("apply", body["metadata"]["name"]))

    async def delete_node_cleanup(self, name: str, uid: str) -> None:
        self.writes.append(("delete", name))


async def test_an_invalid_policy_leaves_its_nodes_their_last_valid_spec() -> None:
    """A policy that passed the apiserver but fails the models used to select nothing at once: its nodes'
    NodeCleanups were deleted (or rewritten without its keep and paused) and the agents fell back to defaults."""
    writer = RecordingWriter()
    reconciler = Reconciler(writer=writer, metrics=OperatorMetrics(), settings=ReconcilerSettings())  # type: ignore[arg-type]
    state = DictState()
    reconciler.attach(state)
    state.nodes_["n1"] = node_view("n1", pool="a")
    reconciler.node_changed("n1", state.nodes_["n1"])

    def put_policy(view: PolicyView) -> None:
        state.policies_[view.name] = view
        reconciler.policy_changed(view.name, view)

    async def reconcile() -> None:
        for name in sorted(reconciler.pending()["nodes"]):
            await reconciler._reconcile_node(name)
        reconciler._nodes.items.clear()

    put_policy(policy_view("kept", {"pool": "a"}, paused=True, images={"keep": ["localhost/aged-*"]}))
    put_policy(policy_view("other", {"pool": "a"}, priority=5))
    await reconcile()
    assert writer.writes == [("apply", "n1")]
    spec = reconciler._desired(state, state.nodes_["n1"], None)
    assert spec is not None and spec.policy.paused and spec.policy.images.keep == ["localhost/aged-*"]
    body = build_node_cleanup(state.nodes_["n1"], spec)
    body["metadata"].update(uid="nc-n1", resourceVersion="8")
    state.cleanups_["n1"] = build_cleanup_view(body)
    reconciler.cleanup_changed("n1", state.cleanups_["n1"])

    bad = build_policy_view(policy_body("kept", {"pool": "a"}, 2, thresholds={"highPercent": 50, "lowPercent": 70}))
    put_policy(bad)
    put_policy(policy_view("other", {"pool": "a"}, priority=6))  # the other policy changes meanwhile too
    assert "n1" in reconciler.pending()["nodes"]
    await reconcile()
    assert writer.writes == [("apply", "n1")]  # neither deleted nor rewritten: keep and paused stay
    ready = {c.type: c for c in compute_policy_status(bad, [], NOW, timedelta(minutes=5)).conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "InvalidSpec") and "keep their last valid spec" in ready.message

    put_policy(policy_view("kept", {"pool": "elsewhere"}, generation=3))  # valid again, selecting other nodes
    assert "n1" in reconciler.pending()["nodes"]  # (it selected nothing while invalid: its NodeCleanups tell)
    await reconcile()
    assert writer.writes == [("apply", "n1"), ("apply", "n1")]
    again = reconciler._desired(state, state.nodes_["n1"], state.cleanups_["n1"])
    assert again is not None and [s.name for s in again.sources] == ["other"] and not again.policy.paused


# --- kopf's credentials and peering priority ---------------------------------------------------------------


def test_credentials_come_from_the_kubeconfig_given(tmp_path: Path) -> None:
    from node_janitor.controller.app import connection_info
    from node_janitor.controller.kube import load_configuration

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "s3cret"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))  # fmt: skip
    info = connection_info(load_configuration(str(kubeconfig)))
    assert (info.server, info.scheme, info.token, info.insecure) == ("https://127.0.0.1:6443", "Bearer", "s3cret", True)


def test_the_oldest_replica_has_the_highest_peering_priority() -> None:
    from node_janitor.controller.app import peering_priority

    assert peering_priority(1_000.0) > peering_priority(1_000.001) > peering_priority(2_000.0)


def test_a_missing_kubeconfig_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node_janitor.cli import main

    missing = tmp_path / "none"
    for argv in (["operator", f"--kubeconfig={missing}"], ["run", "n1", f"--kubeconfig={missing}"]):
        assert main(argv) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"node-janitor: error: no Kubernetes configuration ({missing}): Invalid kube-config file. No configuration found."
        ]


def test_foreign_fields_are_the_stored_ones_the_operators_spec_leaves_unset() -> None:
    ours = NodeCleanupSpec.model_validate({"nodeName": "n", "policy": {"logs": {"maxFiles": 3}}})
    stored = NodeCleanupSpec.model_validate({
        "nodeName": "n", "runRequest": "2026-01-01T00:00:00Z",
        "policy": {"logs": {"maxFiles": 9, "nodeBudget": "1"}, "images": {"maxUnusedAge": "1s"},
                   "containers": {"removeExitedAfter": "0s"}, "schedule": "* * * * *"},
    })  # fmt: skip
    # maxFiles differs but the apply overwrites it; runRequest is not the operator's
    assert compute_foreign_fields(ours, stored) == [
        "/spec/policy/schedule", "/spec/policy/images/maxUnusedAge", "/spec/policy/containers/removeExitedAfter",
        "/spec/policy/logs/nodeBudget",
    ]  # fmt: skip
    assert compute_foreign_fields(ours, ours) == []


# --- liveness: the agents' Leases (issue 21) -----------------------------------------------------------------

STALE = timedelta(minutes=5)


def lease(age: timedelta, duration: int = 180) -> AgentLease:
    return AgentLease(NOW - age, duration)


def test_a_renewed_lease_keeps_an_agent_alive_without_a_status_heartbeat() -> None:
    old_heartbeat = {"heartbeatTime": (NOW - timedelta(minutes=20)).isoformat()}
    assert not is_silent(replace(member("a", old_heartbeat), lease=lease(timedelta(seconds=60))), NOW, STALE)
    # (without the Lease, that heartbeat is silent: the old rule)
    assert is_silent(member("a", old_heartbeat), NOW, STALE)


def test_an_expired_lease_is_silent_within_its_duration_whatever_the_last_heartbeat() -> None:
    """An agent with a Lease writes its status every 5 minutes: its heartbeat alone would flag it only after up to
    10; the Lease flags it 3 minutes after its last renewal."""
    heartbeat = {"heartbeatTime": (NOW - timedelta(minutes=3, seconds=30)).isoformat()}
    stopped = replace(member("a", heartbeat), lease=lease(timedelta(minutes=3, seconds=1)))
    assert is_silent(stopped, NOW, STALE)
    status = compute_policy_status(policy_view("p", {}), [stopped], NOW, STALE)
    degraded = {c.type: c for c in status.conditions}["Degraded"]
    assert (degraded.status, degraded.reason) == ("True", "AgentsNotReporting")


def test_a_status_written_after_the_lease_expired_counts_as_a_heartbeat() -> None:
    """An agent that renews no Lease any more (downgraded, or its renewals refused) heartbeats in status."""
    heartbeat = {"heartbeatTime": (NOW - timedelta(seconds=30)).isoformat()}
    assert not is_silent(replace(member("a", heartbeat), lease=lease(timedelta(hours=1))), NOW, STALE)


def test_leases_are_parsed_by_node_name() -> None:
    listing: dict[str, Any] = {"items": [
        {"metadata": {"name": "n1"}, "spec": {"renewTime": "2026-12-01T08:59:00.123456Z", "leaseDurationSeconds": 120}},
        {"metadata": {"name": "n2"}, "spec": {"holderIdentity": "n2"}},  # never renewed
        {"metadata": {"name": "n3"}, "spec": {"renewTime": "garbage"}},
    ]}  # fmt: skip
    leases = parse_agent_leases(listing)
    assert list(leases) == ["n1"]
    assert leases["n1"].duration_seconds == 120 and leases["n1"].renewed.second == 0


class _NoWrites:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected write {name}")


def test_a_lease_turning_stale_marks_the_policies_of_its_node_only() -> None:
    reconciler = Reconciler(_NoWrites(), OperatorMetrics(), ReconcilerSettings())  # type: ignore[arg-type]
    reconciler.node_changed("a", node_view("a", pool="x"))
    reconciler.node_changed("b", node_view("b", pool="y"))
    reconciler.policy_changed("px", policy_view("px", {"pool": "x"}))
    reconciler.policy_changed("py", policy_view("py", {"pool": "y"}))
    reconciler.leases_listed({"a": lease(timedelta(seconds=10)), "b": lease(timedelta(seconds=10))}, NOW)
    reconciler._policies.items.clear()
    # a minute later: a renewed, b did not and is past its duration
    later = NOW + timedelta(minutes=3)
    reconciler.leases_listed({"a": AgentLease(later, 180), "b": lease(timedelta(seconds=10))}, later)
    assert reconciler.pending()["policies"] == {"py"}
