"""The agent's policy holder (`agent.policy`): what applies on the node and the fail-closed rules, with its state
directory on real files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.store import AgentStore
from node_janitor.api.policy import LogsPolicy, PolicyRules
from node_janitor.node.engine import policy_halt

NODE = "node-a"


def _nodecleanup(policy: dict[str, Any], generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": NODE, "generation": generation},
        "spec": {"nodeName": NODE, "policy": policy, **spec},
    }


def _holder(tmp_path: Path) -> PolicyHolder:
    return PolicyHolder(NODE, AgentStore(tmp_path / "state"))


def test_without_a_nodecleanup_nothing_acts(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    assert not holder.acts  # not listed yet
    holder.settle()  # the apiserver did not answer and nothing was saved
    assert holder.held.source == "none" and not holder.acts and holder.applied.paused
    holder = _holder(tmp_path)
    holder.observe(None)  # the apiserver says there is none
    assert holder.held.source == "none" and not holder.acts
    assert "nothing is removed" in holder.describe()


def test_a_valid_nodecleanup_applies_as_written_and_is_saved(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    update = holder.observe(_nodecleanup({"images": {"keep": ["localhost/aged-*"]}, "dryRun": True}, 4))
    assert update.changed and update.generation_changed and update.appeared
    assert holder.acts and holder.applied.dry_run and holder.applied.images.keep == ["localhost/aged-*"]
    assert holder.held.source == "nodecleanup" and holder.held.generation == 4
    assert json.loads((tmp_path / "state" / "policy.json").read_text())["generation"] == 4
    again = holder.observe(_nodecleanup({"images": {"keep": ["localhost/aged-*"]}, "dryRun": True}, 4))
    assert not again.changed and not again.appeared


def test_the_saved_policy_applies_only_once_the_wait_for_the_apiserver_is_over(tmp_path: Path) -> None:
    _holder(tmp_path).observe(_nodecleanup({"thresholds": {"highPercent": 70, "lowPercent": 60}}, 2))
    restarted = _holder(tmp_path)
    assert restarted.held.source == "saved" and restarted.held.generation == 2
    assert not restarted.acts  # a fresh policy may be one LIST away
    restarted.settle()
    assert restarted.acts and restarted.applied.thresholds.high_percent == 70


def test_a_nodecleanup_that_does_not_exist_forgets_the_saved_policy(tmp_path: Path) -> None:
    """The reproduced incident: the only policy was deleted, its NodeCleanup went, and the agent fell back to the
    CRD defaults (85/75, no keep) and removed the images the deleted policy had kept."""
    _holder(tmp_path).observe(_nodecleanup({"images": {"keep": ["localhost/aged-*"]}}))
    restarted = _holder(tmp_path)
    update = restarted.observe(None)  # LIST: not found
    assert update.changed and restarted.held.source == "none" and not restarted.acts
    assert not (tmp_path / "state" / "policy.json").exists()
    assert _holder(tmp_path).held.source == "none"  # and stays forgotten across a restart

    live = _holder(tmp_path)
    live.observe(_nodecleanup({}))
    assert live.acts
    live.observe(None)  # DELETED
    assert not live.acts and live.applied.paused


def test_an_unreadable_spec_counts_as_paused(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    holder.observe(_nodecleanup({"images": {"keep": ["a/*"]}}, 1))
    update = holder.observe(_nodecleanup({"images": {"keep": ["a/*"]}, "newerField": True}, 2))
    assert update.changed and update.error_changed
    assert holder.held.spec_error is not None and "generation 2" in holder.held.spec_error
    assert "newerField" in holder.held.spec_error and "\n" not in holder.held.spec_error
    assert not holder.acts and holder.applied.paused
    assert holder.held.rules.images.keep == ["a/*"] and holder.held.generation == 1  # shown, not applied
    # A restart that cannot reach the apiserver cannot read it either: nothing is removed.
    restarted = _holder(tmp_path)
    restarted.settle()
    assert restarted.held.source == "none" and not restarted.acts
    # A readable spec again: it applies.
    back = holder.observe(_nodecleanup({"images": {"keep": ["b/*"]}}, 3))
    assert back.error_changed and holder.acts and holder.applied.images.keep == ["b/*"]
    assert _holder(tmp_path).held.generation == 3


def test_an_unreadable_spec_of_any_shape_is_one_line_and_paused(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    for spec in ("not an object", {"nodeName": NODE, "policy": {"thresholds": {"highPercent": "x"}}}, None):
        holder.observe({"metadata": {"name": NODE, "generation": 7}, "spec": spec})
        assert holder.held.spec_error is not None and not holder.acts, spec
        restarted = _holder(tmp_path)
        restarted.settle()
        assert not restarted.acts


def test_paused_and_dry_run_in_the_policy_are_what_applies(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    holder.observe(_nodecleanup({"paused": True}))
    assert not holder.acts and holder.held.valid
    holder.observe(_nodecleanup({"paused": False, "logs": {"enabled": False}}, 2))
    assert holder.acts and not holder.applied.logs.enabled


def test_what_stops_the_next_action_of_a_run_in_progress() -> None:
    assert policy_halt(PolicyRules()) is None
    assert policy_halt(PolicyRules(paused=True)) == "the policy is paused now"
    assert policy_halt(PolicyRules(dry_run=True), logs=True) == "the policy is a dry run now"
    no_logs = PolicyRules(logs=LogsPolicy(enabled=False))
    assert policy_halt(no_logs) is None  # image actions go on
    assert policy_halt(no_logs, logs=True) == "logs are disabled by the policy now"
