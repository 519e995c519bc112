"""The committed gRPC stubs are exactly what hack/gen-protos.py makes from the committed .proto files."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "operator" / "node_janitor" / "runtime" / "gen"


def _tree(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    proc = subprocess.run(
        [sys.executable, str(REPO / "hack" / "gen-protos.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    fresh, committed = _tree(out), _tree(COMMITTED)
    assert sorted(fresh) == sorted(committed), "stub files added or removed: run hack/gen-protos.py"
    stale = [name for name in sorted(fresh) if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert not stale, f"stale generated stubs {stale}: run hack/gen-protos.py"


def test_generated_code_imports_as_a_subpackage() -> None:
    from node_janitor.runtime.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc
    from node_janitor.runtime.gen.runtime.v1 import api_pb2

    assert images_pb2.Image.__module__ == "node_janitor.runtime.gen.containerd.services.images.v1.images_pb2"
    assert images_pb2.Image.DESCRIPTOR.fields_by_name["target"].message_type.full_name == "containerd.types.Descriptor"
    assert hasattr(images_pb2_grpc, "ImagesStub")
    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
