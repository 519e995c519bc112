# ruff: noqa: E501  (the table of bad policies reads best one case per line)
"""The CRDs against a real apiserver: they install, default, validate (naming the field, like the models
do), explain, print their columns, and NodeCleanups go with their Node."""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

import pytest
import yaml

from node_janitor.api import CleanupPolicy, ManifestError, NodeCleanup
from support.kube import REPO, ControlPlane

pytestmark = pytest.mark.kube

EXAMPLES = REPO / "deploy" / "examples"


def _readme_examples() -> list[tuple[str, str]]:
    """Every YAML block of the README and of docs/ that is one of our objects."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        blocks = re.findall(r"```ya?ml\n(.*?)```", page.read_text(), re.DOTALL)
        name = page.relative_to(REPO)
        found += [(f"{name}#{i}", b) for i, b in enumerate(blocks) if "apiVersion: nodejanitor.io/" in b]
    return found


POLICY_EXAMPLES = [(p.name, p.read_text()) for p in sorted(EXAMPLES.glob("cleanuppolicy*.yaml"))] + [
    (name, text) for name, text in _readme_examples() if "kind: CleanupPolicy" in text
]


def _apply(kube: ControlPlane, manifest: dict[str, Any] | str, *args: str) -> Any:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    return kube.kubectl("apply", "-f", "-", *args, input=text)


def test_crds_are_established(kube: ControlPlane, crds: tuple[str, ...]) -> None:
    for name in crds:
        conditions = {c["type"]: c["status"] for c in kube.kubectl_json("get", "crd", name)["status"]["conditions"]}
        assert conditions["Established"] == conditions["NamesAccepted"] == "True", conditions
        assert "NonStructuralSchema" not in conditions


@pytest.mark.parametrize(("name", "text"), POLICY_EXAMPLES, ids=[n for n, _ in POLICY_EXAMPLES])
def test_examples_are_accepted_with_the_models_defaults(kube: ControlPlane, crds: object, name: str, text: str) -> None:
    """The apiserver fills in exactly the defaults the models have: what it stores is what the models read."""
    local = CleanupPolicy.from_yaml(text, name)
    kube.kubectl("apply", "-f", "-", input=text)
    stored = kube.kubectl_json("get", "cleanuppolicy", local.metadata.name or "")
    assert stored["spec"] == local.to_manifest()["spec"]
    assert CleanupPolicy.from_manifest(stored).spec == local.spec


def test_minimal_policy_gets_every_default(kube: ControlPlane, crds: object) -> None:
    kube.kubectl("apply", "-f", str(EXAMPLES / "cleanuppolicy-minimal.yaml"))
    spec = kube.kubectl_json("get", "cleanuppolicy", "default")["spec"]
    assert spec["thresholds"] == {
        "highPercent": 85,
        "lowPercent": 75,
        "inodesHighPercent": 90,
        "inodesLowPercent": 80,
        "evictionPercent": 85,
        "predict": True,
        "predictHorizon": "30s",
    }
    assert spec["images"] == {
        "enabled": True,
        "minAge": "2m",
        "keep": [],
        "removeDangling": True,
        "selection": "LeastRecentlyUsed",
        "keepWorkloadImages": True,
    }
    assert spec["logs"]["maxSize"] == "10Mi" and spec["logs"]["maxFiles"] == 5
    assert (spec["priority"], spec["dryRun"], spec["paused"]) == (0, False, False)


def _policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": name}, "spec": spec}


# (spec, the field the apiserver names, the field the models name)
BAD_POLICIES: list[tuple[dict[str, Any], str, str]] = [
    (
        {"thresholds": {"highPercent": 70, "lowPercent": 80}},
        'spec.thresholds.lowPercent: Invalid value: "object": lowPercent must be less than highPercent',
        "spec.thresholds: lowPercent (80)",
    ),
    (
        {"thresholds": {"lowPercent": 85}},
        'spec.thresholds.lowPercent: Invalid value: "object": lowPercent must be less than highPercent',
        "spec.thresholds: lowPercent (85)",
    ),
    (
        {"thresholds": {"inodesHighPercent": 50}},
        'spec.thresholds.inodesLowPercent: Invalid value: "object": inodesLowPercent must be less than inodesHighPercent',
        "spec.thresholds: inodesLowPercent (80)",
    ),
    (
        {"thresholds": {"highPercent": 101}},
        "spec.thresholds.highPercent: Invalid value: 101",
        "spec.thresholds.highPercent:",
    ),
    (
        {"thresholds": {"highPercent": "85"}},
        'spec.thresholds.highPercent: Invalid value: "string"',
        "spec.thresholds.highPercent:",
    ),
    ({"dryRun": "yes"}, 'spec.dryRun: Invalid value: "string"', "spec.dryRun:"),
    ({"images": {"minAge": "2 minutes"}}, 'spec.images.minAge: Invalid value: "2 minutes"', "spec.images.minAge:"),
    ({"images": {"minAge": 120}}, 'spec.images.minAge: Invalid value: "integer"', "spec.images.minAge:"),
    (
        {"images": {"maxUnusedAge": "-1h"}},
        'spec.images.maxUnusedAge: Invalid value: "-1h"',
        "spec.images.maxUnusedAge:",
    ),
    ({"images": {"maxUnusedAge": "7d"}}, 'spec.images.maxUnusedAge: Invalid value: "7d"', "spec.images.maxUnusedAge:"),
    ({"images": {"keep": ["registry.k8s.io/*", ""]}}, 'spec.images.keep[1]: Invalid value: ""', "spec.images.keep[1]:"),
    (
        {"images": {"maxDeletionsPerRun": 0}},
        "spec.images.maxDeletionsPerRun: Invalid value: 0",
        "spec.images.maxDeletionsPerRun:",
    ),
    ({"images": {"maxAge": "1h"}}, 'unknown field "spec.images.maxAge"', "spec.images.maxAge: unknown field"),
    (
        {"images": {"selection": "Biggest"}},
        'spec.images.selection: Unsupported value: "Biggest"',
        "spec.images.selection:",
    ),
    ({"imagez": {}}, 'unknown field "spec.imagez"', "spec.imagez: unknown field"),
    ({"logs": {"maxSize": "-10Mi"}}, 'spec.logs.maxSize: Invalid value: "-10Mi"', "spec.logs.maxSize:"),
    ({"logs": {"maxSize": -1}}, "spec.logs.maxSize: Invalid value: -1", "spec.logs.maxSize:"),
    ({"logs": {"maxSize": "10m"}}, 'spec.logs.maxSize: Invalid value: "10m"', "spec.logs.maxSize:"),
    (
        {"logs": {"maxSize": "0"}},
        'spec.logs.maxSize: Invalid value: "": must be greater than 0',
        "spec.logs.maxSize: must be greater than 0",
    ),
    ({"logs": {"nodeBudget": "5GB"}}, 'spec.logs.nodeBudget: Invalid value: "5GB"', "spec.logs.nodeBudget:"),
    (
        {"logs": {"checkInterval": "0s"}},
        'spec.logs.checkInterval: Invalid value: "string": must be greater than 0',
        "spec.logs.checkInterval: must be greater than 0",
    ),
    ({"logs": {"maxFiles": 0}}, "spec.logs.maxFiles: Invalid value: 0", "spec.logs.maxFiles:"),
    (
        {"logs": {"extraPaths": [{"glob": "var/log/*.log", "maxAge": "1h"}]}},
        'spec.logs.extraPaths[0].glob: Invalid value: "var/log/*.log"',
        "spec.logs.extraPaths[0].glob:",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/log/*.log"}]}},
        'spec.logs.extraPaths[0]: Invalid value: "object": set maxAge, maxSize or both',
        "spec.logs.extraPaths[0]: set maxAge, maxSize or both",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/lib/containerd/**/*", "maxAge": "1h"}]}},
        'spec.logs.extraPaths[0]: Invalid value: "object": the glob is inside a tree extraPaths never touch',
        "spec.logs.extraPaths[0].glob: reaches /var/lib/containerd: extraPaths never touch",
    ),
    ({"schedule": "every day"}, 'spec.schedule: Invalid value: "every day"', "spec.schedule:"),
    (
        {"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}},
        'spec.nodeSelector.matchExpressions[0].operator: Unsupported value: "Like"',
        "spec.nodeSelector.matchExpressions[0].operator:",
    ),
    (
        {"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        'spec.nodeSelector.matchExpressions[0].values: Invalid value: "object": values must be non-empty',
        "spec.nodeSelector.matchExpressions[0]: values must be non-empty",
    ),
    ({"priority": 2**31}, "spec.priority: Invalid value: 2147483648", "spec.priority:"),
]


def _cel_wording(message: str) -> str:
    """An apiserver's refusal without what releases word differently: 1.32 says `Invalid value: "object": <rule's
    message>` (the value's type), 1.37 `Invalid value: <message>` or the value itself (`Invalid value: "0s": ...`)."""
    return re.sub(r'Invalid value: "[^"]*": ', "Invalid value: ", message)


@pytest.mark.parametrize(
    ("spec", "apiserver_says", "models_say"),
    BAD_POLICIES,
    ids=[a.split(":")[0].split('"')[-1] for _, a, _ in BAD_POLICIES],
)
def test_bad_policies_are_refused_naming_the_field(
    kube: ControlPlane, crds: object, spec: dict[str, Any], apiserver_says: str, models_say: str
) -> None:
    manifest = _policy("bad", **spec)
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0, f"the apiserver accepted {spec}"
    assert apiserver_says in result.stderr or _cel_wording(apiserver_says) in _cel_wording(result.stderr), result.stderr
    # the models refuse the same manifest, naming the same field
    with pytest.raises(ManifestError) as failure:
        CleanupPolicy.from_manifest(manifest)
    assert any(line.startswith(models_say) for line in failure.value.errors), failure.value.errors


# Values the models refuse that the apiserver accepted before CEL rules closed the gap: a policy with one of them
# passed `kubectl apply`, then the operator could not compile it (tests/controller/test_operator.py: its nodes keep their
# last valid spec). (spec, what the models say)
MODELS_REFUSE: list[tuple[dict[str, Any], str]] = [
    ({"schedule": "99 * * * *"}, "spec.schedule: minute value 99 is out of range 0-59"),
    ({"schedule": "0 24 * * *"}, "spec.schedule: hour value 24 is out of range 0-23"),
    ({"schedule": "0 0 32 * *"}, "spec.schedule: day of month value 32 is out of range 1-31"),
    ({"schedule": "0 0 1 13 *"}, "spec.schedule: month value 13 is out of range 1-12"),
    ({"schedule": "0 0 * * 8"}, "spec.schedule: day of week value 8 is out of range 0-7"),
    ({"schedule": "0 0 * jam *"}, "spec.schedule: invalid month value 'jam'"),
    ({"schedule": "*/0 * * * *"}, "spec.schedule: invalid minute field '*/0': step must be at least 1"),
    ({"images": {"minAge": "9999999999999h"}}, "spec.images.minAge: invalid duration '9999999999999h': out of range"),
    (
        {"logs": {"extraPaths": [{"glob": "/var/log/../lib/x", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: no '.' or '..' components",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/log/./x", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: no '.' or '..' components",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/log/a**b", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: '**' must be a whole component",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "//", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: must name files, not /",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var//lib/containerd/x", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/lib/containerd",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/lib/**", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/lib/containerd",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/**/x.log", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/lib/containerd",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/*/containerd/x.log", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/lib/containerd",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/log/*/**", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/log/pods",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/lib/contain*/x", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/lib/containerd",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/log/p?ds/x", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/log/pods",
    ),
    ({"logs": {"extraPaths": [{"glob": "/*/x", "maxAge": "1h"}]}}, "spec.logs.extraPaths[0].glob: reaches /bin"),
    (
        {"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
        "spec.nodeSelector.matchExpressions[0]: values must be non-empty for In and NotIn, and empty",
    ),
]
# Still refused by the models only: CEL cannot say it at a price the apiserver accepts (a backwards range, a day no
# month has; a glob component with [...] or two *s on the way to a protected tree). The operator keeps the nodes'
# last valid spec and the policy says InvalidSpec; the extraPaths walk skips the protected trees anyway.
MODELS_ONLY: list[tuple[dict[str, Any], str]] = [
    ({"schedule": "5-1 * * * *"}, "spec.schedule: invalid minute field '5-1': range 5-1 is backwards"),
    ({"schedule": "0 0 30 2 *"}, "spec.schedule: the schedule '0 0 30 2 *' never fires"),
    (
        {"logs": {"extraPaths": [{"glob": "/v?r/l[a-z]b/kube*/x", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/lib/kubelet",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/e[!x]c/*.conf", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /etc",
    ),
    (
        {"logs": {"extraPaths": [{"glob": "/var/log/po*s*/x", "maxAge": "1h"}]}},
        "spec.logs.extraPaths[0].glob: reaches /var/log/pods",
    ),
]
# Globs both accept: the rules above must not refuse more than the models do.
# (The other way round, one difference is left: the apiserver refuses a glob naming a protected tree itself, such
# as /var/lib/containerd or /etc/, which matches no file below it.)
GOOD_GLOBS = [
    "/var/log/*.log",
    "/var/log/*",
    "/var/log/journal/**/*.journal",
    "/var/lib/mysql/*.log",
    "/var/l?g/x",
    "/opt/(x)+/[!a]*.log",
    "/var/log/containers.old/*",
    "/run/containerd-logs/*",
    "/home/*/logs/**",
    "/var/lib/c*x/x",
    "/us/x",
    "/*",
    "/var/li/containerd/x",
]


@pytest.mark.parametrize(("spec", "models_say"), MODELS_REFUSE, ids=[json.dumps(s)[:60] for s, _ in MODELS_REFUSE])
def test_what_the_models_refuse_the_apiserver_refuses(
    kube: ControlPlane, crds: object, spec: dict[str, Any], models_say: str
) -> None:
    manifest = _policy("differs", **spec)
    with pytest.raises(ManifestError) as failure:
        CleanupPolicy.from_manifest(manifest)
    assert any(line.startswith(models_say) for line in failure.value.errors), failure.value.errors
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0, f"the apiserver accepted {spec}"


@pytest.mark.parametrize(("spec", "models_say"), MODELS_ONLY, ids=[json.dumps(s)[:60] for s, _ in MODELS_ONLY])
def test_the_known_differences_left(kube: ControlPlane, crds: object, spec: dict[str, Any], models_say: str) -> None:
    """When one of these starts to fail, the apiserver refuses it too: move it to MODELS_REFUSE."""
    manifest = _policy("differs", **spec)
    with pytest.raises(ManifestError) as failure:
        CleanupPolicy.from_manifest(manifest)
    assert any(line.startswith(models_say) for line in failure.value.errors), failure.value.errors
    kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest))


@pytest.mark.parametrize("glob", GOOD_GLOBS)
def test_globs_the_models_accept_the_apiserver_accepts(kube: ControlPlane, crds: object, glob: str) -> None:
    manifest = _policy("good-glob", logs={"extraPaths": [{"glob": glob, "maxAge": "1h"}]})
    CleanupPolicy.from_manifest(manifest)
    kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest))


def test_explain_shows_the_descriptions(kube: ControlPlane, crds: object) -> None:
    deadline = time.monotonic() + 30  # the apiserver publishes a new CRD's OpenAPI a moment after Established
    while True:
        result = kube.kubectl("explain", "cleanuppolicy.spec.thresholds", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "GROUP: nodejanitor.io" in text
    assert "When to reclaim space: high and low watermarks for space and inodes." in text
    assert "highPercent <integer>" in text
    assert "Start reclaiming when used space goes above this percentage (1-100)." in text
    assert "Stop reclaiming once used space is below this percentage (1-100, less than highPercent)." in text
    node = " ".join(kube.kubectl("explain", "nodecleanup.status.lastRun.trigger").stdout.split())
    assert "What started it: schedule, pressure" in node


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_get_shows_the_printer_columns(kube: ControlPlane, crds: object) -> None:
    _apply(kube, _policy("columns", priority=7, dryRun=True))
    policy_status = {
        "status": {
            "observedGeneration": 1, "matchedNodes": 3, "nodesUnderPressure": 1, "reclaimedBytes": 3 * 2**29,
            "reclaimed": "1.5Gi", "lastRunTime": _now(),
            "conditions": [{"type": "Ready", "status": "True", "reason": "Applied", "message": "",
                            "lastTransitionTime": _now(), "observedGeneration": 1}],
        }
    }  # fmt: skip
    kube.kubectl("patch", "cleanuppolicy", "columns", "--subresource=status", "--type=merge",
                 "-p", json.dumps(policy_status))  # fmt: skip

    example = yaml.safe_load((EXAMPLES / "nodecleanup.yaml").read_text())
    node = copy.deepcopy(example)
    node["metadata"]["name"] = node["spec"]["nodeName"] = "columns-node"
    status = node.pop("status")
    _apply(kube, node)
    assert "status" not in kube.kubectl_json("get", "nodecleanup", "columns-node")  # status only via its subresource
    kube.kubectl("patch", "nodecleanup", "columns-node", "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": {**status, "lastRun": {**status["lastRun"], "startTime": _now()}}}))  # fmt: skip
    stored = NodeCleanup.from_manifest(kube.kubectl_json("get", "nodecleanup", "columns-node"))
    assert stored.status is not None and stored.status.image_count == 42
    assert stored.metadata.generation == 1  # status writes do not bump the generation

    out = kube.kubectl("get", "cleanuppolicies,nodecleanups").stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line[0] == "NAME" and "PRIORITY" in line)
    assert lines[header] == ["NAME", "PRIORITY", "DRY-RUN", "MATCHED", "UNDER-PRESSURE", "RECLAIMED", "READY", "AGE"]
    row = next(line for line in lines[header:] if line[0] == "cleanuppolicy.nodejanitor.io/columns")
    assert row[1:7] == ["7", "true", "3", "1", "1.5Gi", "True"]
    node_header = next(i for i, line in enumerate(lines) if line[0] == "NAME" and "DISK%" in line)
    assert " ".join(lines[node_header]) == "NAME DISK% IMAGES RECLAIMABLE LAST RUN RECLAIMED READY AGE"
    row = next(line for line in lines[node_header:] if line[0] == "nodecleanup.nodejanitor.io/columns-node")
    assert row[1:4] == ["82", "42", "6.5Gi"] and row[5:7] == ["17.9Gi", "True"]
    assert re.fullmatch(r"\d+s", row[4])  # LAST RUN is an age

    # short names and the category reach the same objects
    assert "columns-node" in kube.kubectl("get", "njnc").stdout
    assert "columns" in kube.kubectl("get", "njpol").stdout
    both = kube.kubectl("get", "node-janitor", "-o", "name").stdout.split()
    assert {"cleanuppolicy.nodejanitor.io/columns", "nodecleanup.nodejanitor.io/columns-node"} <= set(both)


def test_a_nodecleanup_is_named_after_its_node(kube: ControlPlane, crds: object) -> None:
    manifest = {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "NodeCleanup", "metadata": {"name": "node-a"},
                "spec": {"nodeName": "node-b"}}  # fmt: skip
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0 and "spec.nodeName: Invalid value" in result.stderr
    assert "spec.nodeName must equal metadata.name" in result.stderr
    manifest["spec"] = {"nodeName": "node-a", "policy": {"priority": 3}}
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0 and 'unknown field "spec.policy.priority"' in result.stderr


def test_deleting_a_node_deletes_its_nodecleanup(kube: ControlPlane, crds: object) -> None:
    """kube-controller-manager's garbage collector follows the ownerReference. (It knows our CRDs from its
    start, see the `kube` fixture; a CRD created later takes it up to 30 s to discover.)"""
    node = kube.kubectl_json("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node",
                                                                    "metadata": {"name": "gc-node"}}))  # fmt: skip
    owned = NodeCleanup.from_manifest(
        {
            "apiVersion": "nodejanitor.io/v1alpha1",
            "kind": "NodeCleanup",
            "metadata": {"name": "gc-node", "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "gc-node", "uid": node["metadata"]["uid"]}]},
            "spec": {"nodeName": "gc-node"},
        }
    )  # fmt: skip
    kube.kubectl("create", "-f", "-", input=json.dumps(owned.to_manifest()))
    kube.kubectl("delete", "node", "gc-node")
    deadline = time.monotonic() + 90
    while kube.kubectl("get", "nodecleanup", "gc-node", check=False).returncode == 0:
        assert time.monotonic() < deadline, "the NodeCleanup outlived its Node"
        time.sleep(0.5)
