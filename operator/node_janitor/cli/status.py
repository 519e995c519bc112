"""`node-janitor status` (also `kubectl node-janitor status`): the fleet at a glance, from the NodeCleanups'
status (what each agent reports): nodes by disk use, what a cleanup could free now, the last run, its errors.

Read-only: it lists NodeCleanups (`list nodecleanups.nodejanitor.io`) and nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from node_janitor.api import GROUP, VERSION, ManifestError, NodeCleanup
from node_janitor.api.units import format_bytes
from node_janitor.cli.errors import EXIT_OK, api_error
from node_janitor.cli.kubeapi import (
    REQUEST_TIMEOUT,
    add_kube_flags,
    custom_objects,
    kube_configuration,
    transport_errors,
)
from node_janitor.cli.render import ago, table

__all__ = ["SORT_KEYS", "FleetRow", "add_status_parser", "build_fleet_rows", "cmd_status", "render_fleet"]


@dataclass(frozen=True)
class FleetRow:
    """One node's line, from its NodeCleanup."""

    node: str
    disk_percent: float | None
    reclaimable_bytes: int | None
    last_run: datetime | None
    trigger: str | None
    dry_run: bool
    errors: int
    reclaimed_bytes: int | None
    images: int | None
    ready: str
    """The agent's Ready condition: True, False (with its reason) or Unknown (no report)."""
    heartbeat: datetime | None
    policy: str
    paused: bool


SORT_KEYS: Final[dict[str, tuple[Callable[[FleetRow], Any], bool]]] = {
    # name -> (key, descending); rows without the value go last either way
    "disk": (lambda r: r.disk_percent, True),
    "reclaimable": (lambda r: r.reclaimable_bytes, True),
    "last-run": (lambda r: r.last_run, True),
    "errors": (lambda r: r.errors, True),
    "name": (lambda r: r.node, False),
}


def build_fleet_rows(cleanups: Sequence[NodeCleanup]) -> list[FleetRow]:
    rows = []
    for cleanup in cleanups:
        status = cleanup.status
        last = status.last_run if status is not None else None
        ready = next((c for c in status.conditions if c.type == "Ready"), None) if status is not None else None
        rows.append(
            FleetRow(
                node=cleanup.spec.node_name,
                disk_percent=status.disk_percent if status is not None else None,
                reclaimable_bytes=status.reclaimable_bytes if status is not None else None,
                last_run=last.start_time if last is not None else None,
                trigger=last.trigger if last is not None else None,
                dry_run=last.dry_run if last is not None else False,
                errors=len(last.errors) if last is not None else 0,
                reclaimed_bytes=last.reclaimed_bytes if last is not None else None,
                images=status.image_count if status is not None else None,
                ready="Unknown" if ready is None else (
                    ready.status if ready.status == "True" else f"{ready.status} ({ready.reason})"),
                heartbeat=status.heartbeat_time if status is not None else None,
                policy=cleanup.spec.sources[0].name if cleanup.spec.sources else "-",
                paused=cleanup.spec.policy.paused,
            )
        )  # fmt: skip
    return rows


def sort_rows(rows: list[FleetRow], sort_by: str) -> list[FleetRow]:
    key, descending = SORT_KEYS[sort_by]
    known = sorted((r for r in rows if key(r) is not None), key=lambda r: r.node)
    known.sort(key=key, reverse=descending)  # stable, reversed too: ties stay by name
    return known + sorted((r for r in rows if key(r) is None), key=lambda r: r.node)


def render_fleet(rows: Sequence[FleetRow], now: datetime, *, wide: bool = False, headers: bool = True) -> str:
    names = ["NODE", "DISK%", "RECLAIMABLE", "LAST RUN", "ERRORS"]
    if wide:
        names += ["TRIGGER", "RECLAIMED", "IMAGES", "READY", "HEARTBEAT", "POLICY"]
    lines = []
    for r in rows:
        last = "never" if r.last_run is None else ago(r.last_run, now) + (" (dry run)" if r.dry_run else "")
        line = [
            r.node,
            "-" if r.disk_percent is None else f"{r.disk_percent:.1f}%",
            "-" if r.reclaimable_bytes is None else format_bytes(r.reclaimable_bytes),
            last,
            str(r.errors),
        ]
        if wide:
            line += [
                r.trigger or "-",
                "-" if r.reclaimed_bytes is None else format_bytes(r.reclaimed_bytes),
                "-" if r.images is None else str(r.images),
                r.ready,
                "never" if r.heartbeat is None else ago(r.heartbeat, now),
                r.policy + (" (paused)" if r.paused else ""),
            ]
        lines.append(line)
    text = table(names, lines)
    return text if headers else "\n".join(text.splitlines()[1:])


def _row_json(r: FleetRow) -> dict[str, Any]:
    def stamp(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "node": r.node, "diskPercent": r.disk_percent, "reclaimableBytes": r.reclaimable_bytes,
        "lastRun": stamp(r.last_run), "trigger": r.trigger, "dryRun": r.dry_run, "errors": r.errors,
        "reclaimedBytes": r.reclaimed_bytes, "images": r.images, "ready": r.ready, "heartbeat": stamp(r.heartbeat),
        "policy": r.policy, "paused": r.paused,
    }  # fmt: skip


def add_status_parser(sub: Any) -> None:
    status = sub.add_parser(
        "status",
        help="the fleet: nodes by disk use, reclaimable space, last run and its errors (from NodeCleanup status)",
        description="One row per NodeCleanup (per node a CleanupPolicy selects), from what its agent reports. "
        "Read-only. Also `kubectl node-janitor status` with the kubectl-node_janitor plugin.",
    )
    add_kube_flags(status)
    status.add_argument("--sort-by", choices=sorted(SORT_KEYS), default="disk",
                        help="disk (default), reclaimable, last-run, errors: highest first; name: A to Z")  # fmt: skip
    status.add_argument(
        "-o",
        "--output",
        choices=["table", "wide", "json", "yaml"],
        default="table",
        help="table, wide (+ trigger, reclaimed, images, Ready, heartbeat, policy), json, yaml",
    )
    status.add_argument("--no-headers", action="store_true", help="no header line (table and wide)")
    status.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    configuration = kube_configuration(args.kubeconfig, args.context)
    custom = custom_objects(configuration)
    try:
        listing = custom.list_cluster_custom_object(GROUP, VERSION, "nodecleanups", _request_timeout=REQUEST_TIMEOUT)
    except transport_errors() as exc:
        raise api_error(exc, "list NodeCleanups", str(configuration.host)) from None
    cleanups = []
    for item in listing.get("items", []):
        try:
            cleanups.append(NodeCleanup.from_manifest(item))
        except ManifestError as exc:
            name = (item.get("metadata") or {}).get("name")
            print(f"node-janitor: warning: NodeCleanup {name} cannot be read: {' '.join(str(exc).split())}",
                  file=sys.stderr)  # fmt: skip
    rows = sort_rows(build_fleet_rows(cleanups), args.sort_by)
    if args.output == "json":
        print(json.dumps({"items": [_row_json(r) for r in rows]}, indent=2, sort_keys=True))
    elif args.output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump({"items": [_row_json(r) for r in rows]}, sort_keys=True))
    elif rows or not args.no_headers:
        print(render_fleet(rows, datetime.now(UTC), wide=args.output == "wide", headers=not args.no_headers))
    if not rows and args.output in ("table", "wide"):
        print("No NodeCleanups: no CleanupPolicy selects a node (or the operator is not running).", file=sys.stderr)
    return EXIT_OK
