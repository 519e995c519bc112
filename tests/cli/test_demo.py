"""The README's main command: `node-janitor demo` runs the whole job against its own containerd."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node_janitor.cli import main
from node_janitor.cli.demo import _demo_containerd
from node_janitor.devbed import DevbedError

pytestmark = pytest.mark.containerd


def test_demo_shows_df_dry_run_and_prune_and_reaches_the_low_watermark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "$ node-janitor df -v" in out and "SHARED SIZE" in out
    dry = out.split("--dry-run\n", 1)[1].split("$ node-janitor prune", 1)[0]
    real = out.split("$ node-janitor prune --policy demo.yaml\n", 1)[1].split("$ node-janitor df", 1)[0]
    would = re.findall(r"^Would \w+ [\w ]*?: (\S+)", dry, re.M)
    did = re.findall(r"^(?:Removed|Deleted) [\w ]*?: (\S+)", real, re.M)
    assert would and would == did  # the dry run planned exactly what the real run did
    assert "demo.local/shop/web:1.4" not in did and "demo.local/shop/migrate:7" not in did  # in use
    assert "demo.local/platform/agent:1" not in did  # kept by the policy
    before, after = map(float, re.search(r"Image file system: ([\d.]+)% -> ([\d.]+)% used", real).groups())  # type: ignore[union-attr]
    assert before > 70 >= 50 >= after


def test_the_demo_needs_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset NJ_CONTAINERD and nothing built: Debian's containerd; asked for one that is not built: the error."""
    monkeypatch.setenv("NODE_JANITOR_CACHE", str(tmp_path))
    monkeypatch.delenv("NJ_CONTAINERD", raising=False)
    assert _demo_containerd().version == "1.6"
    monkeypatch.setenv("NJ_CONTAINERD", "2.3")
    with pytest.raises(DevbedError, match=r"hack/build-containerd\.sh"):
        _demo_containerd()
