"""The chart's `helm test` (its test hook Job runs this in the chart's own image):

    python -m node_janitor.cli.helmtest --namespace NS --deployment NAME [--max-age 5m] [--timeout 120s]

Passes (exit 0) once the operator's Deployment has a ready replica and a NodeCleanup carries a report (its
status.heartbeatTime) no older than --max-age: the operator runs, it made a NodeCleanup from a policy, and an agent
filled its status. Until --timeout it asks again every two seconds; then it names what is missing (exit 1).
Credentials: in-cluster (the Job's ServiceAccount), else --kubeconfig."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from node_janitor.api import GROUP, VERSION
from node_janitor.api.units import format_duration, parse_duration


@dataclass(frozen=True)
class Verdict:
    ok: bool
    lines: tuple[str, ...]


def judge(deployment: dict[str, Any] | None, cleanups: Sequence[dict[str, Any]], now: datetime,
          max_age: timedelta) -> Verdict:  # fmt: skip
    """What the answers of the apiserver say: the operator ready, a NodeCleanup's report fresh."""
    lines: list[str] = []
    ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    if deployment is None:
        lines.append("operator: no Deployment")
    else:
        lines.append(f"operator: {ready} ready replica(s)")
    fresh = []
    for cleanup in cleanups:
        name = cleanup["metadata"]["name"]
        beat = (cleanup.get("status") or {}).get("heartbeatTime")
        if not beat:
            lines.append(f"nodecleanup {name}: no report yet")
            continue
        age = now - datetime.fromisoformat(beat.replace("Z", "+00:00"))
        lines.append(f"nodecleanup {name}: reported {format_duration(max(age, timedelta(0)))} ago")
        if age <= max_age:
            fresh.append(name)
    if not cleanups:
        lines.append("no NodeCleanup (no CleanupPolicy selects a node, or the operator has not acted)")
    return Verdict(ok=ready >= 1 and bool(fresh), lines=tuple(lines))


def _ask(apps: Any, custom: Any, namespace: str, deployment: str) -> tuple[dict[str, Any] | None, list[Any]]:
    from kubernetes.client.exceptions import ApiException

    try:
        found: dict[str, Any] | None = apps.api_client.sanitize_for_serialization(
            apps.read_namespaced_deployment(deployment, namespace)
        )
    except ApiException as e:
        if e.status != 404:
            raise
        found = None
    items = custom.list_cluster_custom_object(GROUP, VERSION, "nodecleanups")["items"]
    return found, list(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node_janitor.cli.helmtest", description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True, help="the release's namespace")
    parser.add_argument("--deployment", required=True, help="the operator's Deployment")
    parser.add_argument("--max-age", default="5m", type=parse_duration, help="the oldest report that passes")
    parser.add_argument("--timeout", default="120s", type=parse_duration, help="how long to ask again")
    parser.add_argument("--kubeconfig", default=None)
    args = parser.parse_args(argv)

    from kubernetes import client

    from node_janitor.controller.kubeconfig import load_configuration

    api = client.ApiClient(load_configuration(args.kubeconfig))
    apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
    deadline = time.monotonic() + args.timeout.total_seconds()
    while True:
        deployment, cleanups = _ask(apps, custom, args.namespace, args.deployment)
        verdict = judge(deployment, cleanups, datetime.now(UTC), args.max_age)
        if verdict.ok or time.monotonic() >= deadline:
            break
        time.sleep(2)  # the next question to the apiserver, not a synchronisation: the loop ends on the answer
    print("\n".join(verdict.lines))
    print("PASS" if verdict.ok else f"FAIL: no ready operator, or no NodeCleanup reported within {args.max_age}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
