"""`kubectl node-janitor`: the console script kubectl finds and the krew manifest that installs it agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from node_janitor.cli import plugin_main

REPO = Path(__file__).resolve().parents[2]


def _render(template: str, tag: str) -> str:
    """krew-release-bot's two template functions, as the release fills them."""
    text = re.sub(r'\{\{\s*addURIAndSha "([^"]+)" \.TagName\s*\}\}',
                  lambda m: f"uri: {m.group(1)}\n      sha256: {'ab' * 32}", template)  # fmt: skip
    return text.replace("{{ .TagName }}", tag)


def test_the_krew_manifest_names_the_console_script() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["kubectl-node_janitor"] == "node_janitor.cli:plugin_main"
    manifest = yaml.safe_load(_render((REPO / "plugins" / "node-janitor.yaml").read_text(), "v" + project["version"]))
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "node-janitor"
    assert manifest["spec"]["version"] == "v" + project["version"]
    for platform in manifest["spec"]["platforms"]:
        assert platform["bin"] == "kubectl-node_janitor"  # kubectl runs `kubectl-node_janitor` for node-janitor
        assert platform["uri"].endswith(f"/v{project['version']}/kubectl-node_janitor.tar.gz")
        assert len(platform["sha256"]) == 64


def test_the_plugin_calls_itself_kubectl_node_janitor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["kubectl-node_janitor", "status", "--help"])
    with pytest.raises(SystemExit) as exit_:
        plugin_main()
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: kubectl node-janitor status")
