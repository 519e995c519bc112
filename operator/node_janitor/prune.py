"""`prune`: inventory -> plan -> (unless dry-run) execute -> report. Shared by the CLI and the agent.

With a pod log directory (and `logs.enabled`), the log rules run too (`logs.LogPass`): first orphans and each
container's rules, then, for the node budget or when the log file system is above its high watermark, log files
no container writes (oldest first); then the image plan, whose target shrinks by what logs freed when both share a
file system; last, if still needed, the largest live logs are rotated away, and the extraPaths rules run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.api.policy import PolicyRules
from node_janitor.api.units import format_bytes
from node_janitor.collector import statvfs_entry
from node_janitor.executor import ActionResult, ExecutionResult, Executor
from node_janitor.inventory import FileSystemEntry, Inventory
from node_janitor.logs import LogAction, LogActionKind, LogActionResult, LogJanitor, LogPass, LogPassReport, LogSettings
from node_janitor.node import take_inventory
from node_janitor.planner import Action, Plan, PlanSettings, Target, plan_cleanup, plan_target
from node_janitor.runtime import ContainerdClient, CriClient, RuntimeClientError
from node_janitor.state import LastUsedStore, observe_last_used


@dataclass
class PruneReport:
    plan: Plan
    dry_run: bool
    inventory: Inventory
    execution: ExecutionResult | None = None
    warnings: list[str] = field(default_factory=list)
    logs: LogPassReport | None = None
    logs_target: Target = field(default_factory=Target)
    logs_after: FileSystemEntry | None = None

    @property
    def image_fs(self) -> FileSystemEntry | None:
        return self.inventory.file_system("imagefs")

    @property
    def log_fs(self) -> FileSystemEntry | None:
        return self.inventory.file_system("logs")

    @property
    def errors(self) -> list[str]:
        errors = list(self.execution.errors) if self.execution else []
        if self.logs is not None:
            errors += self.logs.errors
            errors += [
                f"{r.action.kind} {r.action.path}: {r.message}" for r in self.logs.results if r.outcome == "failed"
            ]
        return errors

    def rows(self) -> list[dict[str, Any]]:
        """Every action in the order it ran: logs' rules and reclaim, images, live logs rotated away, extraPaths."""
        results: dict[int, ActionResult | LogActionResult] = {}
        results.update({id(r.action): r for r in self.execution.results} if self.execution else {})
        results.update({id(r.action): r for r in self.logs.results} if self.logs else {})

        def row(action: Action | LogAction, ident: str) -> dict[str, Any]:
            result = results.get(id(action))
            return {
                "kind": str(action.kind),
                "id": ident,
                "refs": list(action.refs),
                "bytes": action.bytes,
                "reason": str(action.reason),
                "outcome": str(result.outcome) if result else "planned",
                "message": result.message if result else "",
            }

        logs = self.logs
        rows = [row(a, a.path) for a in (*logs.rules, *logs.reclaim)] if logs else []
        rows += [row(a, a.id) for a in self.plan.actions]
        rows += [row(a, a.path) for a in (*logs.live, *logs.extra)] if logs else []
        return rows

    @property
    def planned_bytes(self) -> int:
        return self.plan.planned_bytes + (self.logs.planned_bytes if self.logs else 0)

    @property
    def reclaimed_bytes(self) -> int:
        """What the image file system really gained while images were removed, plus what log removals freed."""
        images = self.execution.reclaimed_bytes if self.execution else 0
        return images + (self.logs.freed_bytes if self.logs and not self.dry_run else 0)

    def to_json(self) -> dict[str, Any]:
        before = self.execution.before if self.execution and self.execution.before else self.image_fs
        after = self.execution.after if self.execution else None
        log_fs = self.log_fs
        return {
            "dry_run": self.dry_run,
            "actions": self.rows(),
            "planned_bytes": self.planned_bytes,
            "reclaimed_bytes": self.reclaimed_bytes,
            "target_bytes": self.plan.target.bytes,
            "under_pressure": self.plan.target.under_pressure,
            "file_system": {
                "path": before.path if before else None,
                "used_percent_before": round(before.used_percent, 2) if before else None,
                "used_percent_after": round(after.used_percent, 2) if after else None,
            },
            "log_file_system": {
                "path": log_fs.path if log_fs else None,
                "used_percent_before": round(log_fs.used_percent, 2) if log_fs else None,
                "used_percent_after": round(self.logs_after.used_percent, 2) if self.logs_after else None,
                "target_bytes": self.logs_target.bytes,
                "under_pressure": self.logs_target.under_pressure,
            },
            "skipped": dict(self.plan.skipped),
            "errors": self.errors,
            "warnings": self.warnings,
        }


def _same_device(a: FileSystemEntry | None, b: FileSystemEntry | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return os.stat(a.path).st_dev == os.stat(b.path).st_dev
    except OSError:
        return a.path == b.path


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
    on_log_result: Callable[[LogActionResult], None] | None = None,
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
    # Remember what was observed before removing anything: a run that dies still leaves it behind. On a full
    # disk this write is the one that fails (ENOSPC): a warning, never a reason to stop.
    if (warning := state.save(last_used)) is not None:
        warnings.append(warning)
    dry_run = dry_run or rules.dry_run
    settings = PlanSettings.from_rules(rules, protected_images)
    image_target = plan_target(inventory, settings)
    logs_target = plan_target(inventory, settings, "logs")
    image_fs = inventory.file_system("imagefs")
    log_fs = inventory.file_system("logs")
    shared = _same_device(image_fs, log_fs)

    log_pass: LogPass | None = None
    if pod_log_dir is not None and rules.logs.enabled:
        log_pass = LogPass(
            cri,
            pod_log_dir,
            LogSettings.from_policy(rules.logs),
            janitor=LogJanitor(cri, on_result=on_log_result),
            dry_run=dry_run,
        )
        try:
            await log_pass.rules()
            await log_pass.reclaim(logs_target.bytes - log_pass.freed)
        except (RuntimeClientError, OSError) as exc:
            log_pass.report.errors.append(f"logs: {exc}")
        if shared and log_pass.freed:  # what logs freed on a shared file system, images need not free
            image_target = replace(image_target, bytes=max(0, image_target.bytes - log_pass.freed))

    plan = plan_cleanup(inventory, settings, now, last_used, target=image_target)
    if on_plan:
        on_plan(plan)
    report = PruneReport(plan=plan, dry_run=dry_run, inventory=inventory, warnings=warnings, logs_target=logs_target)
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

    if log_pass is not None:
        images_freed = 0
        if shared:
            images_freed = report.execution.reclaimed_bytes if report.execution else plan.planned_bytes
        try:
            await log_pass.reclaim_live(logs_target.bytes - log_pass.freed - images_freed)
            await log_pass.extra()
        except (RuntimeClientError, OSError) as exc:
            log_pass.report.errors.append(f"logs: {exc}")
        report.logs = log_pass.report
        if not dry_run and log_fs is not None:
            try:
                report.logs_after = statvfs_entry("logs", log_fs.path)
            except OSError as exc:
                warnings.append(f"cannot stat the log file system {log_fs.path}: {exc.strerror}")
    return report


LOG_KINDS = frozenset(str(k) for k in LogActionKind)
VERBS = {
    "remove-image": ("Removed image", "Would remove image"),
    "remove-container": ("Removed container", "Would remove container"),
    "delete-lease": ("Deleted expired lease", "Would delete expired lease"),
    "remove-snapshot": ("Removed orphan snapshot", "Would remove orphan snapshot"),
    "delete-content": ("Deleted orphan blob", "Would delete orphan blob"),
    "discard-layer": ("Discarded unpacked layer blob", "Would discard unpacked layer blob"),
    "rotate-log": ("Rotated log", "Would rotate log"),
    "compress-log": ("Compressed log", "Would compress log"),
    "remove-log": ("Removed log", "Would remove log"),
    "remove-log-dir": ("Removed orphaned pod log directory", "Would remove orphaned pod log directory"),
    "remove-node-log": ("Removed node log", "Would remove node log"),
}


def render_prune(report: PruneReport) -> str:
    lines = []
    fs = report.image_fs
    if fs is not None:
        state = "above its high watermark" if report.plan.target.under_pressure else "below its high watermark"
        lines.append(f"Image file system {fs.path}: {fs.used_percent:.1f}% used, {state}")
        if report.plan.target.bytes:
            lines.append(f"Target: free {format_bytes(report.plan.target.bytes)} to reach the low watermark")
    log_fs = report.log_fs
    if report.logs is not None and log_fs is not None and report.logs_target.under_pressure:
        lines.append(
            f"Log file system {log_fs.path}: {log_fs.used_percent:.1f}% used, above its high watermark "
            f"(free {format_bytes(report.logs_target.bytes)})"
        )
    rows = report.rows()
    if not rows:
        lines.append("Nothing to remove.")
    for row in rows:
        done, would = VERBS.get(row["kind"], (row["kind"], f"Would {row['kind']}"))
        what = row["id"] if row["kind"] in LOG_KINDS or not row["refs"] else ", ".join(row["refs"])
        verb = would if report.dry_run else done
        if row["outcome"] not in ("done", "planned"):
            verb = f"Did not {row['kind']} ({row['outcome']}: {row['message']})"
        lines.append(f"{verb}: {what}  {format_bytes(row['bytes'])}  [{row['reason']}]")
    if report.dry_run:
        lines.append(f"Total reclaimable space (dry run): {format_bytes(report.planned_bytes)}")
    elif report.execution is not None or report.logs is not None:
        reclaimed, planned = format_bytes(report.reclaimed_bytes), format_bytes(report.planned_bytes)
        lines.append(f"Total reclaimed space: {reclaimed} (planned {planned})")
        ex = report.execution
        if ex is not None and ex.before and ex.after:
            lines.append(f"Image file system: {ex.before.used_percent:.1f}% -> {ex.after.used_percent:.1f}% used")
    for error in report.errors:
        lines.append(f"error: {error}")
    for warning in report.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
