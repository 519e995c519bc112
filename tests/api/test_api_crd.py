"""The CRDs generated from the models: committed copies in crds/ up to date, structural, and carrying the
models' defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.api import CleanupPolicySpec, LogsPolicy, Thresholds
from node_janitor.api.crd import CRDS, build_crds, main, render_crds

REPO = Path(__file__).resolve().parents[2]
# That crds/ is what the models generate: tests/test_derived_files.py (hack/regen.py --check).


def test_render_is_deterministic_and_parses() -> None:
    text = render_crds()
    assert text == render_crds()
    documents = list(yaml.safe_load_all(text))
    assert [d["metadata"]["name"] for d in documents] == [
        "cleanuppolicies.nodejanitor.io",
        "nodecleanups.nodejanitor.io",
    ]
    assert documents == build_crds()


def test_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", str(tmp_path)]) == 1
    assert main([str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    (tmp_path / CRDS[0].file_name).write_text("edited\n")
    (tmp_path / "leftover.yaml").write_text("{}\n")
    assert main(["--check", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err


def _schemas(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under an openAPIV3Schema, with its path."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _schemas(sub, f"{path}.{name}")
    if "items" in node:
        yield from _schemas(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schemas(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd", build_crds(), ids=lambda c: c["metadata"]["name"])
def test_schemas_are_structural(crd: dict[str, Any]) -> None:
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    root = version["schema"]["openAPIV3Schema"]
    for path, node in _schemas(root):
        assert not {"$ref", "$defs", "title", "const", "nullable"} & node.keys(), path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        assert node.get("additionalProperties", {}) is not False, path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "anyOf" not in node and node.get("type") in {"object", "array", "string", "integer", "number",
                                                                 "boolean"}, path  # fmt: skip
        if path not in ("", ".metadata"):
            assert node.get("description") or path.endswith(("[]", "{}")), f"{path} has no description"
        assert "default" not in node or "null" not in yaml.safe_dump(node["default"]), path
        for required in node.get("required", []):
            assert required in node["properties"], path
    assert root["properties"]["metadata"] == {"type": "object"}


def _spec_schema(kind: str) -> dict[str, Any]:
    crd = next(c for c in build_crds() if c["spec"]["names"]["kind"] == kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_defaults_are_the_models() -> None:
    spec = _spec_schema("CleanupPolicy")
    assert spec["default"] == CleanupPolicySpec().model_dump(mode="json", exclude_none=True)
    # an object with a CEL rule gets its default spelled out (`{}` would fail the rule at CRD creation)
    thresholds = spec["properties"]["thresholds"]
    assert thresholds["default"] == Thresholds().model_dump(mode="json")
    assert thresholds["default"] == {"highPercent": 85, "lowPercent": 75, "inodesHighPercent": 90,
                                     "inodesLowPercent": 80, "evictionPercent": 85, "predict": True,
                                     "predictHorizon": "30s"}  # fmt: skip
    logs = spec["properties"]["logs"]["properties"]
    assert (logs["maxSize"]["default"], logs["checkInterval"]["default"]) == ("10Mi", "5s")
    assert spec["properties"]["logs"]["default"] == LogsPolicy().model_dump(mode="json", exclude_none=True)
    assert spec["properties"]["images"]["properties"]["minAge"]["default"] == "2m"


def test_validations_are_in_the_schema() -> None:
    spec = _spec_schema("CleanupPolicy")
    rules = [v["rule"] for v in spec["properties"]["thresholds"]["x-kubernetes-validations"]]
    assert rules == ["self.lowPercent < self.highPercent", "self.inodesLowPercent < self.inodesHighPercent"]
    images = spec["properties"]["images"]["properties"]
    assert images["keep"]["items"]["minLength"] == 1
    assert images["minAge"]["pattern"].startswith("^")
    operator = spec["properties"]["nodeSelector"]["properties"]["matchExpressions"]["items"]["properties"]["operator"]
    assert operator["enum"] == ["In", "NotIn", "Exists", "DoesNotExist"]
    status = _spec_schema("NodeCleanup")["properties"]["policy"]["properties"]
    assert "nodeSelector" not in status and "priority" not in status


def test_names_and_columns() -> None:
    policy, node = build_crds()
    assert policy["spec"]["scope"] == node["spec"]["scope"] == "Cluster"
    assert policy["spec"]["names"]["shortNames"] == ["njpol"] and node["spec"]["names"]["shortNames"] == ["njnc"]
    assert policy["spec"]["names"]["categories"] == node["spec"]["names"]["categories"] == ["node-janitor"]

    def columns(crd: dict[str, Any]) -> list[str]:
        return [c["name"].upper() for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert columns(policy) == ["PRIORITY", "DRY-RUN", "MATCHED", "UNDER-PRESSURE", "RECLAIMED", "READY", "AGE"]
    assert columns(node) == ["DISK%", "IMAGES", "RECLAIMABLE", "LAST RUN", "RECLAIMED", "READY", "AGE"]
