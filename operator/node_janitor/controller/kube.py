"""The operator's Kubernetes writes and the client configuration shared with kopf's login.

The kubernetes client is synchronous; every call runs in a worker thread so the event loop (kopf's) never
blocks. NotFound on a delete is success.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from node_janitor.api import GROUP, VERSION
from node_janitor.controller.effective import FIELD_MANAGER
from node_janitor.controller.kubeconfig import load_configuration as load_configuration
from node_janitor.controller.status import PolicyEvent
from node_janitor.controller.views import PolicyView

__all__ = ["ClusterWriter", "KubeWriter", "load_configuration"]

APPLY: Final = "application/apply-patch+yaml"
EVENT_NAMESPACE: Final = "default"
"""Where Events about cluster-scoped objects go (as kubectl describe and kopf look for them)."""
COMPONENT: Final = "node-janitor-operator"


class ClusterWriter(Protocol):
    """What the reconciler writes (the real one is KubeWriter)."""

    async def apply_node_cleanup(self, body: Mapping[str, Any]) -> None:
        """Server-side apply (creates or updates)."""
        ...

    async def remove_node_cleanup_fields(self, name: str, uid: str, pointers: list[str]) -> None:
        """Removes these fields (JSON pointers) from that very object (its uid)."""
        ...

    async def delete_node_cleanup(self, name: str, uid: str) -> None: ...

    async def apply_policy_status(self, name: str, status: Mapping[str, Any]) -> None: ...

    async def post_event(self, policy: PolicyView, event: PolicyEvent) -> None: ...


class KubeWriter:
    def __init__(self, configuration: Any) -> None:
        from kubernetes import client

        self._api = client.ApiClient(configuration)
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()

    def close(self) -> None:
        self._api.close()

    async def apply_node_cleanup(self, body: Mapping[str, Any]) -> None:
        # (the client returns None for a 201: its response map only knows 200)
        await asyncio.to_thread(
            self._custom.patch_cluster_custom_object, GROUP, VERSION, "nodecleanups", body["metadata"]["name"],
            dict(body), field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
        )  # fmt: skip

    async def remove_node_cleanup_fields(self, name: str, uid: str, pointers: list[str]) -> None:
        removals = [{"op": "remove", "path": pointer} for pointer in pointers]
        patch = [{"op": "test", "path": "/metadata/uid", "value": uid}, *removals]
        await asyncio.to_thread(
            self._custom.patch_cluster_custom_object, GROUP, VERSION, "nodecleanups", name, patch,
            field_manager=FIELD_MANAGER, _content_type="application/json-patch+json",
        )  # fmt: skip

    async def delete_node_cleanup(self, name: str, uid: str) -> None:
        from kubernetes.client import ApiException, V1DeleteOptions, V1Preconditions

        try:
            await asyncio.to_thread(
                self._custom.delete_cluster_custom_object, GROUP, VERSION, "nodecleanups", name,
                body=V1DeleteOptions(preconditions=V1Preconditions(uid=uid)),
            )  # fmt: skip
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or already replaced by another object of that name
                raise

    async def apply_policy_status(self, name: str, status: Mapping[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CleanupPolicy", "metadata": {"name": name},
                "status": dict(status)}  # fmt: skip
        await asyncio.to_thread(
            self._custom.patch_cluster_custom_object_status, GROUP, VERSION, "cleanuppolicies", name, body,
            field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
        )  # fmt: skip

    async def post_event(self, policy: PolicyView, event: PolicyEvent) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{policy.name}.", "namespace": EVENT_NAMESPACE},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "CleanupPolicy",
                "name": policy.name,
                "uid": policy.uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await asyncio.to_thread(self._core.create_namespaced_event, EVENT_NAMESPACE, body)
