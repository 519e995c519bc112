"""What the operator keeps of each watched object: small immutable views built from raw bodies (pure).

kopf indexes hold these views (not the bodies), so the operator's memory is what it needs: a Node's
labels and DiskPressure, a policy's parsed spec, a NodeCleanup's spec and report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from node_janitor.api import CleanupPolicy, CleanupPolicyStatus, ManifestError, NodeCleanupSpec, NodeCleanupStatus
from node_janitor.api.meta import LabelSelector, _plain
from node_janitor.api.packed_refs import PackedRefsError, unpack_refs
from node_janitor.api.policy import PolicyRules
from node_janitor.api.refs import normalize_all

__all__ = ["CleanupView", "NodeView", "PolicyView", "build_cleanup_view", "build_node_view", "build_policy_view"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeView:
    name: str
    uid: str
    labels: Mapping[str, str]
    disk_pressure: bool


@dataclass(frozen=True)
class PolicyView:
    name: str
    uid: str
    generation: int
    priority: int = 0
    selector: LabelSelector | None = None
    """None when the policy is invalid (it then selects nothing)."""
    rules: PolicyRules | None = None
    error: str | None = None
    """Why the stored object does not validate against the models (version skew, hand-made CRD)."""
    status: CleanupPolicyStatus | None = None

    def selects(self, labels: Mapping[str, str]) -> bool:
        return self.selector is not None and self.selector.matches(labels)


@dataclass(frozen=True)
class CleanupView:
    name: str
    uid: str
    resource_version: str
    created: datetime | None
    owner_uids: tuple[str, ...]
    labels: Mapping[str, str]
    spec: NodeCleanupSpec | None
    """None when the stored spec does not validate (the operator then rewrites it)."""
    status: NodeCleanupStatus | None
    image_refs: frozenset[str] = field(default=frozenset())
    """status.imageRefs, normalised."""
    image_refs_omitted: int = 0
    """status.imageRefsOmitted: how many refs the node holds beyond imageRefs (then it may hold any image)."""


def _metadata(body: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = body.get("metadata") or {}
    return metadata if isinstance(metadata, Mapping) else {}


def build_node_view(body: Mapping[str, Any]) -> NodeView:
    meta = _metadata(body)
    conditions = (body.get("status") or {}).get("conditions") or []
    pressure = any(c.get("type") == "DiskPressure" and c.get("status") == "True" for c in conditions)
    return NodeView(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        labels=dict(meta.get("labels") or {}),
        disk_pressure=pressure,
    )


def build_policy_view(body: Mapping[str, Any]) -> PolicyView:
    meta = _metadata(body)
    name, uid, generation = str(meta.get("name", "")), str(meta.get("uid", "")), int(meta.get("generation") or 0)
    manifest = _plain(body)
    status = manifest.pop("status", None)
    try:
        policy = CleanupPolicy.from_manifest(manifest)
    except ManifestError as exc:
        return PolicyView(name, uid, generation, error="; ".join(exc.errors))
    parsed_status = None
    if status:
        try:
            parsed_status = CleanupPolicyStatus.model_validate(status)
        except ValueError:
            log.warning("policy=%s unreadable status, it will be rewritten", name)
    spec = policy.spec
    return PolicyView(name, uid, generation, spec.priority, spec.node_selector, spec.rules(), None, parsed_status)


def build_cleanup_view(body: Mapping[str, Any]) -> CleanupView:
    meta = _metadata(body)
    name = str(meta.get("name", ""))
    plain = _plain(body)
    spec: NodeCleanupSpec | None = None
    status: NodeCleanupStatus | None = None
    try:
        spec = NodeCleanupSpec.model_validate(plain.get("spec") or {})
    except ValueError:
        log.warning("nodecleanup=%s invalid spec, it will be rewritten", name)
    if plain.get("status"):
        try:
            status = NodeCleanupStatus.model_validate(plain["status"])
        except ValueError as exc:
            log.warning("nodecleanup=%s unreadable status (%s)", name, str(exc).splitlines()[0])
    raw_refs = list((plain.get("status") or {}).get("imageRefs") or [])
    omitted = (plain.get("status") or {}).get("imageRefsOmitted")
    packed = (plain.get("status") or {}).get("imageRefsPacked")
    if isinstance(packed, str) and packed:
        try:
            unpacked = unpack_refs(packed)
        except PackedRefsError as exc:
            log.warning("nodecleanup=%s unreadable imageRefsPacked (%s): every workload image protected", name, exc)
        else:
            raw_refs += unpacked
            omitted = omitted - len(unpacked) if isinstance(omitted, int) else 0
    created = meta.get("creationTimestamp")
    return CleanupView(
        name=name,
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        created=datetime.fromisoformat(created) if isinstance(created, str) else None,
        owner_uids=tuple(str(o.get("uid", "")) for o in meta.get("ownerReferences") or []),
        labels=dict(meta.get("labels") or {}),
        spec=spec,
        status=status,
        image_refs=normalize_all(r for r in raw_refs if isinstance(r, str)),
        image_refs_omitted=omitted if isinstance(omitted, int) and omitted > 0 else 0,
    )
