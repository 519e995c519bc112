"""Issue 21: the agent writes its status when something a reader uses changed, coalesced, with a slow heartbeat
(`agent.status_gate`, `Reporter.loop`); it protects its own node's pods' images (`agent.pods`); and it renews a
Lease as its liveness signal (`agent.liveness`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.agent.kube import KubeError
from node_janitor.agent.liveness import LeaseRenewer, build_lease
from node_janitor.agent.metrics import AgentMetrics
from node_janitor.agent.pods import NodePods, build_pod_images
from node_janitor.agent.policy import PolicyHolder
from node_janitor.agent.report import build_usage_status
from node_janitor.agent.reporter import Reporter
from node_janitor.agent.status_gate import StatusGate
from node_janitor.agent.store import AgentStore
from node_janitor.api.nodecleanup import NodeCleanupStatus
from node_janitor.controller.views import build_cleanup_view
from node_janitor.node.inventory import FileSystemEntry
from node_janitor.node.usage import ROW_TYPES, DiskReport, ImageUsage, UsageRow
from support.agentbed import MemoryKube

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def status(percent: float = 41.2, refs: tuple[str, ...] = ("docker.io/library/a:1",), reason: str = "AsExpected",
           used: int = 1000) -> dict[str, Any]:  # fmt: skip
    return {
        "conditions": [{"type": "Degraded", "status": "False", "reason": reason, "message": ""}],
        "observedGeneration": 3,
        "fileSystems": [{"name": "imagefs", "usedPercent": percent, "usedBytes": used}],
        "usage": {"images": {"totalBytes": used}},
        "imageRefs": list(refs),
        "heartbeatTime": NOW.isoformat(),
    }


def test_the_gate_writes_urgent_changes_at_once_others_coalesced_and_nothing_else_but_the_heartbeat() -> None:
    gate = StatusGate(coalesce=30, heartbeat=300)
    assert gate.due_in(status(), 0) == 0  # the first one
    gate.sent(status(), 0)
    # bytes moved, the percent stayed within its whole point: nothing until the heartbeat
    assert gate.due_in(status(percent=41.9, used=1900), 10) == 290
    # a condition turned: at once
    assert gate.due_in(status(reason="RunErrors"), 10) == 0
    # a new image, or the use crossing to another whole percent: within the coalescing interval
    assert gate.due_in(status(refs=("docker.io/library/a:1", "docker.io/library/b:1")), 10) == 20
    assert gate.due_in(status(percent=42.0), 45) == 0
    assert gate.due_in(status(), 300) == 0  # the heartbeat
    gate.forget()  # the NodeCleanup was made again
    assert gate.due_in(status(), 1) == 0


class Health:
    runtime_error: str | None = None


class _CountingKube(MemoryKube):
    def __init__(self) -> None:
        super().__init__()
        self.patched = asyncio.Event()

    async def patch_status(self, resource: Any, name: str, status: dict[str, Any]) -> None:
        await super().patch_status(resource, name, status)
        self.patched.set()


async def test_an_agent_at_rest_writes_no_status_between_heartbeats(tmp_path: Path) -> None:
    """Measured every 0.02 s with a heartbeat of an hour: one status, then none however often it measures (the
    reporter before issue 21 sent one per measurement); a condition turning is written at once."""
    kube, health = _CountingKube(), Health()
    store = AgentStore(tmp_path / "state")
    policy = PolicyHolder("n", store)
    policy.observe({"metadata": {"name": "n", "generation": 3}, "spec": {"nodeName": "n", "policy": {}}})
    reporter = Reporter("n", kube, store, policy, AgentMetrics(), clock=lambda: NOW,
                        runtime_error=lambda: health.runtime_error, rotator_failure=lambda: None)  # fmt: skip
    measured = asyncio.Event()
    count = [0]

    async def refresh() -> None:
        count[0] += 1
        if count[0] >= 20:
            measured.set()

    task = asyncio.create_task(reporter.loop(0.02, refresh, lambda: False, lambda: 3600.0))
    try:
        await asyncio.wait_for(measured.wait(), 30)
        for _ in range(5):
            reporter.changed()  # something may have changed: nothing did
            await asyncio.sleep(0)
        assert len(kube.patches) == 1
        kube.patched.clear()
        health.runtime_error = "connection refused"
        reporter.changed()
        await asyncio.wait_for(kube.patched.wait(), 30)
        reasons = {c["type"]: c["reason"] for c in kube.patches[1]["conditions"]}
        assert reasons["Degraded"] == "RuntimeUnavailable"
    finally:
        task.cancel()


def test_a_pod_names_every_container_s_image_its_image_volumes_and_its_statuses_image_ids() -> None:
    digest = "sha256:" + "ab" * 32
    pod = {
        "metadata": {"uid": "u1", "name": "p", "namespace": "default"},
        "spec": {"initContainers": [{"name": "i", "image": "busybox"}],
                 "containers": [{"name": "c", "image": "registry.example/app:v1"}],
                 "ephemeralContainers": [{"name": "e", "image": "registry.example/debug:1"}],
                 "volumes": [{"name": "v", "image": {"reference": "registry.example/data:2"}}, {"name": "empty"}]},
        "status": {"containerStatuses": [{"name": "c", "image": "registry.example/app:v1",
                                          "imageID": f"registry.example/app@{digest}"}]},
    }  # fmt: skip
    assert build_pod_images(pod) == {
        "docker.io/library/busybox:latest", "registry.example/app:v1", "registry.example/debug:1",
        "registry.example/data:2", f"registry.example/app@{digest}",
    }  # fmt: skip


def test_a_node_s_pod_images_are_saved_and_protected_after_a_restart_until_the_pods_are_listed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pods.json"
    pending = {"metadata": {"uid": "u1"}, "spec": {"containers": [{"image": "registry.example/pending:1"}]}}
    changes = []
    pods = NodePods(path, on_change=lambda: changes.append(1))
    assert pods.images() == frozenset()
    pods.replace([pending])
    assert pods.images() == {"registry.example/pending:1"} and changes
    assert json.loads(path.read_text()) == {"images": ["registry.example/pending:1"]}
    restarted = NodePods(path)  # the apiserver away: the last known set still protects them
    assert restarted.images() == {"registry.example/pending:1"}
    restarted.replace([])
    assert restarted.images() == frozenset()
    pods.apply("ADDED", {"metadata": {"uid": "u2"}, "spec": {"containers": [{"image": "registry.example/b:1"}]}})
    pods.apply("DELETED", pending)
    assert pods.images() == {"registry.example/b:1"}


class _RefusingKube(MemoryKube):
    async def renew_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> None:
        raise KubeError("leases is forbidden", 403)


async def test_the_lease_is_the_node_s_own_and_a_refused_one_says_so() -> None:
    kube = MemoryKube()
    renewer = LeaseRenewer(kube, "n1", "node-janitor", lambda: NOW)
    assert await renewer.renew() and renewer.healthy
    assert kube.leases == [build_lease("n1", "node-janitor", NOW)]
    assert kube.leases[0]["spec"]["renewTime"] == "2026-12-01T12:00:00.000000Z"
    refused = LeaseRenewer(_RefusingKube(), "n1", "node-janitor", lambda: NOW)
    assert not await refused.renew() and not refused.healthy


def _images(count: int) -> tuple[ImageUsage, ...]:
    """Images as a busy node holds them: a tag and the digest ref CRI records for each, in use or not."""
    images = []
    for i in range(count):
        repo = f"registry.example.com/team-{i % 20:02d}/service-{i:03d}"
        digest = hashlib.sha256(repo.encode()).hexdigest()
        images.append(ImageUsage(
            id="sha256:" + hashlib.sha256(f"config-{i}".encode()).hexdigest(), refs=(f"{repo}:v1.{i}.0",
            f"{repo}@sha256:{digest}"), size=100 << 20, shared_size=0, cri_size=50 << 20, containers=i % 3 == 0,
            created_at=None, last_used=None, pinned=False,
        ))  # fmt: skip
    return tuple(images)


def _report(images: tuple[ImageUsage, ...]) -> DiskReport:
    row = UsageRow(total=len(images), active=1, size=20 << 30, reclaimable=10 << 30)
    file_systems = tuple(
        FileSystemEntry(name, path, 100 << 30, 41 << 30, 59 << 30, 6553600, 20000)
        for name, path in (("imagefs", "/var/lib/containerd"), ("logs", "/var/log/pods"))
    )
    return DiskReport(rows=dict.fromkeys(ROW_TYPES, row), images=images, file_systems=file_systems)


def test_one_status_patch_at_200_images_is_16_kib_or_less_and_the_operator_reads_every_ref(tmp_path: Path) -> None:
    """The whole status the agent sends after a run (usage, file systems, conditions, lastRun, 400 refs of 200
    images): 34 KB of references as a list, packed (`api.packed_refs`) well under 16 KiB."""
    kube = MemoryKube()
    store = AgentStore(tmp_path / "state")
    policy = PolicyHolder("n", store)
    policy.observe({"metadata": {"name": "n", "generation": 3}, "spec": {"nodeName": "n", "policy": {}}})
    reporter = Reporter("n", kube, store, policy, AgentMetrics(), clock=lambda: NOW,
                        runtime_error=lambda: None, rotator_failure=lambda: None)  # fmt: skip
    images = _images(200)
    reporter.measured(_report(images))
    document = reporter.status_document()
    patch = json.dumps({"status": document}).encode()
    assert len(patch) <= 16 * 1024, len(patch)  # (14,734 bytes here; 36 KB with the refs as a plain list)
    NodeCleanupStatus.model_validate(document)
    every_ref = {r for image in images for r in image.refs}
    assert len(json.dumps(sorted(every_ref))) > 32 * 1024  # (what a plain list costs)
    body = {"metadata": {"name": "n"}, "spec": {"nodeName": "n"}, "status": document}
    view = build_cleanup_view(body)
    assert view.image_refs == every_ref and view.image_refs_omitted == 0
    # a node with few images sends them as a plain list, as before
    small = build_usage_status(_report(images[:5]))
    assert small["imageRefsPacked"] is None and len(small["imageRefs"]) == 10 and small["imageRefsOmitted"] == 0
