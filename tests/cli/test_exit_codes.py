"""The documented exit codes (docs/cli.md): 2 usage or bad input, 3 runtime unreachable, 4 API unreachable, each
from a real cause: a dead socket, an apiserver address nothing listens on (a closed loopback port)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from node_janitor.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens there


def _kubeconfig(path: Path, **contexts: int) -> Path:
    """A kubeconfig with one context per name, each to its own port on loopback (the first is current)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": f"https://127.0.0.1:{p}", "insecure-skip-tls-verify": True}}
                     for n, p in contexts.items()],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in contexts],
        "current-context": next(iter(contexts)),
    }))  # fmt: skip
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node_janitor", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("command", [["status"], ["run", "n1"], ["run", "-l", "pool=a"], ["run", "n1", "--wait"]])
def test_an_unreachable_apiserver_is_exit_4_in_one_line(tmp_path: Path, command: list[str]) -> None:
    port = _closed_port()
    result = _cli(*command, "--kubeconfig", str(_kubeconfig(tmp_path / "kc", dead=port)))
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("node-janitor: error: cannot "), lines
    assert f"the Kubernetes API at https://127.0.0.1:{port} is unreachable" in lines[0]
    assert "Connection refused" in lines[0] and "Traceback" not in result.stderr


def test_context_picks_the_kubeconfig_context(tmp_path: Path) -> None:
    current, other = _closed_port(), _closed_port()
    kubeconfig = str(_kubeconfig(tmp_path / "kc", first=current, other=other))
    for command in (["status"], ["run", "n1"]):
        default = _cli(*command, "--kubeconfig", kubeconfig)
        chosen = _cli(*command, "--kubeconfig", kubeconfig, "--context", "other")
        assert f"127.0.0.1:{current} " in default.stderr and default.returncode == 4
        assert f"127.0.0.1:{other} " in chosen.stderr and chosen.returncode == 4
        unknown = _cli(*command, "--kubeconfig", kubeconfig, "--context", "nope")
        assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_the_agent_takes_context_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = str(_kubeconfig(tmp_path / "kc", first=_closed_port()))
    args = ["agent", "--node-name", "n", "--state-dir", str(tmp_path / "state"), "--kubeconfig", kubeconfig]
    assert main([*args, "--context", "nope"]) == 2
    assert "context 'nope' not found" in capsys.readouterr().err


def test_no_kubeconfig_is_bad_input(tmp_path: Path) -> None:
    result = _cli("status", "--kubeconfig", str(tmp_path / "missing"))
    assert result.returncode == 2 and "no Kubernetes configuration" in result.stderr


def test_run_takes_a_node_or_a_selector(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert main(["run", "n1", "-l", "a=b"]) == 2
    assert capsys.readouterr().err.count("give a NODE or -l SELECTOR") == 2
    with pytest.raises(SystemExit) as exit_:
        main(["run", "n1", "-o", "xml"])
    assert exit_.value.code == 2


def test_a_dead_runtime_socket_is_exit_3(tmp_path: Path) -> None:
    for command in (["df"], ["prune", "--dry-run"], ["prune", "-f"]):
        result = _cli(*command, "--containerd-socket", str(tmp_path / "none.sock"))
        assert result.returncode == 3, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"node-janitor: error: CRI runtime socket {tmp_path / 'none.sock'} does not exist"
        ]


def test_namespace_is_a_deprecated_alias_of_containerd_namespace(tmp_path: Path) -> None:
    from node_janitor.cli.main import build_parser

    parser = build_parser()
    for command in (["df"], ["prune"], ["agent"]):
        assert parser.parse_args([*command, "--containerd-namespace", "moby"]).containerd_namespace == "moby"
    result = _cli("df", "--namespace", "moby", "--containerd-socket", str(tmp_path / "none.sock"))
    assert result.returncode == 3
    assert result.stderr.splitlines()[0] == (
        "node-janitor: warning: --namespace is deprecated: it is containerd's namespace, not a Kubernetes one; "
        "use --containerd-namespace"
    )
    assert "--namespace" not in _cli("df", "--help").stdout.replace("--containerd-namespace", "")


def test_an_operator_that_never_reaches_the_apiserver_is_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("node_janitor.controller.app.APISERVER_RETRY", ())  # no minute of retries here
    port = _closed_port()
    kubeconfig = str(_kubeconfig(tmp_path / "kc", dead=port))
    metrics = str(_closed_port())
    args = ["operator", "--kubeconfig", kubeconfig, "--standalone", "--metrics-port", metrics,
            "--metrics-bind-address", "127.0.0.1"]  # fmt: skip
    assert main(args) == 4
    assert f"the operator cannot start: the apiserver at https://127.0.0.1:{port} does not answer" in (
        capsys.readouterr().err
    )
