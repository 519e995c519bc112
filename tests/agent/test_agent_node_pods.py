"""Issue 21/22 on the real apiserver: the agent watches its own node's pods (field selector spec.nodeName) and
protects their images, pending ones included; a pod bound to another node, or to none, is not its business; and
its Lease is created, then renewed in place."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.agent.kube import KubeClient
from node_janitor.agent.liveness import LeaseRenewer
from node_janitor.agent.pods import NodePods, follow_node_pods
from support.agentbed import create_node
from support.kube import ControlPlane

pytestmark = pytest.mark.kube


def _pod(name: str, node: str | None, image: str) -> str:
    spec = {"containers": [{"name": "c", "image": image}], **({"nodeName": node} if node else {})}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                       "spec": spec})  # fmt: skip


async def _until(check: Callable[[], bool], changed: asyncio.Event) -> None:
    async with asyncio.timeout(30):
        while not check():
            await changed.wait()
            changed.clear()


async def test_the_agent_protects_the_images_of_its_node_s_pods_pending_ones_included(
    kube: ControlPlane,
    node_name: str,
) -> None:
    other = f"agent-other-{uuid.uuid4().hex[:8]}"
    create_node(kube, other)
    suffix = uuid.uuid4().hex[:6]
    # no kubelet here: these pods stay Pending for ever, bound (or not) as the scheduler would have left them
    kube.kubectl("create", "-f", "-", input=_pod(f"bare-{suffix}", node_name, "registry.example/bare:1"))
    kube.kubectl("create", "-f", "-", input=_pod(f"elsewhere-{suffix}", other, "registry.example/elsewhere:1"))
    kube.kubectl("create", "-f", "-", input=_pod(f"unbound-{suffix}", None, "registry.example/unbound:1"))
    client = KubeClient.from_config(str(kube.kubeconfig))
    changed = asyncio.Event()
    pods = NodePods(on_change=changed.set)
    task = asyncio.create_task(follow_node_pods(client, node_name, pods))
    try:
        await _until(lambda: pods.listed, changed)
        assert pods.images() == {"registry.example/bare:1"}
        kube.kubectl("create", "-f", "-", input=_pod(f"late-{suffix}", node_name, "busybox:1.36"))
        await _until(lambda: "docker.io/library/busybox:1.36" in pods.images(), changed)
        kube.kubectl("delete", "pod", f"bare-{suffix}", "-n", "default", "--grace-period=0", "--force")
        await _until(lambda: "registry.example/bare:1" not in pods.images(), changed)
        assert pods.images() == {"docker.io/library/busybox:1.36"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
        for name in ("bare", "elsewhere", "unbound", "late"):
            kube.kubectl("delete", "pod", f"{name}-{suffix}", "-n", "default", "--ignore-not-found", "--grace-period=0",
                         "--force", check=False)  # fmt: skip
        kube.kubectl("delete", "node", other, "--ignore-not-found", check=False)


async def test_the_lease_is_created_then_renewed_in_place(kube: ControlPlane, node_name: str) -> None:
    client = KubeClient.from_config(str(kube.kubeconfig))
    now = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    renewer = LeaseRenewer(client, node_name, "default", lambda: now[0])
    try:
        assert await renewer.renew()
        first = kube.kubectl_json("get", "lease", node_name, "-n", "default")
        now[0] += timedelta(seconds=60)
        assert await renewer.renew()
        second = kube.kubectl_json("get", "lease", node_name, "-n", "default")
        assert first["metadata"]["uid"] == second["metadata"]["uid"]
        assert second["spec"] == {"holderIdentity": node_name, "leaseDurationSeconds": 180,
                                  "renewTime": "2026-12-01T12:01:00.000000Z"}  # fmt: skip
        assert second["metadata"]["labels"] == {"nodejanitor.io/agent-lease": "true"}
    finally:
        await client.close()
        kube.kubectl("delete", "lease", node_name, "-n", "default", "--ignore-not-found", check=False)
