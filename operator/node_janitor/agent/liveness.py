"""The agent's liveness signal: a coordination.k8s.io Lease named after its node, in the agent's namespace
(POD_NAMESPACE from the downward API), renewed every `LEASE_RENEW` seconds with one small merge patch, as the
kubelet renews its node Lease. The operator lists those Leases (label `LEASE_LABEL`) and flags an agent whose Lease
is older than its duration (`AgentsNotReporting`); with the Lease renewed, the status heartbeat can be slow
(`status_gate`). An admission policy lets an agent write only its own node's Lease (the chart's
admission-policy.yaml).

When a renewal fails for good (403: an older chart without the Lease's RBAC; 404: no namespace), `healthy` turns
False and the reporter goes back to a status heartbeat every measuring interval, which the operator reads as
before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from node_janitor.agent.kube import AgentKube, KubeError

__all__ = ["LEASE_DURATION", "LEASE_LABEL", "LEASE_RENEW", "LeaseRenewer", "build_lease"]

log = logging.getLogger(__name__)

LEASE_RENEW: Final = 60.0
LEASE_DURATION: Final = 180
"""Seconds: three renewals missed make the agent silent for the operator (the issue asks for 5 minutes at most)."""
LEASE_LABEL: Final = ("nodejanitor.io/agent-lease", "true")


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_lease(node_name: str, namespace: str, now: datetime, duration: int = LEASE_DURATION) -> dict[str, Any]:
    key, value = LEASE_LABEL
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node_name, "namespace": namespace, "labels": {key: value}},
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": duration, "renewTime": _micro_time(now)},
    }


class LeaseRenewer:
    def __init__(
        self, kube: AgentKube, node_name: str, namespace: str, clock: Callable[[], datetime],
        interval: float = LEASE_RENEW,
    ) -> None:  # fmt: skip
        self.kube, self.node_name, self.namespace = kube, node_name, namespace
        self.clock, self.interval = clock, interval
        self.healthy = False
        """The last renewal succeeded (the operator can see this agent alive without a status heartbeat)."""

    async def renew(self) -> bool:
        try:
            await self.kube.renew_lease(self.namespace, self.node_name, build_lease(self.node_name, self.namespace,
                                                                                    self.clock()))  # fmt: skip
        except KubeError as exc:
            if self.healthy or exc.status in (0, 401, 408, 429) or exc.status >= 500:
                log.warning("lease renewal failed namespace=%s name=%s: %s", self.namespace, self.node_name, exc)
            else:
                log.error("lease refused namespace=%s name=%s (status heartbeat every interval instead): %s",
                          self.namespace, self.node_name, exc)  # fmt: skip
            self.healthy = False
            return False
        self.healthy = True
        return True

    async def loop(self) -> None:
        """Renews for ever (cancel it); after a failure, again in a quarter of the interval."""
        while True:
            ok = await self.renew()
            await asyncio.sleep(self.interval if ok else self.interval / 4)
