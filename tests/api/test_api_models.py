# ruff: noqa: E501  (the tables of bad manifests read best one case per line)
"""The CleanupPolicy and NodeCleanup models: defaults, validation errors naming the field, round trips."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from pydantic import ValidationError

from node_janitor.api import (
    CleanupPolicy,
    CleanupPolicySpec,
    LabelSelector,
    ManifestError,
    NodeCleanup,
    PolicyRules,
    Thresholds,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": "p"}, "spec": spec}


def test_defaults() -> None:
    spec = CleanupPolicy.from_manifest(policy({})).spec
    assert spec == CleanupPolicySpec()
    assert (spec.priority, spec.dry_run, spec.paused, spec.schedule) == (0, False, False, None)
    assert spec.thresholds == Thresholds(high_percent=85, low_percent=75, inodes_high_percent=90, inodes_low_percent=80)
    assert spec.images.enabled and spec.images.remove_dangling
    assert spec.images.min_age == timedelta(minutes=2)
    assert (spec.images.max_unused_age, spec.images.keep, spec.images.max_deletions_per_run) == (None, [], None)
    assert spec.snapshots.remove_orphans and spec.content.remove_orphans and spec.leases.remove_expired
    assert not spec.content.discard_unpacked_layers
    assert spec.containers.remove_exited_after is None
    logs = spec.logs
    assert (logs.enabled, logs.max_size, logs.max_files, logs.compress) == (True, 10 * 2**20, 5, True)
    assert (logs.check_interval, logs.orphan_grace_period) == (timedelta(seconds=5), timedelta(hours=1))
    assert (logs.node_budget, logs.remove_orphaned, logs.extra_paths) == (None, True, [])
    assert spec.node_selector == LabelSelector() and spec.node_selector.matches({"any": "node"})


def test_full_example_parses_to_typed_values() -> None:
    spec = CleanupPolicy.load(EXAMPLES / "cleanuppolicy-full.yaml").spec
    assert spec.images.max_unused_age == timedelta(days=7)
    assert spec.logs.node_budget == 5 * 2**30
    assert spec.logs.extra_paths[0].max_size == 2 * 2**30
    assert spec.cron_schedule is not None and spec.cron_schedule.hours == {3}
    assert spec.node_selector.matches({"node-role.kubernetes.io/worker": "", "node.kubernetes.io/instance-type": "m5"})
    assert not spec.node_selector.matches({"node-role.kubernetes.io/worker": "", "example.com/no-janitor": "1"})


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_round_trip(path: Path) -> None:
    model = NodeCleanup if "kind: NodeCleanup" in path.read_text() else CleanupPolicy
    obj = model.load(path)
    assert model.from_manifest(obj.to_manifest()) == obj


def test_to_manifest_writes_wire_format() -> None:
    manifest = CleanupPolicy.from_manifest(policy({"images": {"maxUnusedAge": "90m"}})).to_manifest()
    assert manifest["spec"]["images"]["minAge"] == "2m"
    assert manifest["spec"]["images"]["maxUnusedAge"] == "1h30m"
    assert manifest["spec"]["logs"]["maxSize"] == "10Mi"
    assert "nodeBudget" not in manifest["spec"]["logs"]  # unset optionals are left out, never null
    assert manifest["metadata"] == {"name": "p"}


BAD_POLICIES = [
    ({"thresholds": {"highPercent": 70, "lowPercent": 80}}, "spec.thresholds: lowPercent (80) must be less than highPercent (70)"),
    ({"thresholds": {"highPercent": 75}}, "spec.thresholds: lowPercent (75) must be less than highPercent (75)"),
    ({"thresholds": {"inodesLowPercent": 95}}, "spec.thresholds: inodesLowPercent (95) must be less than inodesHighPercent (90)"),
    ({"thresholds": {"highPercent": 101}}, "spec.thresholds.highPercent: Input should be less than or equal to 100"),
    ({"thresholds": {"highPercent": "85"}}, "spec.thresholds.highPercent: Input should be a valid integer"),
    ({"dryRun": "yes"}, "spec.dryRun: Input should be a valid boolean"),
    ({"images": {"minAge": "2 minutes"}}, "spec.images.minAge: invalid duration '2 minutes'"),
    ({"images": {"minAge": 120}}, "spec.images.minAge: a duration must be a string"),
    ({"images": {"minAge": "1s" * 33}}, "spec.images.minAge: at most 64 characters"),  # the CRD's maxLength
    ({"images": {"maxUnusedAge": "-1h"}}, "spec.images.maxUnusedAge: invalid duration '-1h': negative"),
    ({"images": {"keep": ["ok/*", ""]}}, "spec.images.keep[1]: String should have at least 1 character"),
    ({"images": {"maxDeletionsPerRun": 0}}, "spec.images.maxDeletionsPerRun: Input should be greater than or equal to 1"),
    ({"images": {"maxAge": "1h"}}, "spec.images.maxAge: unknown field"),
    ({"imagez": {}}, "spec.imagez: unknown field"),
    ({"logs": {"maxSize": "-10Mi"}}, "spec.logs.maxSize: invalid size '-10Mi': negative"),
    ({"logs": {"maxSize": "10m"}}, "spec.logs.maxSize: invalid size '10m' ('m' means milli"),
    ({"logs": {"maxSize": 0}}, "spec.logs.maxSize: must be greater than 0"),
    ({"logs": {"checkInterval": "0s"}}, "spec.logs.checkInterval: must be greater than 0"),
    ({"logs": {"maxFiles": 0}}, "spec.logs.maxFiles: Input should be greater than or equal to 1"),
    ({"logs": {"nodeBudget": "5GB"}}, "spec.logs.nodeBudget: invalid size '5GB'"),
    ({"logs": {"extraPaths": [{"glob": "var/log/*.log", "maxAge": "1h"}]}}, "spec.logs.extraPaths[0].glob: String should match pattern '^/'"),
    ({"logs": {"extraPaths": [{"glob": "/var/log/*.log"}]}}, "spec.logs.extraPaths[0]: set maxAge, maxSize or both"),
    ({"schedule": "every day"}, "spec.schedule: a schedule has 5 fields"),
    ({"schedule": "0 25 * * *"}, "spec.schedule: hour value 25 is out of range 0-23"),
    ({"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}}, "spec.nodeSelector.matchExpressions[0].operator: Input should be 'In', 'NotIn', 'Exists' or 'DoesNotExist'"),
    ({"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "spec.nodeSelector.matchExpressions[0]: values must be non-empty for In"),
    ({"nodeSelector": {"matchLabels": {"a": 1}}}, "spec.nodeSelector.matchLabels.a: Input should be a valid string"),
    ({"priority": 2**31}, "spec.priority: Input should be less than or equal to 2147483647"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "message"), BAD_POLICIES, ids=[m.split(":")[0] for _, m in BAD_POLICIES])
def test_bad_policies_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as failure:
        CleanupPolicy.from_manifest(policy(spec), source="policy.yaml")
    assert any(line.startswith(message) for line in failure.value.errors), failure.value.errors
    assert str(failure.value).startswith("policy.yaml: invalid manifest:\n  spec.")


def test_wrong_kind_and_api_version() -> None:
    with pytest.raises(ManifestError) as failure:
        CleanupPolicy.from_manifest({"apiVersion": "nodejanitor.io/v1", "kind": "NodeCleanup"})
    assert failure.value.errors == [
        "apiVersion: Input should be 'nodejanitor.io/v1alpha1'",
        "kind: Input should be 'CleanupPolicy'",
    ]


def test_any_mapping_will_do() -> None:
    """kopf hands handlers read-only mapping views, not dicts."""
    manifest = policy({"images": {"keep": ("a/*", "b/*")}})
    view = MappingProxyType({**manifest, "spec": MappingProxyType(manifest["spec"])})
    assert CleanupPolicy.from_manifest(view).spec.images.keep == ["a/*", "b/*"]


def test_yaml_errors() -> None:
    with pytest.raises(ManifestError, match=r"\(root\): not YAML"):
        CleanupPolicy.from_yaml("spec: [")
    with pytest.raises(ManifestError, match=r"\(root\): expected a mapping, got list"):
        CleanupPolicy.from_yaml("- 1")


def test_metadata_from_the_apiserver_is_kept() -> None:
    manifest = policy({})
    manifest["metadata"] = {
        "name": "p", "uid": "1234", "generation": 3, "resourceVersion": "99",
        "creationTimestamp": "2024-06-01T12:00:00Z", "managedFields": [{"manager": "kubectl"}],
    }  # fmt: skip
    obj = CleanupPolicy.from_manifest(manifest)
    assert obj.metadata.generation == 3 and obj.metadata.creation_timestamp is not None
    assert obj.to_manifest()["metadata"]["managedFields"] == [{"manager": "kubectl"}]


def test_python_names_and_typed_values_work_too() -> None:
    spec = CleanupPolicySpec(dry_run=True, thresholds=Thresholds(high_percent=90, low_percent=50))
    assert spec.dry_run and spec.thresholds.low_percent == 50
    with pytest.raises(ValidationError, match="lowPercent \\(95\\) must be less than highPercent \\(90\\)"):
        Thresholds(high_percent=90, low_percent=95)


def test_models_are_immutable() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        CleanupPolicySpec().priority = 3  # type: ignore[misc]


def test_rules_drop_selection_fields() -> None:
    spec = CleanupPolicy.load(EXAMPLES / "cleanuppolicy-full.yaml").spec
    rules = spec.rules()
    assert type(rules) is PolicyRules
    assert rules.model_dump() == spec.model_dump(exclude={"node_selector", "priority"})


def nodecleanup(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "NodeCleanup", "metadata": {"name": name}, "spec": spec}


def test_nodecleanup_example() -> None:
    obj = NodeCleanup.load(EXAMPLES / "nodecleanup.yaml")
    assert obj.spec.policy.thresholds.high_percent == 80
    assert obj.spec.policy.logs.max_files == 5  # defaults fill the rest of the effective policy
    assert obj.status is not None and obj.status.last_run is not None
    assert obj.status.last_run.trigger == "watermark"
    assert obj.status.usage is not None and obj.status.usage.images.total == 42
    assert [fs.name for fs in obj.status.file_systems] == ["imagefs", "logs"]


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (nodecleanup("n1", nodeName="n2"), "(root): spec.nodeName (n2) must equal metadata.name (n1)"),
        (nodecleanup("n1"), "spec.nodeName: Field required"),
        (nodecleanup("n1", nodeName="n1", policy={"priority": 1}), "spec.policy.priority: unknown field"),
        (nodecleanup("n1", nodeName="n1", policy={"nodeSelector": {}}), "spec.policy.nodeSelector: unknown field"),
        ({**nodecleanup("n1", nodeName="n1"), "status": {"lastRun": {"trigger": "cron", "startTime": "2024-06-01T00:00:00Z"}}},
         "status.lastRun.trigger: Input should be 'schedule', 'pressure', 'request', 'watermark', 'prediction' or 'startup'"),
        ({**nodecleanup("n1", nodeName="n1"), "status": {"diskPercent": 101}}, "status.diskPercent: Input should be less than or equal to 100"),
        ({**nodecleanup("n1", nodeName="n1"), "status": {"conditions": [{"type": "Ready", "status": "Yes"}]}},
         "status.conditions[0].status: Input should be 'True', 'False' or 'Unknown'"),
    ],
)  # fmt: skip
def test_bad_nodecleanups(manifest: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as failure:
        NodeCleanup.from_manifest(manifest)
    assert any(line.startswith(message) for line in failure.value.errors), failure.value.errors
