"""A CleanupPolicy's status, aggregated from the reports of the nodes it selects, and the Events worth
posting when it changes (pure).

- matchedNodes: nodes the selector matches (whether or not the policy wins there).
- nodesUnderPressure: of those, nodes whose DiskPressure condition is True or whose agent reports a file
  system above the node's effective thresholds.highPercent.
- reclaimedBytes / reclaimed: the sum of their last runs' reclaimed bytes; lastRunTime: the latest run's end.
- Ready: True (Applied, or NoMatchingNodes) when every selected node's NodeCleanup holds what the operator
  compiled; False (Applying) while some do not yet, or (InvalidSpec) when the stored policy does not validate.
- Degraded: True (AgentErrors) when some node reports Degraded or a last run with errors, True
  (AgentsNotReporting) when some agent is silent (`is_silent`: its Lease expired, or without one no status
  heartbeat for `stale_after`); False (AsExpected) otherwise.

Both conditions carry the policy's generation; lastTransitionTime only moves when a status changes, so an
unchanged aggregate compares equal to the stored one and is not written again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from node_janitor.api import Condition
from node_janitor.api.policy import CleanupPolicyStatus
from node_janitor.api.units import format_bytes
from node_janitor.controller.leases import AgentLease
from node_janitor.controller.views import CleanupView, NodeView, PolicyView

__all__ = [
    "Member",
    "PolicyEvent",
    "compute_policy_events",
    "compute_policy_status",
    "is_silent",
    "is_under_pressure",
]

NAMES_SHOWN = 5


@dataclass(frozen=True)
class Member:
    """A node the policy selects, its NodeCleanup and whether that holds what the operator compiled."""

    node: NodeView
    cleanup: CleanupView | None
    in_sync: bool
    lease: AgentLease | None = None
    """Its agent's Lease (`leases`), if it renews one."""


@dataclass(frozen=True)
class PolicyEvent:
    type: str  # Normal or Warning
    reason: str
    message: str


def _names(members: Sequence[Member]) -> str:
    names = sorted(m.node.name for m in members)
    more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    return ", ".join(names[:NAMES_SHOWN]) + more


def is_under_pressure(member: Member) -> bool:
    if member.node.disk_pressure:
        return True
    cleanup = member.cleanup
    if cleanup is None or cleanup.status is None or cleanup.spec is None:
        return False
    used = cleanup.status.used_percent
    return used is not None and used > cleanup.spec.policy.thresholds.high_percent


def _is_reporting_errors(member: Member) -> bool:
    return member.cleanup is not None and member.cleanup.status is not None and member.cleanup.status.errors


def is_silent(member: Member, now: datetime, stale_after: timedelta) -> bool:
    """An agent is silent when its Lease is older than the Lease's duration, or, without a Lease (an agent of an
    older release), when its status heartbeat (else the NodeCleanup's creation) is older than `stale_after`. A
    status written after the Lease expired counts as a heartbeat too (an agent that renews no Lease any more: a
    downgrade, or its renewals refused)."""
    cleanup = member.cleanup
    if cleanup is None:
        return False
    heartbeat = cleanup.status.heartbeat if cleanup.status is not None else None
    lease = member.lease
    if lease is not None:
        expiry = lease.renewed + timedelta(seconds=lease.duration_seconds)
        if now <= expiry:
            return False
        if heartbeat is None or heartbeat <= expiry:
            return True
    last = heartbeat or cleanup.created
    return last is not None and now - last > stale_after


def _condition(
    type_: str, status: bool, reason: str, message: str, generation: int, previous: CleanupPolicyStatus | None,
    now: datetime,
) -> Condition:  # fmt: skip
    value: Literal["True", "False"] = "True" if status else "False"
    before = next((c for c in previous.conditions if c.type == type_), None) if previous is not None else None
    since = before.last_transition_time if before is not None and before.status == value else now
    return Condition(
        type=type_, status=value, reason=reason, message=message, last_transition_time=since,
        observed_generation=generation,
    )  # fmt: skip


def compute_policy_status(
    policy: PolicyView, members: Sequence[Member], now: datetime, stale_after: timedelta
) -> CleanupPolicyStatus:
    """The policy's status (module docstring); `now` is truncated to seconds, as the apiserver stores it."""
    now = now.replace(microsecond=0)
    previous = policy.status
    generation = policy.generation
    reports = [m.cleanup.status for m in members if m.cleanup is not None and m.cleanup.status is not None]
    reclaimed = sum(r.reclaimed_bytes for r in reports)
    ends = [r.last_run_end for r in reports if r.last_run_end is not None]
    last_run = max(ends).replace(microsecond=0) if ends else None

    if policy.error is not None:
        message = f"the nodes it selected keep their last valid spec: {policy.error}"
        ready = _condition("Ready", False, "InvalidSpec", message, generation, previous, now)
    elif not members:
        ready = _condition("Ready", True, "NoMatchingNodes", "the nodeSelector matches no node", generation,
                           previous, now)  # fmt: skip
    elif pending := [m for m in members if not m.in_sync]:
        ready = _condition("Ready", False, "Applying",
                           f"{len(pending)} of {len(members)} nodes not updated yet: {_names(pending)}",
                           generation, previous, now)  # fmt: skip
    else:
        ready = _condition("Ready", True, "Applied", f"applied to {len(members)} nodes", generation, previous, now)

    failing = [m for m in members if _is_reporting_errors(m)]
    silent = [m for m in members if is_silent(m, now, stale_after)]
    if failing:
        message = f"{len(failing)} nodes report errors: {_names(failing)}"
        degraded = _condition("Degraded", True, "AgentErrors", message, generation, previous, now)
    elif silent:
        degraded = _condition("Degraded", True, "AgentsNotReporting",
                              f"{len(silent)} agents silent for more than {int(stale_after.total_seconds())}s: "
                              f"{_names(silent)}", generation, previous, now)  # fmt: skip
    else:
        degraded = _condition("Degraded", False, "AsExpected", "", generation, previous, now)

    return CleanupPolicyStatus(
        conditions=[ready, degraded],
        observed_generation=generation,
        matched_nodes=len(members),
        nodes_under_pressure=sum(1 for m in members if is_under_pressure(m)),
        reclaimed_bytes=reclaimed,
        reclaimed=format_bytes(reclaimed),
        last_run_time=last_run,
    )


def _status_of(status: CleanupPolicyStatus | None, type_: str) -> tuple[str, str] | None:
    condition = next((c for c in status.conditions if c.type == type_), None) if status is not None else None
    return (condition.status, condition.reason) if condition is not None else None


def compute_policy_events(old: CleanupPolicyStatus | None, new: CleanupPolicyStatus) -> list[PolicyEvent]:
    """Events for notable changes between the stored and the new status: Ready or Degraded changing status
    or reason (a first status only when it is bad; Applying is transient and never posted), the number of
    selected nodes changing, more nodes coming under pressure."""
    events = []
    for type_ in ("Ready", "Degraded"):
        before, after = _status_of(old, type_), _status_of(new, type_)
        if after is None or before == after or after[1] == "Applying":
            continue
        condition = next(c for c in new.conditions if c.type == type_)
        bad = (type_ == "Ready") != (condition.status == "True")
        if before is None and not bad:
            continue
        message = f"{type_}={condition.status}" + (f": {condition.message}" if condition.message else "")
        events.append(PolicyEvent("Warning" if bad else "Normal", condition.reason, message))
    old_matched = (old.matched_nodes or 0) if old is not None else 0
    if (new.matched_nodes or 0) != old_matched:
        message = f"selects {new.matched_nodes} nodes (was {old_matched})"
        events.append(PolicyEvent("Normal", "NodesSelected", message))
    old_pressure = (old.nodes_under_pressure or 0) if old is not None else 0
    if (new.nodes_under_pressure or 0) > old_pressure:
        message = f"{new.nodes_under_pressure} of {new.matched_nodes} nodes under disk pressure"
        events.append(PolicyEvent("Warning", "NodesUnderPressure", message))
    return events
