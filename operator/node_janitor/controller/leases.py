"""The agents' Leases: their liveness signal (`agent/liveness.py` renews one per node, every 60 s, named after the
node, in the agents' namespace, labelled `nodejanitor.io/agent-lease=true`).

The operator lists them every `lease_poll` seconds (one LIST of small objects, label-selected, decoded as plain JSON)
rather than watching them: a watch would bring it one event per agent per minute (83 a second at 5,000 nodes)
for a signal it needs only to within a minute. An agent whose Lease is older than its duration is silent
(`status.is_silent`); a node without a Lease (an agent of an older release) is judged by its status heartbeat,
as before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

__all__ = ["LEASE_SELECTOR", "AgentLease", "KubeLeases", "LeaseSource", "parse_agent_leases"]

LEASE_SELECTOR: Final = "nodejanitor.io/agent-lease=true"


@dataclass(frozen=True)
class AgentLease:
    renewed: datetime
    duration_seconds: int


class LeaseSource(Protocol):
    async def list_agent_leases(self) -> dict[str, AgentLease]:
        """node name -> its agent's Lease."""
        ...


def parse_agent_leases(listing: Mapping[str, Any]) -> dict[str, AgentLease]:
    """The Leases of a LIST answer, by name (= the node's); a Lease without a renewTime is left out."""
    out = {}
    for item in listing.get("items") or ():
        name = (item.get("metadata") or {}).get("name")
        spec = item.get("spec") or {}
        renew = spec.get("renewTime")
        if not isinstance(name, str) or not isinstance(renew, str):
            continue
        try:
            renewed = datetime.fromisoformat(renew)
        except ValueError:
            continue
        duration = spec.get("leaseDurationSeconds")
        out[name] = AgentLease(renewed, duration if isinstance(duration, int) and duration > 0 else 180)
    return out


class KubeLeases:
    """The real LeaseSource: the kubernetes client in a worker thread, its answer decoded as plain JSON (the
    client's models cost ~10x more)."""

    def __init__(self, configuration: Any, namespace: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        self._api = client.ApiClient(configuration)
        self._coordination = client.CoordinationV1Api(self._api)

    def _list(self) -> dict[str, AgentLease]:
        response = self._coordination.list_namespaced_lease(
            self.namespace, label_selector=LEASE_SELECTOR, _preload_content=False
        )
        try:
            return parse_agent_leases(json.loads(response.data))
        finally:
            response.release_conn()

    async def list_agent_leases(self) -> dict[str, AgentLease]:
        return await asyncio.to_thread(self._list)

    def close(self) -> None:
        self._api.close()
