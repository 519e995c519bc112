"""`prune`: inventory -> plan -> (unless dry-run) execute -> report. Shared by the CLI and the agent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.api.policy import PolicyRules
from node_janitor.api.units import format_bytes
from node_janitor.collector import statvfs_entry
from node_janitor.executor import ActionResult, ExecutionResult, Executor
from node_janitor.inventory import FileSystemEntry, Inventory
from node_janitor.node import take_inventory
from node_janitor.planner import Plan, PlanSettings, plan_cleanup
from node_janitor.runtime import ContainerdClient, CriClient
from node_janitor.state import LastUsedStore, observe_last_used


@dataclass
class PruneReport:
    plan: Plan
    dry_run: bool
    inventory: Inventory
    execution: ExecutionResult | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def image_fs(self) -> FileSystemEntry | None:
        return next((f for f in self.inventory.file_systems if f.name == "imagefs"), None)

    @property
    def errors(self) -> list[str]:
        return list(self.execution.errors) if self.execution else []

    def to_json(self) -> dict[str, Any]:
        outcomes = {id(r.action): r for r in self.execution.results} if self.execution else {}
        before = self.execution.before if self.execution and self.execution.before else self.image_fs
        after = self.execution.after if self.execution else None
        return {
            "dry_run": self.dry_run,
            "actions": [
                {
                    "kind": str(a.kind),
                    "id": a.id,
                    "refs": list(a.refs),
                    "bytes": a.bytes,
                    "reason": str(a.reason),
                    "outcome": str(outcomes[id(a)].outcome) if id(a) in outcomes else "planned",
                    "message": outcomes[id(a)].message if id(a) in outcomes else "",
                }
                for a in self.plan.actions
            ],
            "planned_bytes": self.plan.planned_bytes,
            "reclaimed_bytes": self.execution.reclaimed_bytes if self.execution else 0,
            "target_bytes": self.plan.target.bytes,
            "under_pressure": self.plan.target.under_pressure,
            "file_system": {
                "path": before.path if before else None,
                "used_percent_before": round(before.used_percent, 2) if before else None,
                "used_percent_after": round(after.used_percent, 2) if after else None,
            },
            "skipped": dict(self.plan.skipped),
            "errors": self.errors,
            "warnings": self.warnings,
        }


async def prune(
    cri: CriClient,
    containerd: ContainerdClient,
    rules: PolicyRules,
    *,
    namespace: str,
    pod_log_dir: Path | None,
    dry_run: bool = False,
    state: LastUsedStore | None = None,
    protected_images: tuple[str, ...] = (),
    on_plan: Callable[[Plan], None] | None = None,
    on_result: Callable[[ActionResult], None] | None = None,
) -> PruneReport:
    state = state or LastUsedStore(None)
    warnings: list[str] = []
    inventory = await take_inventory(cri, containerd, namespace, pod_log_dir)
    warnings.extend(inventory.warnings)
    now = datetime.now(UTC)
    known, warning = state.load()
    if warning:
        warnings.append(warning)
    last_used = observe_last_used(inventory, now, known)
    plan = plan_cleanup(inventory, PlanSettings.from_rules(rules, protected_images), now, last_used)
    # Remember what was observed before removing anything: a run that dies still leaves it behind. On a full
    # disk this write is the one that fails (ENOSPC): a warning, never a reason to stop.
    if (warning := state.save(last_used)) is not None:
        warnings.append(warning)
    if on_plan:
        on_plan(plan)
    report = PruneReport(plan=plan, dry_run=dry_run or rules.dry_run, inventory=inventory, warnings=warnings)
    if not report.dry_run and plan.actions:
        fs = report.image_fs
        executor = Executor(
            cri,
            containerd,
            (lambda: statvfs_entry("imagefs", fs.path)) if fs else (lambda: None),
            snapshotter=inventory.snapshotter,
            on_result=on_result,
        )
        report.execution = await executor.apply(plan, inventory)
    return report


VERBS = {
    "remove-image": ("Removed image", "Would remove image"),
    "remove-container": ("Removed container", "Would remove container"),
    "delete-lease": ("Deleted expired lease", "Would delete expired lease"),
    "remove-snapshot": ("Removed orphan snapshot", "Would remove orphan snapshot"),
    "delete-content": ("Deleted orphan blob", "Would delete orphan blob"),
    "discard-layer": ("Discarded unpacked layer blob", "Would discard unpacked layer blob"),
}


def render_prune(report: PruneReport) -> str:
    outcomes = {id(r.action): r for r in report.execution.results} if report.execution else {}
    lines = []
    fs = report.image_fs
    if fs is not None:
        state = "above its high watermark" if report.plan.target.under_pressure else "below its high watermark"
        lines.append(f"Image file system {fs.path}: {fs.used_percent:.1f}% used, {state}")
        if report.plan.target.bytes:
            lines.append(f"Target: free {format_bytes(report.plan.target.bytes)} to reach the low watermark")
    if not report.plan.actions:
        lines.append("Nothing to remove.")
    for action in report.plan.actions:
        done, would = VERBS[str(action.kind)]
        what = ", ".join(action.refs) if action.refs else action.id
        result = outcomes.get(id(action))
        verb = would if report.dry_run else done
        if result is not None and str(result.outcome) != "done":
            verb = f"Did not remove ({result.outcome}: {result.message})"
        lines.append(f"{verb}: {what}  {format_bytes(action.bytes)}  [{action.reason}]")
    if report.dry_run:
        lines.append(f"Total reclaimable space (dry run): {format_bytes(report.plan.planned_bytes)}")
    elif report.execution is not None:
        ex = report.execution
        lines.append(
            f"Total reclaimed space: {format_bytes(ex.reclaimed_bytes)} (planned {format_bytes(ex.planned_bytes)})"
        )
        if ex.before and ex.after:
            lines.append(f"Image file system: {ex.before.used_percent:.1f}% -> {ex.after.used_percent:.1f}% used")
    for error in report.errors:
        lines.append(f"error: {error}")
    for warning in report.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
