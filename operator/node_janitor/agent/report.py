"""What the agent reports, built by pure functions: the NodeCleanup status (df numbers, lastRun, conditions) and
the Events it posts on its Node. Shapes are checked against the API models (`api.nodecleanup`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from node_janitor.agent.events import SERIES_ANNOTATION
from node_janitor.api.meta import Condition
from node_janitor.api.nodecleanup import (
    MAX_IMAGE_REF_LENGTH,
    MAX_IMAGE_REFS,
    FileSystemStatus,
    LastRun,
    PlannedAction,
    RunTrigger,
    Usage,
    UsageEntry,
)
from node_janitor.api.packed_refs import pack_refs
from node_janitor.api.units import format_bytes
from node_janitor.node.engine import PruneReport
from node_janitor.node.inventory import FileSystemEntry
from node_janitor.node.usage import ROW_TYPES, DiskReport, ImageUsage

PACK_ABOVE = 4096
"""imageRefs longer than this as JSON are sent packed (`api.packed_refs`): one status at 200 images <= 16 KiB."""
MAX_PLAN = 50
MAX_ERRORS = 20
MAX_MESSAGE = 512
COMPONENT = "node-janitor-agent"


def _dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(mode="json", by_alias=True, exclude_none=True))


def build_file_systems(file_systems: Iterable[FileSystemEntry]) -> list[dict[str, Any]]:
    return [
        _dump(
            FileSystemStatus(
                name=fs.name,
                path=fs.path,
                size_bytes=fs.size,
                used_bytes=fs.used,
                used_percent=round(min(100.0, fs.used_percent), 2),
                inodes_used_percent=round(min(100.0, fs.inodes_used_percent), 2) if fs.inodes else None,
            )
        )
        for fs in file_systems
    ]


def build_usage_status(report: DiskReport) -> dict[str, Any]:
    """The `df` part of the status: usage rows, file systems, disk percent, image count, reclaimable, imageRefs
    (tags and digest refs: what the operator intersects with the workloads' images; bounded, see
    `build_image_refs`)."""
    usage = Usage(**{name: UsageEntry(**report.rows[name].to_dict()) for name in ROW_TYPES})
    reclaimable = sum(report.rows[name].reclaimable for name in ROW_TYPES)
    refs, omitted = build_image_refs(report.images)
    packed = None
    if len(json.dumps(refs)) > PACK_ABOVE:
        packed, refs, omitted = pack_refs(refs), [], omitted + len(refs)
    status: dict[str, Any] = {
        "usage": _dump(usage),
        "fileSystems": build_file_systems(report.file_systems),
        "imageCount": len(report.images),
        "reclaimableBytes": reclaimable,
        "reclaimable": format_bytes(reclaimable),
        "imageRefs": refs,
        "imageRefsOmitted": omitted,
        "imageRefsPacked": packed,  # (None: a merge patch removes the packed list of before)
    }
    if report.file_systems:
        status["diskPercent"] = round(min(100.0, max(fs.used_percent for fs in report.file_systems)), 2)
    return status


def build_image_refs(images: Iterable[ImageUsage], limit: int = MAX_IMAGE_REFS) -> tuple[list[str], int]:
    """status.imageRefs and how many it leaves out: at most `limit` refs, those of images no container uses and
    not pinned first (the only ones a cleanup may remove, so the only ones the operator's protection is for),
    each group sorted. A ref too long for the CRD is left out (and counted)."""
    removable: set[str] = set()
    others: set[str] = set()
    for image in images:
        group = removable if image.containers == 0 and not image.pinned else others
        group.update(ref for ref in image.refs if ref != image.id)
    others -= removable
    ordered = [r for r in (*sorted(removable), *sorted(others)) if len(r) <= MAX_IMAGE_REF_LENGTH]
    return ordered[:limit], len(removable) + len(others) - min(limit, len(ordered))


def _short(messages: Sequence[str]) -> list[str]:
    return [m if len(m) <= MAX_MESSAGE else m[: MAX_MESSAGE - 3] + "..." for m in messages[:MAX_ERRORS]]


@dataclass(frozen=True)
class RunOutcome:
    """One run as the agent saw it: the engine's report (None if the run could not start) and its context."""

    trigger: RunTrigger
    started: datetime
    duration_seconds: float
    dry_run: bool
    report: PruneReport | None
    errors: tuple[str, ...] = ()  # besides the report's: the run failed to start, was interrupted...
    run_request: str | None = None
    rows: tuple[dict[str, Any], ...] = field(default=())

    @classmethod
    def of(
        cls,
        trigger: RunTrigger,
        started: datetime,
        duration: float,
        dry_run: bool,
        report: PruneReport | None,
        errors: Sequence[str] = (),
        run_request: str | None = None,
    ) -> RunOutcome:
        rows = tuple(report.rows()) if report is not None else ()
        return cls(trigger, started, duration, dry_run, report, tuple(errors), run_request, rows)

    @property
    def all_errors(self) -> list[str]:
        return [*self.errors, *(self.report.errors if self.report else ())]

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["outcome"] == "done"]

    @property
    def planned_bytes(self) -> int:
        return self.report.planned_bytes if self.report else 0

    @property
    def reclaimed_bytes(self) -> int:
        return self.report.reclaimed_bytes if self.report and not self.dry_run else 0

    @property
    def removed_something(self) -> bool:
        return not self.dry_run and bool(self.done)


def _planned_action(row: Mapping[str, Any]) -> PlannedAction:
    ref = row["refs"][0] if row["kind"] == "remove-image" and row["refs"] else row["id"]
    return PlannedAction(kind=row["kind"], ref=ref, bytes=max(0, int(row["bytes"])), reason=row["reason"])


def build_last_run(outcome: RunOutcome) -> dict[str, Any]:
    """status.lastRun; `runRequest` is sent as null when this run answered none (a merge patch keeps it else)."""
    last = LastRun(
        trigger=outcome.trigger,
        start_time=outcome.started,
        duration_seconds=round(outcome.duration_seconds, 3),
        dry_run=outcome.dry_run,
        actions=len(outcome.rows) if outcome.dry_run else len(outcome.done),
        planned_bytes=max(0, outcome.planned_bytes),
        reclaimed_bytes=outcome.reclaimed_bytes,
        reclaimed=format_bytes(outcome.reclaimed_bytes),
        errors=_short(outcome.all_errors),
        run_request=outcome.run_request,
        plan=[_planned_action(r) for r in outcome.rows[:MAX_PLAN]] if outcome.dry_run else [],
    )
    document = _dump(last)
    document.setdefault("runRequest", None)
    return document


def run_event(outcome: RunOutcome, node_name: str, node_uid: str | None, now: datetime) -> dict[str, Any] | None:
    """The Event for a run that removed something or failed (None for other runs), on the Node."""
    errors = outcome.all_errors
    if not errors and not outcome.removed_something:
        return None
    if errors:
        kind, reason = "Warning", "CleanupFailed"
        message = f"{outcome.trigger} run: {len(errors)} error(s): " + "; ".join(_short(errors)[:3])
    else:
        kind, reason = "Normal", "CleanupDone"
        message = (
            f"{outcome.trigger} run removed {len(outcome.done)} object(s), reclaimed "
            f"{format_bytes(outcome.reclaimed_bytes)} (planned {format_bytes(outcome.planned_bytes)})"
        )
    return node_event(kind, reason, message, node_name, node_uid, now, series=outcome.trigger)


def target_unreachable_event(message: str, node_name: str, node_uid: str | None, now: datetime) -> dict[str, Any]:
    """The one Event of an episode in which runs cannot reach the low watermark (`backoff.TargetBackoff`)."""
    return node_event("Warning", "TargetUnreachable", message, node_name, node_uid, now, series="target")


def node_event(
    kind: str,
    reason: str,
    message: str,
    node_name: str,
    node_uid: str | None,
    now: datetime,
    *,
    series: str | None = None,
) -> dict[str, Any]:
    """An Event of this agent on its Node. Events of one `series` (a run's: its trigger) are repeats of one another
    whatever their messages: `agent.events` adds them to one Event's count (the message is the latest)."""
    stamp = now.isoformat().replace("+00:00", "Z")
    involved = {"apiVersion": "v1", "kind": "Node", "name": node_name}
    if node_uid:
        involved["uid"] = node_uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{node_name}.nodejanitor.",
            **({"annotations": {SERIES_ANNOTATION: series}} if series else {}),
        },
        "involvedObject": involved,
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT, "host": node_name},
        "reportingComponent": COMPONENT,
        "reportingInstance": node_name,
        "action": "Cleanup",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class ConditionBook:
    """The status's conditions, one per type; lastTransitionTime changes only when the status does."""

    def __init__(self, existing: Iterable[Mapping[str, Any]] = ()) -> None:
        self._conditions: dict[str, Condition] = {}
        for raw in existing:
            try:
                condition = Condition.model_validate(dict(raw))
            except ValueError:
                continue
            self._conditions[condition.type] = condition

    def set(self, type_: str, status: bool, reason: str, message: str, generation: int | None, now: datetime) -> None:
        value: Literal["True", "False"] = "True" if status else "False"
        old = self._conditions.get(type_)
        since = old.last_transition_time if old is not None and old.status == value else now
        self._conditions[type_] = Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message[:MAX_MESSAGE],
            last_transition_time=since,
            observed_generation=generation,
        )

    def get(self, type_: str) -> Condition | None:
        return self._conditions.get(type_)

    def to_status(self) -> list[dict[str, Any]]:
        return [_dump(c) for _, c in sorted(self._conditions.items())]
