"""The text of `node-janitor prune`: one run of `NodeEngine.run_once` (inventory -> plan -> unless dry-run execute
-> report) as people read it.

With a pod log directory (and `logs.enabled`), the log rules run too (`logs.LogPass`): first orphans and each
container's rules, then, for the node budget or when the log file system is above its high watermark, log files
no container writes (oldest first); then the image plan, whose target shrinks by what logs freed when both share a
file system; last, if still needed, the largest live logs are rotated away, and the extraPaths rules run.
"""

from __future__ import annotations

from typing import TextIO

from node_janitor.api.units import format_bytes
from node_janitor.node.engine import PruneReport
from node_janitor.node.logs import LogActionKind

__all__ = ["confirm_prune", "render_prune"]


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
    if report.paused:
        return "Paused (spec.paused): nothing was done."
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


def confirm_prune(preview: PruneReport, answers: TextIO, out: TextIO) -> bool:
    """On a terminal, before a real run: shows what the run would remove (a dry run's report) on `out` and asks.
    True to go on: yes or y. Nothing to remove, or the policy paused, asks nothing (the run then shows it)."""
    if preview.paused or not preview.rows():
        return True
    out.write(render_prune(preview) + "\n")
    out.write(f"Remove these {len(preview.rows())} items ({format_bytes(preview.planned_bytes)})? [y/N] ")
    out.flush()
    answer = answers.readline().strip().lower()
    if answer in ("y", "yes"):
        return True
    out.write("Nothing removed.\n")
    return False
