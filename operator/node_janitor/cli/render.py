"""Plain-text tables for the CLI (stable, greppable, like `docker system df`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from node_janitor.api.units import format_bytes
from node_janitor.node.usage import DiskReport
from node_janitor.runtime.discovery import RuntimeDiscovery

ROW_LABELS = {
    "images": "Images",
    "containers": "Containers",
    "snapshots": "Snapshots",
    "content": "Content",
    "logs": "Logs",
}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _percent(part: int, whole: int) -> str:
    return f"{format_bytes(part)} ({100 * part // whole}%)" if whole else format_bytes(part)


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def render_disk_report(report: DiskReport, now: datetime, *, verbose: bool = False) -> str:
    rows = [
        [
            label,
            str(report.rows[key].total),
            str(report.rows[key].active),
            format_bytes(report.rows[key].size),
            _percent(report.rows[key].reclaimable, report.rows[key].size),
        ]
        for key, label in ROW_LABELS.items()
    ]
    out = [table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], rows)]
    if report.file_systems:
        fs_rows = [
            [
                fs.name,
                fs.path,
                format_bytes(fs.size),
                format_bytes(fs.used),
                format_bytes(fs.available),
                f"{fs.used_percent:.1f}%",
                f"{fs.inodes_used_percent:.1f}%",
            ]
            for fs in report.file_systems
        ]
        out += ["", table(["FILESYSTEM", "PATH", "SIZE", "USED", "AVAIL", "USE%", "IUSE%"], fs_rows)]
    if verbose:
        image_rows = [
            [
                ", ".join(image.refs[:2]) + (f" (+{len(image.refs) - 2})" if len(image.refs) > 2 else ""),
                short_id(image.id),
                format_bytes(image.size),
                format_bytes(image.shared_size),
                format_bytes(image.unique_size),
                format_bytes(image.cri_size),
                str(image.containers),
                ago(image.created_at, now),
                ago(image.last_used, now) + (" (pinned)" if image.pinned else ""),
            ]
            for image in report.images
        ]
        out += [
            "",
            "Images space usage:",
            "",
            table(
                [
                    "REFS",
                    "IMAGE ID",
                    "SIZE",
                    "SHARED SIZE",
                    "UNIQUE SIZE",
                    "CRI SIZE",
                    "CONTAINERS",
                    "CREATED",
                    "LAST USED",
                ],
                image_rows,
            ),
        ]
    if report.other_namespaces:
        out += [
            "",
            "Other containerd namespaces (they share the content store; what they keep is never reclaimed here):",
        ]
        ns_rows = [
            [n.name, str(n.blobs), format_bytes(n.size), format_bytes(n.shared), format_bytes(n.referenced)]
            for n in report.other_namespaces
        ]
        out += ["", table(["NAMESPACE", "BLOBS", "SIZE", "SHARED HERE", "KEPT"], ns_rows)]
    for warning in report.warnings:
        out.append(f"warning: {warning}")
    return "\n".join(out)


def render_runtime(discovery: RuntimeDiscovery) -> str:
    """What runtime discovery found (`node-janitor info`, and the end of `df`): one "KEY   value" line each."""
    config = discovery.config
    if config is None:
        config_text = "none found"
    elif config.error:
        config_text = f"{config.path}: {config.error}"
    else:
        config_text = f"{config.path} (version {config.version})"
    sandbox = discovery.sandbox_image or "not configured (CRI's pinned flag protects it)"
    if discovery.sandbox_image_source:
        sandbox += f" (from {discovery.sandbox_image_source})"
    rows = [
        ["runtime", f"{discovery.runtime_name} {discovery.runtime_version}".strip()],
        ["layout", discovery.layout],
        ["socket", discovery.socket],
        ["root", f"{discovery.root or 'unknown'} (from {discovery.root_source})"],
        ["image filesystem", ", ".join(discovery.image_filesystems) or "unknown"],
        ["config", config_text],
        ["sandbox image", sandbox],
    ]
    if others := discovery.other_pinned_images:
        rows.append(["pinned images", ", ".join(others)])
    out = [table(["RUNTIME", ""], rows)]
    out += [f"warning: {w}" for w in discovery.warnings]
    return "\n".join(out)
