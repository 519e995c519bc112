"""`node-janitor run NODE [--dry-run] [--wait]`: asks a node's agent for a run now, and prints its report.

The request is spec.runRequest, set with a merge patch under its own field manager (`node-janitor-run`), so
the operator's server-side apply (which never names the field) does not take it back. A dry run is asked for
with a token starting with `dry-run:` (api.nodecleanup.DRY_RUN_REQUEST_PREFIX). The agent answers with
status.lastRun.runRequest = the token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from node_janitor.api import GROUP, VERSION, NodeCleanup
from node_janitor.api.nodecleanup import DRY_RUN_REQUEST_PREFIX, LastRun
from node_janitor.api.units import format_bytes
from node_janitor.cli.render import table

__all__ = [
    "RUN_FIELD_MANAGER",
    "RunRequestError",
    "make_run_request",
    "render_run_report",
    "request_run",
    "wait_for_run",
]

RUN_FIELD_MANAGER: Final = "node-janitor-run"


class RunRequestError(Exception):
    """A one-line reason the request could not be made or answered."""


def make_run_request(dry_run: bool, now: datetime | None = None) -> str:
    """A fresh token: the time (for people reading the object) and randomness (two requests never clash)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{DRY_RUN_REQUEST_PREFIX if dry_run else ''}{stamp}-{secrets.token_hex(4)}"


def request_run(custom: Any, node: str, token: str) -> NodeCleanup:
    """Sets spec.runRequest on the node's NodeCleanup (`custom`: a kubernetes CustomObjectsApi)."""
    from kubernetes.client import ApiException

    try:
        body = custom.patch_cluster_custom_object(
            GROUP, VERSION, "nodecleanups", node, {"spec": {"runRequest": token}},
            field_manager=RUN_FIELD_MANAGER, _content_type="application/merge-patch+json",
        )  # fmt: skip
    except ApiException as exc:
        if exc.status == 404:
            raise RunRequestError(
                f"node {node} has no NodeCleanup: no CleanupPolicy selects it (or the operator is not running)"
            ) from None
        raise RunRequestError(f"cannot request a run on {node}: {exc.status} {exc.reason}") from None
    return NodeCleanup.from_manifest(body)


def wait_for_run(
    custom: Any,
    node: str,
    token: str,
    timeout: float,
    *,
    poll: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> NodeCleanup:
    """Polls the NodeCleanup until status.lastRun.runRequest is `token`; raises RunRequestError on timeout."""
    from kubernetes.client import ApiException

    deadline = clock() + timeout
    while True:
        try:
            cleanup = NodeCleanup.from_manifest(custom.get_cluster_custom_object(GROUP, VERSION, "nodecleanups", node))
        except ApiException as exc:
            if exc.status == 404:
                raise RunRequestError(f"the NodeCleanup of {node} was deleted while waiting") from None
            cleanup = None  # the apiserver may be restarting: keep waiting
        last = cleanup.status.last_run if cleanup is not None and cleanup.status is not None else None
        if cleanup is not None and last is not None and last.run_request == token:
            return cleanup
        if clock() >= deadline:
            raise RunRequestError(f"no report from the agent of {node} within {timeout:g}s (is it running?)")
        time.sleep(poll)


def _run_lines(node: str, run: LastRun) -> list[str]:
    kind = "dry run (nothing removed)" if run.dry_run else "run"
    lines = [
        f"{kind} on {node}: trigger {run.trigger}, started {run.start_time.strftime('%Y-%m-%d %H:%M:%SZ')}, "
        f"took {run.duration_seconds:.1f}s",
        f"actions: {run.actions}   planned: {format_bytes(run.planned_bytes)}   "
        f"reclaimed: {run.reclaimed or format_bytes(run.reclaimed_bytes)}",
    ]
    if run.plan:
        lines += ["", table(["KIND", "REF", "BYTES", "REASON"],
                            [[a.kind, a.ref, format_bytes(a.bytes), a.reason] for a in run.plan])]  # fmt: skip
        if run.actions > len(run.plan):
            lines.append(f"... and {run.actions - len(run.plan)} more actions")
    if run.errors:
        lines += ["", f"errors ({len(run.errors)}):", *(f"  {e}" for e in run.errors)]
    return lines


def render_run_report(cleanup: NodeCleanup) -> str:
    """The run's report as people read it: what ran, what it planned and freed, the plan, the errors, and the
    node's file systems after it."""
    status = cleanup.status
    name = cleanup.spec.node_name
    if status is None or status.last_run is None:
        return f"{name}: no run reported yet"
    lines = _run_lines(name, status.last_run)
    if cleanup.spec.policy.paused:
        lines.insert(1, f"the policy of {name} is paused: nothing is removed (spec.policy.paused)")
    if status.file_systems:
        rows = [[fs.name, fs.path, format_bytes(fs.used_bytes), format_bytes(fs.size_bytes), f"{fs.used_percent:.1f}%"]
                for fs in status.file_systems]  # fmt: skip
        lines += ["", table(["FILE SYSTEM", "PATH", "USED", "SIZE", "USE%"], rows)]
    return "\n".join(lines)
