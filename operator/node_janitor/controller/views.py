"""What the operator keeps of each watched object: small immutable views built from raw bodies (pure).

kopf indexes hold these views (not the bodies), so the operator's memory is what it needs: a Node's
labels and DiskPressure, a policy's parsed spec, a NodeCleanup's spec, its image references and the few
status fields the policies' statuses read (`Report`). At 5,000 nodes reporting 50-200 references each (issue 21),
a whole parsed status per node and a kopf index of reference -> holders were most of the operator's memory; the
references are now interned (one string per distinct reference, however many nodes hold it) and the holders of a
reference are found by scanning the views when a workload's images change (a set intersection per node, once per
debounced batch of changed references).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from node_janitor.api import CleanupPolicy, CleanupPolicyStatus, ManifestError, NodeCleanupSpec, NodeCleanupStatus
from node_janitor.api.meta import LabelSelector, _plain
from node_janitor.api.packed_refs import PackedRefsError, unpack_refs
from node_janitor.api.policy import PolicyRules
from node_janitor.api.refs import normalize_all

__all__ = [
    "CleanupView",
    "NodeView",
    "PolicyView",
    "Report",
    "build_cleanup_view",
    "build_node_view",
    "build_policy_view",
    "build_report",
]

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


@dataclass(frozen=True, slots=True)
class Report:
    """What the operator reads of a NodeCleanup's status (the rest is for people, the CLI and the metrics)."""

    used_percent: float | None = None
    """The fullest file system's usedPercent (or diskPercent), for nodesUnderPressure."""
    errors: bool = False
    """Degraded=True, or a last run with errors."""
    reclaimed_bytes: int = 0
    """The last run's."""
    last_run_end: datetime | None = None
    heartbeat: datetime | None = None
    """status.heartbeatTime: liveness for an agent without a Lease. Not in `aggregate`."""

    @property
    def aggregate(self) -> tuple[float | None, bool, int, datetime | None]:
        """What a policy's status sums up: a heartbeat alone changes none of it (5,000 agents' heartbeats would
        otherwise recompute every policy's status every debounce; silence is re-checked every status resync)."""
        return self.used_percent, self.errors, self.reclaimed_bytes, self.last_run_end


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
    status: Report | None
    """None when the NodeCleanup has no status or an unreadable one."""
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


def build_report(status: NodeCleanupStatus) -> Report:
    percents = [fs.used_percent for fs in status.file_systems]
    if status.disk_percent is not None:
        percents.append(status.disk_percent)
    run = status.last_run
    degraded = any(c.type == "Degraded" and c.status == "True" for c in status.conditions)
    return Report(
        used_percent=max(percents) if percents else None,
        errors=degraded or bool(run is not None and run.errors),
        reclaimed_bytes=max(run.reclaimed_bytes, 0) if run is not None else 0,
        last_run_end=run.start_time + timedelta(seconds=run.duration_seconds) if run is not None else None,
        heartbeat=status.heartbeat_time,
    )


_RULES: dict[str, PolicyRules] = {}
"""Parsed spec.policy by its JSON: nodes share a few effective policies, and the models are immutable."""
_RULES_KEPT = 256


def _parse_spec(plain: Mapping[str, Any]) -> NodeCleanupSpec:
    """The stored spec, its policy shared with every node that has the same one and its protected images interned
    (5,000 NodeCleanups hold 10 distinct policies and the same few thousand references)."""
    raw = dict(plain)
    policy = raw.get("policy")
    if isinstance(policy, Mapping):
        key = json.dumps(policy, sort_keys=True)
        rules = _RULES.get(key)
        if rules is None:
            rules = PolicyRules.model_validate(policy)
            if len(_RULES) >= _RULES_KEPT:
                _RULES.clear()
            _RULES[key] = rules
        raw["policy"] = rules
    images = raw.get("protectedImages")
    if isinstance(images, list):
        raw["protectedImages"] = [sys.intern(i) if type(i) is str else i for i in images]
    return NodeCleanupSpec.model_validate(raw)


def build_cleanup_view(body: Mapping[str, Any]) -> CleanupView:
    meta = _metadata(body)
    name = str(meta.get("name", ""))
    plain = _plain(body)
    spec: NodeCleanupSpec | None = None
    status: Report | None = None
    try:
        spec = _parse_spec(plain.get("spec") or {})
    except ValueError:
        log.warning("nodecleanup=%s invalid spec, it will be rewritten", name)
    if plain.get("status"):
        try:
            status = build_report(NodeCleanupStatus.model_validate(plain["status"]))
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
