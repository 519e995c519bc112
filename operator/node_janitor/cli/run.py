"""`node-janitor run (NODE | -l SELECTOR) [--dry-run] [--wait]`: asks nodes' agents for a run now, and prints
their reports.

The request is the annotation `nodejanitor.io/run-request` (api.nodecleanup.RUN_REQUEST_ANNOTATION) on the node's
NodeCleanup, set with a merge patch under its own field manager (`node-janitor-run`). It is the only thing `run`
writes, a dry run too: a metadata change, so the NodeCleanup's generation (its spec, the operator's) does not
change and neither the operator nor the agent sees a new policy. The token is the time and randomness; a dry run's
starts with `dry-run:` (api.nodecleanup.DRY_RUN_REQUEST_PREFIX). The agent answers with status.lastRun.runRequest
= the token; `--wait` follows the NodeCleanups with a watch until each answered.

`-l` selects Nodes by label, as `kubectl get nodes -l` does (it needs `list nodes`); nodes no CleanupPolicy
selects have no NodeCleanup and are skipped with a warning.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from node_janitor.api import GROUP, VERSION, NodeCleanup
from node_janitor.api.nodecleanup import DRY_RUN_REQUEST_PREFIX, RUN_REQUEST_ANNOTATION, LastRun
from node_janitor.api.units import format_bytes
from node_janitor.cli.errors import EXIT_FAILURE, EXIT_OK, CliError, api_error
from node_janitor.cli.kubeapi import (
    REQUEST_TIMEOUT,
    add_kube_flags,
    custom_objects,
    kube_configuration,
    transport_errors,
)
from node_janitor.cli.render import table

__all__ = [
    "RUN_FIELD_MANAGER",
    "Request",
    "RunRequestError",
    "add_run_parser",
    "cmd_run",
    "make_run_request",
    "render_run_report",
    "render_run_summary",
    "request_run",
    "wait_for_runs",
]

RUN_FIELD_MANAGER: Final = "node-janitor-run"
OUTPUTS: Final = ("table", "wide", "json", "yaml")


class RunRequestError(CliError):
    """A one-line reason the request could not be made (exit code 2)."""


@dataclass
class Request:
    """One node asked: its token, and once it answered, its NodeCleanup."""

    node: str
    token: str
    cleanup: NodeCleanup | None = None
    problem: str | None = None
    """Why no answer will come (its NodeCleanup was deleted, or the wait timed out)."""

    @property
    def answered(self) -> bool:
        last = self.cleanup.status.last_run if self.cleanup is not None and self.cleanup.status else None
        return last is not None and last.run_request == self.token

    @property
    def errors(self) -> list[str]:
        last = self.cleanup.status.last_run if self.cleanup is not None and self.cleanup.status else None
        return list(last.errors) if last is not None and self.answered else []


# --- the parser and the command --------------------------------------------------------------------------


def add_run_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="ask nodes' agents for a cleanup run now; with --wait, print their reports",
        description="Sets the annotation nodejanitor.io/run-request on each node's NodeCleanup (the only write; "
        "a metadata change: the NodeCleanup's generation does not change, for a dry run neither). The agent "
        "runs at once and answers in status.lastRun.",
    )
    run.add_argument("node", nargs="?", metavar="NODE", help="the node (its NodeCleanup has the same name)")
    run.add_argument(
        "-l",
        "--selector",
        metavar="SELECTOR",
        help="the Nodes with these labels, as `kubectl get nodes -l` takes them (pool=gpu,zone!=a)",
    )
    add_kube_flags(run)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="plan only: the agent removes nothing and reports its plan (only the annotation is written)",
    )
    run.add_argument("--wait", action="store_true", help="wait for the agents' reports and print them")
    run.add_argument("--timeout", default="5m", metavar="DURATION", help="how long --wait waits (default 5m)")
    run.add_argument("-o", "--output", choices=OUTPUTS, default="table",
                     help="table (one node: its report; several: a summary), wide (the summary with more "
                          "columns), json or yaml")  # fmt: skip
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from node_janitor.api.units import parse_duration
    from node_janitor.cli.progress import WaitProgress, on_terminal

    if (args.node is None) == (args.selector is None):
        raise CliError("give a NODE or -l SELECTOR (one of them)")
    try:
        timeout = parse_duration(args.timeout).total_seconds()
    except ValueError as exc:
        raise CliError(f"--timeout: {exc}") from None
    configuration = kube_configuration(args.kubeconfig, args.context)
    custom = custom_objects(configuration)
    server = str(configuration.host)
    nodes = [args.node] if args.node is not None else _select_nodes(configuration, args.selector)
    requests = []
    for node in nodes:
        token = make_run_request(args.dry_run)
        try:
            cleanup = request_run(custom, node, token, server=server)
        except RunRequestError as exc:
            if args.node is not None:
                raise
            print(f"node-janitor: warning: {exc}: skipped", file=sys.stderr)
            continue
        if cleanup.spec.policy.paused:
            print(f"node-janitor: warning: {node} is paused by its policy; its agent will not run", file=sys.stderr)
        requests.append(Request(node, token))
    if not requests:
        raise CliError(f"no Node matching {args.selector!r} has a NodeCleanup (no CleanupPolicy selects them)")
    if not args.wait:
        _print_requests(requests, args.output, args.dry_run, single=args.node is not None)
        return EXIT_OK
    with WaitProgress(on_terminal(), len(requests)) as progress:
        wait_for_runs(custom, requests, timeout, on_answer=progress.answered, server=server)
    _print_reports(requests, args.output, single=args.node is not None)
    for request in requests:
        if request.problem is not None:
            print(f"node-janitor: error: {request.problem}", file=sys.stderr)
    return EXIT_FAILURE if any(r.problem or r.errors for r in requests) else EXIT_OK


def _select_nodes(configuration: Any, selector: str) -> list[str]:
    from kubernetes import client

    try:
        listing = client.CoreV1Api(client.ApiClient(configuration)).list_node(
            label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        )
    except transport_errors() as exc:
        raise api_error(exc, f"list the Nodes matching {selector!r}", str(configuration.host)) from None
    names = sorted(item.metadata.name for item in listing.items)
    if not names:
        raise CliError(f"no Node matches {selector!r}")
    return names


# --- the request and the wait ----------------------------------------------------------------------------


def make_run_request(dry_run: bool, now: datetime | None = None) -> str:
    """A fresh token: the time (for people reading the object) and randomness (two requests never clash)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{DRY_RUN_REQUEST_PREFIX if dry_run else ''}{stamp}-{secrets.token_hex(4)}"


def request_run(custom: Any, node: str, token: str, *, server: str = "") -> NodeCleanup:
    """Sets the run-request annotation on the node's NodeCleanup (`custom`: a kubernetes CustomObjectsApi)."""
    from kubernetes.client import ApiException

    try:
        body = custom.patch_cluster_custom_object(
            GROUP, VERSION, "nodecleanups", node, {"metadata": {"annotations": {RUN_REQUEST_ANNOTATION: token}}},
            field_manager=RUN_FIELD_MANAGER, _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
    except ApiException as exc:
        if exc.status == 404:
            raise RunRequestError(
                f"node {node} has no NodeCleanup: no CleanupPolicy selects it (or the operator is not running)"
            ) from None
        raise api_error(exc, f"request a run on {node}", server) from None
    except transport_errors() as exc:
        raise api_error(exc, f"request a run on {node}", server) from None
    return NodeCleanup.from_manifest(body)


def wait_for_runs(
    custom: Any,
    requests: list[Request],
    timeout: float,
    *,
    on_answer: Callable[[int], None] = lambda count: None,
    server: str = "",
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Follows the NodeCleanups (a list, then a watch from its resourceVersion; listed again when the watch's
    version expires) until every request is answered (status.lastRun.runRequest = its token) or `timeout` passes;
    sets each Request's cleanup, or its problem. An unreachable apiserver is kept waiting on until the deadline."""
    from kubernetes import watch
    from kubernetes.client import ApiException

    by_node = {r.node: r for r in requests}
    selector = f"metadata.name={requests[0].node}" if len(requests) == 1 else None
    deadline = clock() + timeout
    version: str | None = None

    def seen(kind: str, obj: dict[str, Any]) -> None:
        request = by_node.get(str((obj.get("metadata") or {}).get("name")))
        if request is None or request.answered or request.problem:
            return
        if kind == "DELETED":
            request.problem = f"the NodeCleanup of {request.node} was deleted while waiting"
            return
        request.cleanup = NodeCleanup.from_manifest(obj)
        if request.answered:
            on_answer(sum(r.answered for r in requests))

    def pending() -> list[Request]:
        return [r for r in requests if not r.answered and r.problem is None]

    last_error: str | None = None
    while pending() and (remaining := deadline - clock()) > 0:
        try:
            if version is None:
                listing = custom.list_cluster_custom_object(
                    GROUP, VERSION, "nodecleanups", field_selector=selector, _request_timeout=REQUEST_TIMEOUT
                )
                names = set()
                for item in listing.get("items", []):
                    names.add(item["metadata"]["name"])
                    seen("ADDED", item)
                for request in pending():
                    if request.node not in names:
                        seen("DELETED", {"metadata": {"name": request.node}})
                version = listing["metadata"]["resourceVersion"]
                continue
            stream = watch.Watch().stream(
                custom.list_cluster_custom_object, GROUP, VERSION, "nodecleanups", field_selector=selector,
                resource_version=version, allow_watch_bookmarks=True, timeout_seconds=max(1, int(remaining)),
                _request_timeout=(REQUEST_TIMEOUT[0], remaining + 10),
            )  # fmt: skip
            for event in stream:
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    version = None  # 410 Gone (expired) or another error status: list again
                    break
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event.get("type") != "BOOKMARK":
                    seen(str(event.get("type")), obj)
                if not pending():
                    break
        except ApiException as exc:
            version = None
            if exc.status not in (410, 429, 500, 502, 503, 504):
                raise api_error(exc, "watch the NodeCleanups", server) from None
            last_error = f"{exc.status} {exc.reason}"
        except transport_errors() as exc:
            version = None
            last_error = str(api_error(exc, "watch the NodeCleanups", server))
            time.sleep(min(1.0, max(0.0, deadline - clock())))  # the apiserver is away: retry once a second
    for request in pending():
        why = f" (last error: {last_error})" if last_error else " (is it running?)"
        request.problem = f"no report from the agent of {request.node} within {timeout:g}s{why}"


# --- output ----------------------------------------------------------------------------------------------


def _print_requests(requests: list[Request], output: str, dry_run: bool, *, single: bool) -> None:
    docs = [{"node": r.node, "runRequest": r.token, "dryRun": dry_run} for r in requests]
    if output in ("json", "yaml"):
        _dump(docs[0] if single else {"items": docs}, output)
        return
    for r in requests:
        print(f"requested {'a dry run' if dry_run else 'a run'} on {r.node} (run request {r.token})")


def _print_reports(requests: list[Request], output: str, *, single: bool) -> None:
    answered = [r for r in requests if r.answered and r.cleanup is not None]
    if output in ("json", "yaml"):

        def status(r: Request) -> dict[str, Any]:
            if r.cleanup is None or r.cleanup.status is None:
                return {}
            return dict(r.cleanup.status.model_dump(mode="json", by_alias=True, exclude_none=True))

        if single:
            _dump(status(requests[0]) if answered else {}, output)
        else:
            items = [{"node": r.node, "runRequest": r.token, "answered": r.answered, "status": status(r)}
                     for r in requests]  # fmt: skip
            _dump({"items": items}, output)
        return
    if output == "table" and single:
        if answered:
            print(render_run_report(answered[0].cleanup))  # type: ignore[arg-type]
        return
    print(render_run_summary(requests, wide=output == "wide"))


def _dump(doc: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(doc, sort_keys=True))


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


def render_run_summary(requests: Sequence[Request], *, wide: bool = False) -> str:
    """One row per node asked: its run's kind, actions, planned and reclaimed bytes and errors (wide: also the
    trigger, duration, disk use after it and the request token); a node that did not answer says so."""
    headers = ["NODE", "RUN", "ACTIONS", "PLANNED", "RECLAIMED", "ERRORS"]
    if wide:
        headers += ["TRIGGER", "DURATION", "DISK%", "REQUEST"]
    rows = []
    for r in requests:
        status = r.cleanup.status if r.cleanup is not None else None
        last = status.last_run if status is not None and r.answered else None
        if last is None:
            row = [r.node, "no answer" if r.problem is None or "deleted" not in r.problem else "deleted",
                   "-", "-", "-", "-"]  # fmt: skip
            extra = ["-", "-", "-", r.token]
        else:
            row = [r.node, "dry run" if last.dry_run else "run", str(last.actions), format_bytes(last.planned_bytes),
                   last.reclaimed or format_bytes(last.reclaimed_bytes), str(len(last.errors))]  # fmt: skip
            disk = status.disk_percent if status is not None else None
            extra = [last.trigger, f"{last.duration_seconds:.1f}s", "-" if disk is None else f"{disk:.1f}%", r.token]
        rows.append(row + extra if wide else row)
    lines = [table(headers, rows)]
    for r in requests:
        lines += [f"{r.node}: {e}" for e in r.errors]
    return "\n".join(lines)
