"""`node-janitor agent`'s bad input: a one-line error and exit code 2, before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from node_janitor.cli import main
from support.kube import ControlPlane


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--node-name is required (or set NODE_NAME)"),
        (["--node-name", "n", "--monitor-interval", "soon"], "--monitor-interval: invalid duration 'soon'"),
        (["--node-name", "n", "--heartbeat-interval", "0s"], "--heartbeat-interval must be greater than 0"),
        (["--node-name", "n", "--metrics-port", "70000"], "--metrics-port 70000: not a port number"),
        (["--node-name", "n", "--kubeconfig", "/nonexistent/kubeconfig"], "cannot load Kubernetes credentials"),
    ],
)
def test_bad_agent_flags_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    assert main(["agent", "--state-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("node-janitor: error: ") and message in err and err.count("\n") == 1, err


def test_the_node_name_defaults_to_node_name_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NODE_NAME", "from-env")
    assert main(["agent", "--state-dir", str(tmp_path), "--kubeconfig", "/nonexistent/kubeconfig"]) == 2
    assert "--node-name is required" not in capsys.readouterr().err  # it got past the name, to the credentials


def test_a_metrics_port_in_use_is_a_one_line_error(
    kube: ControlPlane, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["agent", "--node-name", "n", "--kubeconfig", str(kube.kubeconfig), "--state-dir", str(tmp_path)]
        assert main([*args, "--metrics-port", str(port)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"node-janitor: error: cannot serve /metrics on 0.0.0.0:{port}"), err


def test_an_unusable_state_directory_is_a_one_line_error(
    kube: ControlPlane, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    state = tmp_path / "file" / "state"
    args = ["agent", "--node-name", "n", "--kubeconfig", str(kube.kubeconfig), "--state-dir", str(state)]
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        f"node-janitor: error: the agent cannot start: the state directory {state} is not usable: Not a directory "
        "(--state-dir)"
    ), err


def test_missing_rights_are_a_one_line_error_naming_them(
    kube: ControlPlane, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kube.kubectl("create", "serviceaccount", "nj-agent-nobody", "-n", "default")
    try:
        token = kube.kubectl("create", "token", "nj-agent-nobody", "-n", "default").stdout.strip()
        nobody = kube.token_kubeconfig(token, "nj-agent-nobody")
        assert main(["agent", "--node-name", "n", "--kubeconfig", str(nobody), "--state-dir", str(tmp_path)]) == 2
    finally:
        kube.kubectl("delete", "serviceaccount", "nj-agent-nobody", "-n", "default")
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "node-janitor: error: the agent cannot start: RBAC does not let the agent get nodes, list nodes, "
        "watch nodes, list nodecleanups.nodejanitor.io, watch nodecleanups.nodejanitor.io, "
        "patch nodecleanups/status.nodejanitor.io, create events, list pods, watch pods: bind it the chart's agent "
        "ClusterRole"
    ), err
