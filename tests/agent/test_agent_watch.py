"""The agent's list+watch against the real apiserver: a resourceVersion older than the apiserver's watch cache
gives 410 Gone, and `follow_object` lists again and goes on watching (no change lost)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node_janitor.agent.kube import NODE_CLEANUPS, Gone, KubeClient, Resource, follow_object
from support.agentbed import apply_nodecleanup
from support.kube import ControlPlane

pytestmark = pytest.mark.kube


class FirstListTooOld(KubeClient):
    """The first list answers resourceVersion 1 (long compacted out of the watch cache), as after a long outage."""

    lists = 0

    async def list_one(self, resource: Resource, name: str) -> tuple[dict[str, Any] | None, str]:
        obj, version = await super().list_one(resource, name)
        self.lists += 1
        return obj, ("1" if self.lists == 1 else version)


async def test_a_watch_from_a_too_old_version_is_gone_and_listed_again(
    kube: ControlPlane, node_name: str, crds_established: None
) -> None:
    apply_nodecleanup(kube, node_name, {})
    client = KubeClient.from_config(str(kube.kubeconfig))
    try:
        with pytest.raises(Gone):
            async for _ in client.watch_one(NODE_CLEANUPS, node_name, "1"):
                pass

        relisting = FirstListTooOld.from_config(str(kube.kubeconfig))
        seen: list[tuple[str, str | None]] = []

        def on_change(kind: str, obj: dict[str, Any] | None) -> None:
            seen.append((kind, (obj or {}).get("spec", {}).get("policy", {}).get("schedule")))

        follower = asyncio.create_task(follow_object(relisting, NODE_CLEANUPS, node_name, on_change))
        try:
            for _ in range(100):
                if relisting.lists >= 2:
                    break
                await asyncio.sleep(0.1)
            assert relisting.lists == 2 and [k for k, _ in seen] == ["LIST", "LIST"]
            await asyncio.to_thread(apply_nodecleanup, kube, node_name, {"schedule": "0 3 * * *"})
            for _ in range(100):
                if ("MODIFIED", "0 3 * * *") in seen:
                    break
                await asyncio.sleep(0.1)
            assert ("MODIFIED", "0 3 * * *") in seen, seen
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await relisting.close()
    finally:
        await client.close()
