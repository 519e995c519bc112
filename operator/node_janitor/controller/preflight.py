"""What the operator needs of the cluster before kopf starts, checked in a second, each answer one line.

Without these kopf waits in silence: with peering on and kopf's peering CRD missing it pauses every handler until
the CRD appears, and with scanning off (app.py) it never sees it appear; with the ClusterKopfPeering object
missing it pauses until it is created (so the operator creates it: `_create_peering`); without our CRDs nothing
is ever listed. The operator says instead what is missing and how to fix it, and exits with code 2 (a
Deployment's pod then shows the line in its log and restarts with backoff, so a dependency installed later is
picked up).

A failed connection is not a missing dependency: the checks are retried while the apiserver does not answer
(`wait_for_apiserver`), each failure logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from node_janitor.api import GROUP, VERSION
from node_janitor.controller.workloads import WORKLOAD_KINDS

__all__ = [
    "ApiserverGone",
    "Dependency",
    "OperatorStartError",
    "check_operator_dependencies",
    "keep_peering",
    "required_access",
]

log = logging.getLogger("node_janitor.operator")

PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL = "kopf.dev", "v1", "clusterkopfpeerings"


class OperatorStartError(Exception):
    """A start-up dependency is missing: one line naming it and the fix."""


class ApiserverUnreachable(Exception):
    """No answer from the apiserver (retried)."""


class ApiserverGone(OperatorStartError):
    """The apiserver did not answer through every retry (`node-janitor operator` exits 4: API unreachable)."""


@dataclass(frozen=True)
class Access:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    name: str = ""

    def __str__(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        group = f".{self.group}" if self.group else ""
        return f"{self.verb} {what}{group}" + (f" {self.name}" if self.name else "")


Dependency = str
"""One line: what is missing and how to fix it."""

CRDS_FIX: Final = "kubectl apply -f crds/ (helm installs them with the chart)"


def required_access(peering: str | None) -> list[Access]:
    """Every right the operator uses (the chart's ClusterRole grants exactly these)."""
    rights = [
        *(Access(v, GROUP, "cleanuppolicies") for v in ("list", "watch")),
        Access("patch", GROUP, "cleanuppolicies", "status"),
        *(Access(v, GROUP, "nodecleanups") for v in ("list", "watch", "create", "patch", "delete")),
        *(Access(v, "", "nodes") for v in ("list", "watch")),
        *(Access(v, k.group, k.plural) for k in WORKLOAD_KINDS for v in ("list", "watch")),
        Access("create", "", "events"),
    ]
    if peering is not None:
        rights += [Access(v, PEERING_GROUP, PEERING_PLURAL) for v in ("list", "watch")]
        # get: the start-up check reads it (a 403 there once passed for "it exists"); create is asked only when
        # it is missing (`_create_peering`)
        rights += [Access(v, PEERING_GROUP, PEERING_PLURAL, name=peering) for v in ("get", "patch")]
    return rights


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a kubernetes client error, None when there was no answer at all."""
    from kubernetes.client import ApiException

    if isinstance(exc, ApiException):
        return int(exc.status) if exc.status else None
    return None


def call(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """(answer, None) or (None, HTTP status); ApiserverUnreachable when there is no answer, or a 5xx one."""
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    try:
        return fn(), None
    except client.ApiException as exc:
        status = _status(exc)
        if status is None or status >= 500:
            raise ApiserverUnreachable(f"{exc.status} {exc.reason}") from None
        return None, status
    except (HTTPError, OSError) as exc:
        raise ApiserverUnreachable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def check_operator_dependencies(configuration: Any, peering: str | None) -> list[Dependency]:
    """What is missing (empty: nothing). Blocking (run it in a thread). Raises ApiserverUnreachable."""
    from kubernetes import client

    api = client.ApiClient(configuration)
    custom, authz = client.CustomObjectsApi(api), client.AuthorizationV1Api(api)

    try:
        missing: list[Dependency] = []
        served, status = call(lambda: custom.get_api_resources(GROUP, VERSION))
        names = {r.name for r in served.resources} if served is not None else set()
        absent = [p for p in ("cleanuppolicies", "nodecleanups") if p not in names]
        if absent:
            missing.append(f"the {', '.join(f'{p}.{GROUP}' for p in absent)} CRD is not installed: {CRDS_FIX}")
        if peering is not None:
            served, status = call(lambda: custom.get_api_resources(PEERING_GROUP, PEERING_VERSION))
            if served is None or PEERING_PLURAL not in {r.name for r in served.resources}:
                missing.append(
                    f"kopf's peering CRD ({PEERING_PLURAL}.{PEERING_GROUP}) is not installed: kubectl apply -f "
                    "deploy/crds/ and create the ClusterKopfPeering (helm installs both), or run with --standalone"
                )
            else:
                _, status = call(lambda: custom.get_cluster_custom_object(PEERING_GROUP, PEERING_VERSION,
                                                                         PEERING_PLURAL, peering))  # fmt: skip
                if status == 404:
                    problem = _create_peering(custom, peering)
                    if problem:
                        missing.append(problem)
        denied = [str(a) for a in required_access(peering) if not _allowed(authz, a)]
        if denied:
            missing.append(f"RBAC does not let the operator {', '.join(denied)}: bind it the chart's ClusterRole")
        return missing
    finally:
        api.close()


PEERING_LABELS: Final = {"app.kubernetes.io/name": "node-janitor", "app.kubernetes.io/component": "operator",
                          "app.kubernetes.io/managed-by": "node-janitor-operator"}  # fmt: skip


def _create_peering(custom: Any, peering: str) -> str:
    """The replicas' ClusterKopfPeering, created when missing (the chart does not render it: helm could only make it
    a post-install hook, which `helm install --wait` runs after the operator is ready, and the operator is not ready
    without it). Empty when it exists now (made here or by a replica starting beside us), else the problem."""
    body = {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}", "kind": "ClusterKopfPeering",
            "metadata": {"name": peering, "labels": dict(PEERING_LABELS)}}  # fmt: skip
    _, status = call(lambda: custom.create_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, body))
    if status is None:
        log.info("event=peering-created name=%s", peering)
        return ""
    if status == 409:  # another replica made it first
        return ""
    return (
        f"the ClusterKopfPeering {peering!r} does not exist and the operator may not create it (HTTP {status}): "
        f"grant it create on clusterkopfpeerings.kopf.dev (the chart does), or create it (kubectl apply -f - with "
        f"apiVersion kopf.dev/v1, kind ClusterKopfPeering, metadata.name {peering}), or pass --peering NAME of an "
        "existing one, or --standalone"
    )


def _allowed(authz: Any, access: Access) -> bool:
    from kubernetes import client

    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=access.verb, group=access.group, resource=access.resource,
                subresource=access.subresource or None, name=access.name or None,
            )
        )
    )  # fmt: skip
    answer, _ = call(lambda: authz.create_self_subject_access_review(review))
    return answer is not None and bool(answer.status.allowed)


async def wait_for_dependencies(
    configuration: Any, peering: str | None, on_state: Callable[[str], None], retry: Iterable[float] = ()
) -> None:
    """Checks once the apiserver answers (retrying after each `retry` delay while it does not; `on_state` hears
    what it is waiting for); raises OperatorStartError with one line when something is missing."""
    delays = iter(retry)
    logged = False
    while True:
        try:
            missing = await asyncio.to_thread(check_operator_dependencies, configuration, peering)
            break
        except ApiserverUnreachable as exc:
            state = f"waiting for the apiserver at {configuration.host}: {exc}"
            on_state(state)
            if not logged:
                log.warning("event=start-waiting %s", state)
                logged = True
            delay = next(delays, None)
            if delay is None:
                raise ApiserverGone(f"the apiserver at {configuration.host} does not answer: {exc}") from None
            await asyncio.sleep(delay)
    if missing:
        raise OperatorStartError("; ".join(missing))


PEERING_CHECK_SECONDS: Final = 60.0
"""How often a running operator checks that its ClusterKopfPeering still exists (one GET)."""


def _ensure_peering(configuration: Any, peering: str) -> str:
    """'' when the peering exists (or was created now), else why not. Blocking; raises ApiserverUnreachable."""
    from kubernetes import client

    api = client.ApiClient(configuration)
    custom = client.CustomObjectsApi(api)

    try:
        _, status = call(lambda: custom.get_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL,
                                                                 peering))  # fmt: skip
        if status == 404:
            log.warning("event=peering-missing name=%s: it was deleted while the operator ran; creating it", peering)
            return _create_peering(custom, peering)
        return "" if status is None else f"cannot read the ClusterKopfPeering {peering!r}: HTTP {status}"
    finally:
        api.close()


async def keep_peering(configuration: Any, peering: str, interval: float = PEERING_CHECK_SECONDS) -> None:
    """Re-creates the replicas' ClusterKopfPeering when it goes away while they run (kopf's keep-alive patches a
    missing peering in silence, so replicas would stop seeing each other): a `helm upgrade` from a chart that
    rendered the peering deletes it, as may a person. Runs until cancelled; a failure is logged once per cause."""
    last = ""
    while True:
        await asyncio.sleep(interval)
        try:
            problem = await asyncio.to_thread(_ensure_peering, configuration, peering)
        except ApiserverUnreachable as exc:
            problem = f"the apiserver does not answer: {exc}"
        if problem and problem != last:
            log.warning("event=peering-check-failed name=%s %s", peering, problem)
        last = problem
