"""A node's effective policy, its protected images and the NodeCleanup the operator applies (pure).

The rule (also in the models' descriptions, i.e. `kubectl explain`): among the valid CleanupPolicies whose
nodeSelector matches the node's labels, the highest priority (ties: the name first in alphabetical order)
gives the whole policy; `images.keep` is the union of every matching policy's patterns (the winner's first,
then in the same order, each once), `images.keepWorkloadImages` is set if any matching policy sets it, and
`paused` is set if any matching policy pauses: a protection never disappears because a policy of higher
priority exists. `spec.sources` lists every matching policy, the winner first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from node_janitor.api import API_VERSION, NodeCleanupSpec, PolicySource
from node_janitor.api.policy import PolicyRules
from node_janitor.controller.views import CleanupView, NodeView, PolicyView

__all__ = [
    "FIELD_MANAGER",
    "MANAGED_BY",
    "Effective",
    "build_node_cleanup",
    "build_node_cleanup_spec",
    "compute_effective_policy",
    "compute_foreign_fields",
    "compute_matching_policies",
    "compute_protected_images",
    "is_in_sync",
]

FIELD_MANAGER: Final = "node-janitor-operator"
"""The operator's field manager (server-side apply); `node-janitor run` uses its own."""
MANAGED_BY: Final = ("app.kubernetes.io/managed-by", "node-janitor-operator")
"""The label on every NodeCleanup the operator writes."""


@dataclass(frozen=True)
class Effective:
    rules: PolicyRules
    sources: tuple[PolicySource, ...]


def compute_matching_policies(policies: Iterable[PolicyView], labels: Mapping[str, str]) -> list[PolicyView]:
    """The valid policies selecting a node with these labels, the winner first."""
    return sorted((p for p in policies if p.selects(labels)), key=lambda p: (-p.priority, p.name))


def compute_effective_policy(policies: Iterable[PolicyView], labels: Mapping[str, str]) -> Effective | None:
    """The node's effective policy (module docstring), or None when no policy selects it."""
    matching = compute_matching_policies(policies, labels)
    if not matching:
        return None
    rules = [p.rules for p in matching if p.rules is not None]
    winner = rules[0]
    keep = list(dict.fromkeys(pattern for r in rules for pattern in r.images.keep))
    effective = winner.model_copy(
        update={
            "paused": any(r.paused for r in rules),
            "images": winner.images.model_copy(
                update={"keep": keep, "keep_workload_images": any(r.images.keep_workload_images for r in rules)}
            ),
        }
    )
    sources = tuple(PolicySource(name=p.name, generation=p.generation, priority=p.priority) for p in matching)
    return Effective(effective, sources)


def compute_protected_images(
    node_refs: Iterable[str], is_workload_image: Callable[[str], bool], keep_workload_images: bool
) -> list[str]:
    """The workload images this node holds (`node_refs` normalised, as in CleanupView.image_refs), sorted."""
    if not keep_workload_images:
        return []
    return sorted(ref for ref in node_refs if is_workload_image(ref))


def build_node_cleanup_spec(node_name: str, effective: Effective, protected: list[str]) -> NodeCleanupSpec:
    return NodeCleanupSpec(
        node_name=node_name, policy=effective.rules, sources=list(effective.sources), protected_images=protected
    )


def build_node_cleanup(node: NodeView, spec: NodeCleanupSpec) -> dict[str, Any]:
    """The server-side apply body: every field the operator owns (never spec.runRequest, never status)."""
    key, value = MANAGED_BY
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeCleanup",
        "metadata": {
            "name": node.name,
            "labels": {key: value},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid, "controller": True}
            ],
        },
        "spec": spec.model_dump(mode="json", exclude_none=True, exclude={"run_request"}),
    }


def compute_foreign_fields(spec: NodeCleanupSpec, current: NodeCleanupSpec) -> list[str]:
    """The fields of the stored spec that the operator's leaves unset (JSON pointers, e.g.
    /spec/policy/logs/nodeBudget): someone else set them. Server-side apply never removes a field another manager
    owns, and no applier can own an unset field (KEP-5051), so an injected `logs.nodeBudget`,
    `images.maxUnusedAge` or `containers.removeExitedAfter` (optional, unset by default) would survive every apply
    of ours: the operator removes them with a JSON patch before it applies. Fields the operator's spec sets need
    nothing more: its forced apply overwrites them and takes them over (lists are atomic). runRequest is not
    the operator's."""
    desired = spec.model_dump(mode="json", exclude_none=True, exclude={"run_request"})
    present = current.model_dump(mode="json", exclude_none=True, exclude={"run_request"})
    return _extra_fields(desired, present, "/spec")


def _extra_fields(desired: dict[str, Any], present: dict[str, Any], at: str) -> list[str]:
    extra = []
    for key, value in present.items():
        pointer = f"{at}/{key.replace('~', '~0').replace('/', '~1')}"
        if key not in desired:
            extra.append(pointer)
        elif isinstance(desired[key], dict) and isinstance(value, dict):
            extra.extend(_extra_fields(desired[key], value, pointer))
    return extra


def is_in_sync(current: CleanupView | None, node: NodeView, spec: NodeCleanupSpec) -> bool:
    """Whether the stored NodeCleanup already is what the operator would apply (models compare, so the
    apiserver's defaults and spellings, e.g. 2m and 120s, make no difference). runRequest is not ours."""
    if current is None or current.spec is None:
        return False
    key, value = MANAGED_BY
    return (
        current.spec.model_copy(update={"run_request": None}) == spec
        and current.owner_uids == (node.uid,)
        and current.labels.get(key) == value
    )
