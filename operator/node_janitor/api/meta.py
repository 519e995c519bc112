"""What every object shares: metadata, conditions, label selectors, and loading manifests."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import ConfigDict, Field, ValidationError, model_validator

from node_janitor.api.fields import CEL_VALIDATIONS, ApiModel, NonEmptyString

if TYPE_CHECKING:
    import yaml

__all__ = [
    "GROUP",
    "VERSION",
    "Condition",
    "Conditions",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ManifestError",
    "ObjectMeta",
    "Resource",
    "format_validation_error",
    "list_map",
]

GROUP: Final = "nodejanitor.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "nodejanitor.io/v1alpha1"

# Kubernetes' own timestamps are RFC 3339 strings on the wire; accept them despite the strict models.
Timestamp = Annotated[datetime, Field(strict=False)]


class ManifestError(ValueError):
    """A manifest that is not a valid object; `errors` holds one "field.path: message" line per problem."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "invalid manifest:\n  " + "\n  ".join(errors))


def format_validation_error(error: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, each starting with the camelCase field path (`spec.images.keep[0]: ...`)."""
    lines = []
    for item in error.errors():
        path = prefix
        for part in item["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{part}" if path else str(part)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{path or '(root)'}: {message}")
    return lines


MAX_MANIFEST_BYTES = 2**20  # etcd keeps objects below 1.5 MiB; a policy is a few KiB
MAX_YAML_NODES = 100_000  # nodes of the document with every alias expanded (a "billion laughs" has 10^9)
MAX_YAML_DEPTH = 64


@functools.cache
def _manifest_loader() -> type[yaml.SafeLoader]:
    """The loader class, made on first use: PyYAML is imported only by what reads YAML (the node agent never
    does: it gets JSON from the apiserver)."""
    import yaml

    class ManifestLoader(yaml.SafeLoader):
        """Safe YAML that refuses duplicate keys (kubectl does too), deep nesting and alias bombs before building
        anything: the composed tree is measured with aliases expanded (memoised, so measuring is linear)."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return ManifestLoader


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes `root` has with its aliases expanded; ManifestError past the limits (iterative: a deep
    document cannot exhaust the stack here)."""
    import yaml

    sizes: dict[int, int] = {}
    depth_of: dict[int, int] = {id(root): 1}
    started: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if not done and id(node) in started:  # reached again from inside itself (DFS): `&a [*a]`
            raise ValueError("an alias refers to a node that contains it")
        started.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if done:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise ValueError(f"more than {MAX_YAML_NODES} nodes once aliases are expanded")
            continue
        depth = depth_of[id(node)]
        if depth > MAX_YAML_DEPTH:
            raise ValueError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        stack.append((node, True))
        for child in children:
            if id(child) not in sizes:
                depth_of[id(child)] = max(depth_of.get(id(child), 0), depth + 1)
                stack.append((child, False))
    return sizes[id(root)]


def load_manifest_yaml(text: str, source: str = "") -> Any:
    """One YAML (or JSON) document, safely: ManifestError for bad YAML, duplicate keys, more than one document,
    nesting deeper than MAX_YAML_DEPTH or more than MAX_YAML_NODES nodes once aliases are expanded."""
    import yaml

    loader = _manifest_loader()(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise ValueError(f"nested deeper than {MAX_YAML_DEPTH} levels") from None
        if root is None:
            return None
        _expanded_size(root)
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ManifestError([f"(root): not YAML: {' '.join(str(exc).split())}"], source) from None
    except ValueError as exc:
        raise ManifestError([f"(root): refused: {exc}"], source) from None
    finally:
        loader.dispose()


def _plain(value: Any) -> Any:
    """Plain dicts and lists all the way down (the models are strict; kopf hands over mapping views)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class ObjectMeta(ApiModel):
    """Standard object metadata. The apiserver owns most of it, so fields it adds are kept, not refused."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    generate_name: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    finalizers: list[str] = []
    owner_references: list[dict[str, Any]] = []


class Condition(ApiModel):
    """An observation of one aspect of the object's state (Kubernetes API conventions)."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Type of condition in CamelCase, e.g. Ready."""
    status: Literal["True", "False", "Unknown"]
    """Status of the condition: True, False or Unknown."""
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")]
    """Machine-readable CamelCase reason for the condition's last transition."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """Human-readable details about the transition."""
    last_transition_time: Timestamp
    """When the condition last changed from one status to another."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation the condition was set from."""


def list_map(*keys: str) -> dict[str, Any]:
    """Schema markers for a list of objects keyed by `keys` (merged by key in server-side apply)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


Conditions = Annotated[list[Condition], Field(json_schema_extra=list_map("type"))]
"""A status's conditions, one per type."""


class LabelSelectorRequirement(ApiModel):
    """A requirement on one label: key, operator and values."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL_VALIDATIONS: [
                {
                    "rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                    "message": "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                    "fieldPath": ".values",
                }
            ]
        }
    )

    key: NonEmptyString
    """The label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values: In, NotIn, Exists or DoesNotExist."""
    values: list[str] = []
    """The label values; non-empty for In and NotIn, empty for Exists and DoesNotExist."""

    @model_validator(mode="after")
    def _values_match_operator(self) -> Self:
        if (self.operator in ("In", "NotIn")) != bool(self.values):
            raise ValueError("values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


class LabelSelector(ApiModel):
    """A Kubernetes label selector; the requirements are ANDed, and an empty selector selects everything."""

    match_labels: dict[str, str] = {}
    """Labels that must all be present with these values."""
    match_expressions: list[LabelSelectorRequirement] = []
    """Requirements that must all hold."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels is selected."""
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


class Resource(ApiModel):
    """A top-level object: apiVersion, kind, metadata, spec, status. Subclasses declare spec and status."""

    kind_name: ClassVar[str]
    plural: ClassVar[str]

    metadata: ObjectMeta = ObjectMeta()
    """Standard object metadata."""

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], source: str = "") -> Self:
        """Validates a manifest (a mapping as `kubectl apply` takes it, or a kopf body); raises ManifestError
        naming each field."""
        if not isinstance(manifest, Mapping):
            raise ManifestError([f"(root): expected a mapping, got {type(manifest).__name__}"], source)
        try:
            return cls.model_validate(_plain(manifest))
        except ValidationError as exc:
            raise ManifestError(format_validation_error(exc), source) from None

    @classmethod
    def from_yaml(cls, text: str, source: str = "") -> Self:
        """Validates one YAML (or JSON) manifest; raises ManifestError."""
        return cls.from_manifest(load_manifest_yaml(text, source), source)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Reads and validates a manifest file; raises ManifestError (or OSError)."""
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError([f"(root): larger than {MAX_MANIFEST_BYTES // 2**20} MiB"], str(path))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError([f"(root): not UTF-8 text (byte {exc.start})"], str(path)) from None
        return cls.from_yaml(text, str(path))

    def to_manifest(self) -> dict[str, Any]:
        """The object as the apiserver takes it: camelCase, durations and sizes as strings, no nulls, no
        empty metadata maps or lists."""
        dumped = self.model_dump(mode="json", exclude_none=True)
        metadata = {k: v for k, v in dumped.pop("metadata").items() if v not in ({}, [])}
        return {"apiVersion": dumped.pop("apiVersion"), "kind": dumped.pop("kind"), "metadata": metadata, **dumped}
