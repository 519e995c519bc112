"""Policy files that are not what they should be: one line, exit code 2, fast and small; never a crash."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from node_janitor.api import CleanupPolicy, ManifestError
from node_janitor.cli import main

HEAD = "apiVersion: nodejanitor.io/v1alpha1\nkind: CleanupPolicy\nmetadata: {name: x}\n"


def _refused(tmp_path: Path, data: bytes, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "policy.yaml"
    path.write_bytes(data)
    # Validated before the runtime is contacted: the socket does not exist.
    assert main(["prune", "--policy", str(path), "--containerd-socket", str(tmp_path / "none.sock")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[0].startswith("node-janitor: error:") and len(err) <= 2, err
    return "\n".join(err)


def test_a_policy_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(tmp_path, HEAD.encode() + b"spec:\n  images: {keep: ['caf\xe9']}\n", capsys)
    assert "not UTF-8" in err


def test_deeply_nested_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for doc in ("[" * 50_000, "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 1000))):
        err = _refused(tmp_path, doc.encode(), capsys)
        assert "nested deeper" in err or "not YAML" in err


def test_an_alias_bomb_fails_fast_and_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    bomb = (HEAD + "\n".join(lines) + "\nspec:\n  images:\n    keep: *i\n").encode()
    assert len(bomb) < 1100
    tracemalloc.start()
    started = time.monotonic()
    err = _refused(tmp_path, bomb, capsys)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "aliases are expanded" in err
    assert elapsed < 2 and peak < 20 * 2**20, (elapsed, peak)


def test_a_recursive_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(tmp_path, (HEAD + "spec: &s {images: *s}\n").encode(), capsys)
    assert "alias" in err


def test_duplicate_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = HEAD + "spec:\n  paused: true\n  images: {minAge: 1h}\n  paused: false\n"
    err = _refused(tmp_path, doc.encode(), capsys)
    assert "duplicate key 'paused'" in err


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(tmp_path, HEAD.encode() + b"#" * (3 * 2**20), capsys)
    assert "larger than" in err


def test_aliases_within_limits_still_work() -> None:
    doc = HEAD + "spec:\n  images:\n    keep: &k ['registry.k8s.io/*']\n  logs: {maxFiles: 3}\n"
    assert CleanupPolicy.from_yaml(doc).spec.images.keep == ["registry.k8s.io/*"]
    with pytest.raises(ManifestError):
        CleanupPolicy.from_yaml(HEAD + "---\n" + HEAD)  # two documents
