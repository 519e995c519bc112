"""Every derived file is fresh: the CRDs (crds/ and the chart's copy), the protobuf stubs and deploy/ are exactly
what `hack/regen.py` generates from the committed sources (the models, the .proto files, the chart). When this
fails, run `.venv/bin/python hack/regen.py` and commit the result."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
REGEN = REPO / "hack" / "regen.py"


def load_regen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("regen", REGEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regen = load_regen()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("regen") / "tree"
    regen.generate(out)
    yield out


def test_every_derived_file_is_fresh(generated: Path) -> None:
    stale = [str(p) for p in regen.stale_files(generated)]
    assert not stale, f"stale derived files {stale}: run `.venv/bin/python hack/regen.py` and commit the result"


def test_the_check_command_agrees() -> None:
    proc = subprocess.run([sys.executable, str(REGEN), "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "derived",
    [
        "crds/nodejanitor.io_cleanuppolicies.yaml",
        "charts/node-janitor/templates/crds/nodejanitor.io_nodecleanups.yaml",
        "charts/node-janitor/README.md",
        "operator/node_janitor/runtime/gen/runtime/v1/api_pb2.py",
        "deploy/node-janitor.yaml",
        "deploy/crds/kopf.dev_peerings.yaml",
    ],
)
def test_a_changed_missing_or_extra_file_of_each_kind_is_named(generated: Path, derived: str) -> None:
    """The comparison itself, on a copy of the fresh tree: an edit, a removal and a leftover are each stale."""
    rel = Path(derived)
    path = generated / rel
    original = path.read_bytes()
    leftover = path.with_name("leftover" + path.suffix)
    try:
        path.write_bytes(original + b"\n# edited\n")
        assert regen.stale_files(generated) == [rel]
        path.unlink()
        assert regen.stale_files(generated) == [rel]
        path.write_bytes(original)
        leftover.write_text("{}\n")
        assert regen.stale_files(generated) == [leftover.relative_to(generated)]
    finally:
        path.write_bytes(original)
        leftover.unlink(missing_ok=True)
    assert regen.stale_files(generated) == []
