"""One home for the node's conventional paths and names (`node_janitor.defaults`): what the CLI, the engine and
the chart default to agrees with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from node_janitor import defaults
from node_janitor.api.node_paths import PROTECTED_TREES
from node_janitor.cli.main import build_parser
from node_janitor.node.collect import CollectOptions

CHART_VALUES = Path(__file__).resolve().parents[1] / "charts" / "node-janitor" / "values.yaml"


def test_chart_values_repeat_the_defaults() -> None:
    agent: dict[str, Any] = yaml.safe_load(CHART_VALUES.read_text())["agent"]
    assert agent["containerd"]["socket"] == defaults.DEFAULT_CONTAINERD_ADDRESS
    assert agent["containerd"]["root"] == str(defaults.CONTAINERD_ROOT)
    assert agent["containerd"]["namespace"] == defaults.DEFAULT_NAMESPACE
    assert agent["podLogDir"] == str(defaults.DEFAULT_POD_LOG_DIR)
    assert agent["stateDir"] == str(defaults.DEFAULT_STATE_DIR)


def test_cli_flags_default_to_them() -> None:
    args = build_parser().parse_args(["agent"])
    assert args.containerd_socket == defaults.DEFAULT_CONTAINERD_ADDRESS
    assert args.containerd_namespace == defaults.DEFAULT_NAMESPACE
    assert Path(args.pod_log_dir) == defaults.DEFAULT_POD_LOG_DIR
    assert Path(args.state_dir) == defaults.DEFAULT_STATE_DIR


def test_engine_and_models_use_them() -> None:
    options = CollectOptions()
    assert (options.namespace, options.snapshotter, options.pod_log_dir) == (
        defaults.DEFAULT_NAMESPACE,
        defaults.DEFAULT_SNAPSHOTTER,
        defaults.DEFAULT_POD_LOG_DIR,
    )
    for tree in (defaults.CONTAINERD_ROOT, defaults.CONTAINERD_STATE, defaults.DEFAULT_KUBELET_ROOT):
        assert str(tree) in PROTECTED_TREES
    assert str(defaults.DEFAULT_POD_LOG_DIR) in PROTECTED_TREES
