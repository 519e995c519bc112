"""CustomResourceDefinitions generated from the pydantic models.

`render_crds()` is what `node-janitor crd` prints; `crds/` in the repository holds the same documents, one
file per CRD (`write_crds`), and a test fails when the two drift apart. Regenerate them with every other derived
file (the chart's copy, deploy/) by `.venv/bin/python hack/regen.py`, or alone with

    .venv/bin/python -m node_janitor.api.crd crds/

The models' JSON schemas are turned into structural OpenAPI v3 schemas: `$defs` inlined, titles dropped,
optional fields plain (no `anyOf` with null), `additionalProperties` kept only for maps, descriptions
normalised to one line, defaults without nulls. Everything else (patterns, enums, formats, minimums, CEL
`x-kubernetes-validations`, list types) comes from the models themselves.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from node_janitor.api.meta import GROUP, VERSION, Resource
from node_janitor.api.nodecleanup import NodeCleanup
from node_janitor.api.policy import CleanupPolicy

__all__ = ["CRDS", "CrdSpec", "build_crd", "build_crds", "render_crd", "render_crds", "write_crds"]

HEADER = "# Generated from operator/node_janitor/api by `node-janitor crd`; do not edit.\n"

READY_COLUMN = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    "description": "Whether the Ready condition is True.",
}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class CrdSpec:
    """What the models do not say about a CRD: names, scope and the printer columns."""

    model: type[Resource]
    singular: str
    short_names: tuple[str, ...]
    printer_columns: tuple[Mapping[str, Any], ...]
    categories: tuple[str, ...] = ("node-janitor",)

    @property
    def plural(self) -> str:
        return self.model.plural

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


CRDS: tuple[CrdSpec, ...] = (
    CrdSpec(
        model=CleanupPolicy,
        singular="cleanuppolicy",
        short_names=("njpol",),
        printer_columns=(
            {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
            {"name": "Dry-Run", "type": "boolean", "jsonPath": ".spec.dryRun"},
            {
                "name": "Matched",
                "type": "integer",
                "jsonPath": ".status.matchedNodes",
                "description": "Nodes the policy selects.",
            },
            {
                "name": "Under-Pressure",
                "type": "integer",
                "jsonPath": ".status.nodesUnderPressure",
                "description": "Selected nodes above their high watermark or with DiskPressure.",
            },
            {
                "name": "Reclaimed",
                "type": "string",
                "jsonPath": ".status.reclaimed",
                "description": "Space reclaimed on the selected nodes by their last runs.",
            },
            READY_COLUMN,
            AGE_COLUMN,
        ),
    ),
    CrdSpec(
        model=NodeCleanup,
        singular="nodecleanup",
        short_names=("njnc",),
        printer_columns=(
            {
                "name": "Disk%",
                "type": "number",
                "jsonPath": ".status.diskPercent",
                "description": "The highest used percentage of the watched file systems.",
            },
            {"name": "Images", "type": "integer", "jsonPath": ".status.imageCount"},
            {
                "name": "Reclaimable",
                "type": "string",
                "jsonPath": ".status.reclaimable",
                "description": "Space a cleanup could free now.",
            },
            {"name": "Last Run", "type": "date", "jsonPath": ".status.lastRun.startTime"},
            {
                "name": "Reclaimed",
                "type": "string",
                "jsonPath": ".status.lastRun.reclaimed",
                "description": "Space the last run freed.",
            },
            READY_COLUMN,
            AGE_COLUMN,
        ),
    ),
)

# JSON-schema keywords a structural CRD schema may carry, as they come from pydantic.
_KEPT_KEYWORDS = frozenset(
    {
        "type", "format", "description", "default", "enum", "pattern", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
        "uniqueItems", "items", "properties", "required", "additionalProperties", "anyOf",
        "x-kubernetes-int-or-string", "x-kubernetes-validations", "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
    }
)  # fmt: skip


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _structural(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """One pydantic JSON schema node as a structural OpenAPI v3 schema node."""
    node = dict(schema)
    if "$ref" in node:  # a model: its definition, with the field's own description and default on top
        target = defs[node.pop("$ref").removeprefix("#/$defs/")]
        merged = _structural(target, defs)
        merged.update(_structural(node, defs))
        return merged
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) < len(node["anyOf"]):  # Optional[X]: just X, not nullable, not required
            del node["anyOf"]
            if node.get("default", ...) is None:
                del node["default"]
            if len(branches) == 1:
                inner = _structural(branches[0], defs)
                inner.update(_structural(node, defs))
                return inner
            node["anyOf"] = branches
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEPT_KEYWORDS:
            continue  # title, $defs, const...
        if key == "description":
            out[key] = _one_line(value)
        elif key == "default":
            out[key] = _without_nulls(value)
        elif key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "required":
            out[key] = sorted(value)
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, Mapping):  # a map (dict[str, X]); `false` (extra="forbid") is implied
                out[key] = _structural(value, defs)
        elif key == "anyOf":
            out[key] = [_structural(b, defs) for b in value]
        else:
            out[key] = value
    return out


def _root_schema(model: type[Resource]) -> dict[str, Any]:
    # Serialization mode, so that defaults go through the fields' serializers ("2m", not "PT2M"); the
    # schemas themselves are the same in both modes (WithJsonSchema fixes those of the custom types).
    full = model.model_json_schema(by_alias=True, mode="serialization")
    defs = full.get("$defs", {})
    properties: dict[str, Any] = {}
    for name, sub in full["properties"].items():
        if name in ("apiVersion", "kind"):
            properties[name] = {"type": "string", "description": _one_line(sub["description"])}
        elif name == "metadata":
            properties[name] = {"type": "object"}  # the apiserver validates metadata itself
        else:
            properties[name] = _structural(sub, defs)
    root: dict[str, Any] = {
        "type": "object",
        "description": _one_line(full["description"]),
        "properties": properties,
    }
    required = sorted(set(full.get("required", ())) - {"apiVersion", "kind", "metadata"})
    if required:
        root["required"] = required
    if "x-kubernetes-validations" in full:
        root["x-kubernetes-validations"] = full["x-kubernetes-validations"]
    return root


def build_crd(spec: CrdSpec) -> dict[str, Any]:
    """The CustomResourceDefinition of one resource, as a dict."""
    model = spec.model
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": spec.name},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": model.kind_name,
                "listKind": f"{model.kind_name}List",
                "plural": spec.plural,
                "singular": spec.singular,
                "shortNames": list(spec.short_names),
                "categories": list(spec.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in spec.printer_columns],
                    "schema": {"openAPIV3Schema": _root_schema(model)},
                }
            ],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    """Every CRD, as dicts."""
    return [build_crd(spec) for spec in CRDS]


def _dump(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=True, allow_unicode=True, width=120, default_flow_style=False)


def render_crd(spec: CrdSpec) -> str:
    """One CRD as a YAML document (what `crds/<file_name>` holds)."""
    return HEADER + _dump(build_crd(spec))


def render_crds() -> str:
    """Every CRD as one multi-document YAML stream (what `node-janitor crd` prints)."""
    return "---\n".join(render_crd(spec) for spec in CRDS)


def write_crds(directory: Path) -> list[Path]:
    """Writes one file per CRD into `directory` and returns their paths (only files that changed are
    rewritten)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in CRDS:
        path = directory / spec.file_name
        text = render_crd(spec)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_crd_files(directory: Path) -> list[str]:
    """The CRD files in `directory` that are missing or differ from what the models generate, and any
    other `*.yaml` file there that no model generates."""
    expected = {spec.file_name: render_crd(spec) for spec in CRDS}
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]
    stale += sorted(p.name for p in directory.glob("*.yaml") if p.name not in expected)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m node_janitor.api.crd",
        description="Print the CRDs, or write them into DIR (one file each); --check only compares.",
    )
    parser.add_argument("directory", nargs="?", type=Path, help="write the CRD files here (e.g. crds/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if DIR differs from the models")
    args = parser.parse_args(argv)
    if args.directory is None:
        sys.stdout.write(render_crds())
        return 0
    if args.check:
        stale = stale_crd_files(args.directory)
        for name in stale:
            print(f"{args.directory / name}: out of date", file=sys.stderr)
        return 1 if stale else 0
    for path in write_crds(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
