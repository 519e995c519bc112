"""`node-janitor operator`: kopf embedded in our process, with the settings chosen here on purpose.

- Peering (ClusterKopfPeering `--peering`, default node-janitor; the chart installs kopf's peering CRD): kopf
  pauses an operator when a peer of higher priority is alive, and pauses *every* operator of equal
  priority. So each replica takes a priority from its start time, the oldest highest: a second replica (a
  rolling update's new pod) waits until the first is gone (its peer record is removed on exit, or expires
  after 60 s). `--standalone` runs without peering (tests, one-replica installs).
- Persistence: every handler is an index or an on.event handler, which kopf never persists: no finalizer,
  no annotation, no patch on any watched object (so none on a Node). The storages and the finalizer are
  still set to our own prefix, so a change-detecting handler added later would write nodejanitor.io names.
- Event posting: our own Events on policies come from the reconciler; kopf posts only warnings and errors
  of its handlers (which on.event handlers skip anyway), under our component name.
- Backoff: watch errors back off 1 s to 60 s, API errors 1 s to 30 s, a failed write of ours 1 s to 30 s.
- The diff base is not built: kopf deep-copies every event's whole body (managedFields and status included) into
  an "essence" that only change-detecting and daemon handlers read, and this operator has none
  (`NoEssenceDiffBase`, used only while the registry has none: the first 5,000-node fill spent 6% of its main
  thread there, and every copy is garbage at once).
- Scanning is off: the resources are fixed, so no watch on CRDs or namespaces is needed (nor its RBAC).
- Start-up dependencies (our CRDs, kopf's peering CRD unless standalone, every RBAC right) are checked
  before kopf starts (`preflight`): one missing is one line and exit code 2, never kopf's silent pause. The
  peering object itself is created when missing (the chart does not render it, so `helm install --wait` does
  not wait on a hook that runs only after the operator is ready). /readyz
  says what the operator waits for meanwhile.
- kopf's index pre-population is made linear in the indexed objects first (`kopf_toggles`): with kopf's own,
  the initial listing of 4,000 Nodes took 53 s of CPU before the first handler ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import kopf

from node_janitor.controller import DEFAULT_METRICS_PORT, DEFAULT_PEERING, kopf_toggles
from node_janitor.controller.handlers import register
from node_janitor.controller.kube import COMPONENT, KubeWriter
from node_janitor.controller.leases import KubeLeases
from node_janitor.controller.metrics import OperatorMetrics
from node_janitor.controller.preflight import (
    PEERING_CHECK_SECONDS,
    OperatorStartError,
    keep_peering,
    wait_for_dependencies,
)
from node_janitor.controller.reconciler import Reconciler, ReconcilerSettings
from node_janitor.http_endpoint import serve_health

__all__ = [
    "DEFAULT_METRICS_PORT",
    "DEFAULT_PEERING",
    "OperatorOptions",
    "OperatorStartError",
    "connection_info",
    "run_operator",
]

PREFIX = "nodejanitor.io"
APISERVER_RETRY = (1, 2, 5, 10, 10, 10, 10, 10)
"""Seconds between start-up checks while the apiserver does not answer (about a minute, then exit code 4)."""

log = logging.getLogger("node_janitor.operator")


@dataclass(frozen=True)
class OperatorOptions:
    metrics_host: str = "0.0.0.0"
    metrics_port: int = DEFAULT_METRICS_PORT
    peering: str = DEFAULT_PEERING
    standalone: bool = False
    agent_namespace: str | None = None
    """Where the agents' Leases are (`leases`); None: none are read."""
    reconciler: ReconcilerSettings = field(default_factory=ReconcilerSettings)


def connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from a kubernetes.client.Configuration (as kopf.login_via_client reads them, but
    from the configuration we loaded: --kubeconfig, in-cluster or $KUBECONFIG)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        default_namespace="default",
    )


class NoEssenceDiffBase(kopf.AnnotationsDiffBaseStorage):  # type: ignore[misc]
    """kopf's annotation diff base (our prefix) that builds no essence and reads none: for a registry without
    change-detecting or daemon handlers, whose causes are the only readers of the essence (`needs_diff_base`)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None


def needs_diff_base(registry: kopf.OperatorRegistry) -> bool:
    """Whether some handler of `registry` reads kopf's diff base: a change-detecting (create/update/delete/field)
    or a daemon/timer handler. Unknown registry internals count as yes."""
    try:
        return bool(registry._changing.get_all_handlers() or registry._spawning.get_all_handlers())
    except AttributeError:
        return True


def configure_settings(settings: kopf.OperatorSettings, diff_base: bool = True) -> None:
    """The kopf settings (module docstring)."""
    settings.persistence.finalizer = f"{PREFIX}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    storage = kopf.AnnotationsDiffBaseStorage if diff_base else NoEssenceDiffBase
    settings.persistence.diffbase_storage = storage(prefix=PREFIX, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = COMPONENT
    settings.posting.reporting_instance = os.environ.get("POD_NAME") or socket.gethostname()
    settings.posting.event_name_prefix = "node-janitor-"
    settings.peering.stealth = True
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    settings.networking.error_backoffs = (1, 2, 5, 10, 20, 30)
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)


def peering_priority(now: float | None = None) -> int:
    """The oldest replica has the highest priority (milliseconds: two replicas never tie in practice)."""
    return -int((time.time() if now is None else now) * 1000)


async def run_operator(options: OperatorOptions, configuration: Any) -> int:
    kopf_toggles.install()
    metrics = OperatorMetrics()
    writer = KubeWriter(configuration)
    leases = KubeLeases(configuration, options.agent_namespace) if options.agent_namespace else None
    reconciler = Reconciler(writer, metrics, options.reconciler, leases)
    registry = kopf.OperatorRegistry()
    register(registry, reconciler)
    ready = asyncio.Event()
    starting = ["checking start-up dependencies (CRDs, peering, RBAC)"]

    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_settings(settings, diff_base=needs_diff_base(registry))

    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(configuration)

    kopf.on.startup(registry=registry)(startup)
    kopf.on.login(registry=registry)(login)

    def readiness() -> tuple[bool, str]:
        if not ready.is_set():
            return False, starting[0]
        return True, "synced" if reconciler.synced.is_set() else "waiting for the initial listing (or a peer)"

    runner = await serve_health(metrics.render, readiness, options.metrics_host, options.metrics_port)
    try:
        peering = None if options.standalone else options.peering
        await wait_for_dependencies(configuration, peering, partial(starting.__setitem__, 0), APISERVER_RETRY)
    except BaseException:
        runner.close()
        await runner.wait_closed()
        writer.close()
        raise
    starting[0] = "starting kopf"
    worker = asyncio.create_task(reconciler.run(), name="node-janitor reconciler")
    await asyncio.sleep(0)  # let it create its tasks before kopf takes its inventory of tasks
    log.info("event=start metrics=%s:%d peering=%s dry_run=%s", options.metrics_host, options.metrics_port,
             "standalone" if options.standalone else options.peering, options.reconciler.dry_run)  # fmt: skip
    # (no stop_flag: kopf leaves its waiter task hanging for 5 s on SIGTERM; a failed reconciler cancels kopf)
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            clusterwide=True,
            standalone=options.standalone,
            peering_name=None if options.standalone else options.peering,
            priority=peering_priority(),
            ready_flag=ready,
        ),
        name="kopf",
    )
    worker.add_done_callback(lambda task: _stop_on_failure(task, operator))
    keeper = None
    if not options.standalone:
        interval = float(os.environ.get("NODE_JANITOR_PEERING_CHECK_SECONDS", PEERING_CHECK_SECONDS))
        keeper = asyncio.create_task(keep_peering(configuration, options.peering, interval), name="peering keeper")
    try:
        await operator
    except asyncio.CancelledError:
        if not worker.done():
            raise  # we are cancelled ourselves
    finally:
        log.info("event=stopping")
        if keeper is not None:
            keeper.cancel()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker
        runner.close()
        await runner.wait_closed()
        writer.close()
        if leases is not None:
            leases.close()
        log.info("event=stopped")
    return 1 if not worker.cancelled() and worker.exception() is not None else 0


def _stop_on_failure(task: asyncio.Task[None], operator: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("event=reconciler-failed error=%r", task.exception())
        operator.cancel()
