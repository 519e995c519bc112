"""The agent's test harness: the real `node-janitor agent` as a subprocess against a real containerd bed and the
real apiserver (`kube`). Node objects are created through the API (no kubelet needed for what these tests check);
DiskPressure is set through the Node's status subresource, as the kubelet would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from node_janitor.agent.kube import AgentKube, KubeError, Resource
from node_janitor.devbed import ContainerdBed, OciImage
from node_janitor.devbed.pods import run_pod, start_container, wait_for_state
from node_janitor.runtime import open_runtime

from .inotify import OnDelete
from .kube import REPO, ControlPlane, free_ports
from .poll import wait_for
from .proxy import DelayingProxy

MiB = 1 << 20


class MemoryKube:
    """An in-memory apiserver for one agent (`kube.AgentKube`): the objects it lists (by resource kind; absent
    unless given), watches that never change them, the status patches and Events it was sent (each under a generated
    name; a repeat's patch merged into it). `refuse_status` refuses a full status (one with imageRefs) with that
    error; `crash` is raised by every watch, after the list (a bug, not an apiserver error: the watch task dies)."""

    def __init__(
        self,
        objects: dict[str, dict[str, Any]] | None = None,
        *,
        refuse_status: KubeError | None = None,
        crash: Exception | None = None,
    ) -> None:
        self.objects = dict(objects or {})
        self.refuse_status, self.crash = refuse_status, crash
        self.listed: list[str] = []
        self.patches: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.event_patches: list[tuple[str, dict[str, Any]]] = []
        self.collections: dict[str, list[dict[str, Any]]] = {}
        """Listed by path (e.g. /api/v1/pods: this node's pods)."""
        self.listed_paths: list[str] = []
        self.leases: list[dict[str, Any]] = []
        self.closed = False

    async def list_one(self, resource: Resource, name: str) -> tuple[dict[str, Any] | None, str]:
        self.listed.append(resource.kind)
        return self.objects.get(resource.kind), "1"

    async def watch_one(
        self, resource: Resource, name: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        if self.crash is not None:
            raise self.crash
        await asyncio.Event().wait()
        yield "BOOKMARK", {}  # pragma: no cover

    async def patch_status(self, resource: Resource, name: str, status: dict[str, Any]) -> None:
        if self.refuse_status is not None and "imageRefs" in status:
            raise self.refuse_status
        self.patches.append(status)

    async def create_event(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
        """Stores the Event under a generated name (`metadata.name`, as the apiserver answers)."""
        created = {**event, "metadata": {**event.get("metadata", {}), "name": f"event-{len(self.events)}"}}
        self.events.append(created)
        return created

    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merges `patch` into the stored Event `name` (404 when there is none, as after the event TTL)."""
        for i, event in enumerate(self.events):
            if event["metadata"]["name"] == name:
                self.events[i] = {**event, **patch}
                self.event_patches.append((name, patch))
                return self.events[i]
        raise KubeError(f"events {name!r} not found", 404)

    async def list_objects(self, path: str, field_selector: str) -> tuple[list[dict[str, Any]], str]:
        self.listed_paths.append(path)
        return list(self.collections.get(path, [])), "1"

    async def watch_objects(
        self, path: str, field_selector: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        if self.crash is not None:
            raise self.crash
        await asyncio.Event().wait()
        yield "BOOKMARK", {}  # pragma: no cover

    async def renew_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> None:
        self.leases.append(lease)

    async def close(self) -> None:
        self.closed = True


_pinned: type[AgentKube] = MemoryKube  # mypy checks that MemoryKube is an AgentKube


@dataclass
class Agent:
    """A running `node-janitor agent` subprocess."""

    node: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    state_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def metrics(self) -> dict[str, float]:
        """Every sample, keyed `name{label="value",...}` (labels sorted), parsed by prometheus-client's parser."""
        _, text = self.http("/metrics")
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 without one): e.g.
        `metric("node_janitor_actions_total", kind="remove-image", outcome="done")` over every reason."""
        _, text = self.http("/metrics")
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def terminate(self, timeout: float = 8.0) -> int:
        """SIGTERM; returns the exit code (fails if it takes longer than `timeout`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"agent did not exit within {timeout}s of SIGTERM; log:\n{self.log()[-3000:]}"
                ) from None
        return int(self.process.returncode)


@dataclass
class AgentFactory:
    kube: ControlPlane
    workdir: Path
    agents: list[Agent] = field(default_factory=list)

    def start(
        self,
        node: str,
        bed: ContainerdBed,
        *,
        state_dir: Path | None = None,
        heartbeat: str = "60s",
        env: Mapping[str, str] | None = None,
        **flags: str,
    ) -> Agent:
        port = free_ports(1)[0]
        state_dir = state_dir or self.workdir / f"state-{node}"
        log_path = self.workdir / f"agent-{node}-{len(self.agents)}.log"
        args = [
            sys.executable, "-m", "node_janitor", "agent", "--node-name", node,
            "--kubeconfig", str(self.kube.kubeconfig), "--containerd-socket", bed.address,
            "--containerd-namespace", bed.namespace, "--pod-log-dir", str(bed.pod_log_dir),
            "--state-dir", str(state_dir), "--containerd-config", str(bed.base / "config.toml"),
            "--metrics-port", str(port), "--metrics-bind-address", "127.0.0.1", "--heartbeat-interval", heartbeat,
        ]  # fmt: skip
        for flag, value in flags.items():
            args += [f"--{flag.replace('_', '-')}", value]
        environ = {**os.environ, "PYTHONPATH": str(REPO / "operator"), "PYTHONUNBUFFERED": "1", **(env or {})}
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=environ, cwd=self.workdir)
        agent = Agent(node, process, log_path, port, state_dir)
        self.agents.append(agent)
        wait_for("the agent's /healthz", lambda: process.poll() is None and agent.http("/healthz")[0] == 200, 30)
        return agent

    def stop_all(self) -> list[int]:
        return [agent.terminate() for agent in self.agents]


@pytest.fixture
def agents(kube: ControlPlane, tmp_path: Path) -> Iterator[AgentFactory]:
    factory = AgentFactory(kube, tmp_path)
    try:
        yield factory
    finally:
        codes = factory.stop_all()
        assert all(code == 0 for code in codes), f"an agent exited with {codes} on SIGTERM"


@pytest.fixture(scope="session")
def crds_established(kube: ControlPlane) -> None:
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/nodecleanups.nodejanitor.io")


@pytest.fixture
def node_name(kube: ControlPlane, crds_established: None) -> Iterator[str]:
    """A Node object (created through the API: no kubelet) with a unique name, deleted afterwards with its
    NodeCleanup."""
    name = f"agent-node-{uuid.uuid4().hex[:8]}"
    create_node(kube, name)
    yield name
    kube.kubectl("delete", "nodecleanup", name, "--ignore-not-found", "--wait=false", check=False)
    kube.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)


def create_node(kube: ControlPlane, name: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"test": "agent"}}}
    kube.kubectl("create", "-f", "-", input=json.dumps(manifest))


def apply_nodecleanup(kube: ControlPlane, node: str, policy: dict[str, Any], **spec: Any) -> None:
    """What the operator would write: the node's NodeCleanup with `policy` as its effective policy."""
    manifest = {
        "apiVersion": "nodejanitor.io/v1alpha1",
        "kind": "NodeCleanup",
        "metadata": {"name": node},
        "spec": {"nodeName": node, "policy": policy, **spec},
    }
    kube.kubectl("apply", "--server-side", "--field-manager=test-operator", "-f", "-", input=yaml.safe_dump(manifest))


def nodecleanup(kube: ControlPlane, node: str) -> dict[str, Any]:
    return dict(kube.kubectl_json("get", "nodecleanup", node))


def status(kube: ControlPlane, node: str) -> dict[str, Any]:
    return dict(nodecleanup(kube, node).get("status") or {})


def condition(status_: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status_.get("conditions", []) if c["type"] == type_), {})


def set_disk_pressure(kube: ControlPlane, node: str, pressure: bool) -> None:
    """The Node's DiskPressure condition through the status subresource, as the kubelet reports it."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    value = "True" if pressure else "False"
    reason = "KubeletHasDiskPressure" if pressure else "KubeletHasNoDiskPressure"
    patch = {"status": {"conditions": [{"type": "DiskPressure", "status": value, "reason": reason,
                                        "message": "set by the test", "lastHeartbeatTime": now,
                                        "lastTransitionTime": now}]}}  # fmt: skip
    kube.kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(patch))


def fill_to_percent(bed: ContainerdBed, percent: float, name: str = "ballast") -> None:
    """A ballast file (not removable by the agent) so the bed's disk is at about `percent`."""
    usage = bed.usage()
    capacity = usage.used + usage.available
    want_used = int(capacity * percent / 100)
    if want_used > usage.used:
        bed.fill(leave_available=capacity - want_used, name=name)


def build_images(bed: ContainerdBed, prefix: str, count: int, size: int = 8 * MiB) -> list[OciImage]:
    return bed.builder.random_images(prefix, count, size)


async def image_ids(bed: ContainerdBed) -> set[str]:
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        return {i.id for i in await cri.list_images()}


def import_one_by_one(bed: ContainerdBed, images: list[OciImage]) -> None:
    """Imported in this order, a few milliseconds apart: "never used" images are removed by arrival."""
    for image in images:
        bed.import_images([image])
        time.sleep(0.05)


def import_until_above(bed: ContainerdBed, image: OciImage, percent: float) -> float:
    """Import `image` in the background; returns the monotonic time at which the disk first went above
    `percent` (polled every 20 ms)."""
    worker = threading.Thread(target=bed.import_images, args=([image],))
    worker.start()
    crossed = None
    while crossed is None:
        if bed.usage().used_percent > percent:
            crossed = time.monotonic()
        elif not worker.is_alive():
            worker.join()
            raise AssertionError(f"the import of {image.name} left the disk at {bed.usage().used_percent:.1f}%")
        time.sleep(0.02)
    worker.join()
    return crossed


def wait_for_disk(bed: ContainerdBed, percent: float, timeout: float) -> float:
    """Waits until the disk is at or below `percent`; returns the monotonic time it was seen there."""
    deadline = time.monotonic() + timeout
    while (used := bed.usage().used_percent) > percent:
        if time.monotonic() > deadline:
            raise AssertionError(f"the disk stayed at {used:.1f}% (> {percent}%) for {timeout}s")
        time.sleep(0.05)
    return time.monotonic()


def node_events(kube: ControlPlane, node: str) -> list[dict[str, Any]]:
    events = kube.kubectl_json("get", "events", "-n", "default", "--field-selector", f"involvedObject.name={node}")
    return list(events["items"])


def stage_images(bed: ContainerdBed, prefix: str, unused: int) -> tuple[OciImage, list[OciImage], OciImage]:
    """An image for a running container (imported first), `unused` images imported one by one after it (the oldest
    arrival is the least recently used), and a `late` one left for the test to import."""
    in_use, *old = build_images(bed, prefix, unused + 1)
    late = build_images(bed, f"{prefix}late", 1)[0]
    bed.import_images([in_use])
    import_one_by_one(bed, old)
    return in_use, old, late


async def run_container(bed: ContainerdBed, image: OciImage) -> str:
    """A running container (in a pod sandbox, as the kubelet makes them) from `image`; returns its ID."""
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "busy")
        container = await start_container(cri, pod, "app", image.name, "sleep 3600")
        await wait_for_state(cri, container.id, "RUNNING")
        return container.id


async def running_images_missing(bed: ContainerdBed) -> list[str]:
    """Images of running containers (pause sandboxes included) that are no longer on the node: must stay empty."""
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        present = {i.id for i in await cri.list_images()}
        containers = [c for c in await cri.list_containers() if c.state == "RUNNING"]
    return [f"{c.name}: {c.image_ref}" for c in containers if c.image_ref not in present]


@contextlib.contextmanager
def late_kubeconfig(kube: ControlPlane, workdir: Path, delay: float = 2.0) -> Iterator[Path]:
    """A kubeconfig whose apiserver answers `delay` seconds late (a loopback `DelayingProxy` in front of it)."""
    url = urlsplit(kube.server)
    with DelayingProxy(url.hostname or "127.0.0.1", url.port or 443, delay=delay) as proxy:
        config = yaml.safe_load(kube.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        late = workdir / "late.kubeconfig"
        late.write_text(yaml.safe_dump(config))
        yield late


@contextlib.contextmanager
def frozen_at_first_removal(
    kube: ControlPlane, bed: ContainerdBed, node: str, images: list[OciImage], run_request: str
) -> Iterator[int]:
    """Asks for a run that removes `images` (`run_request`) and freezes containerd (SIGSTOP) the instant its garbage
    collection deletes the first blob of theirs: that collection runs inside a RemoveImage call (CRI removes with
    a synchronous GC), so at least one removal is in flight and, with at most IMAGE_CONCURRENCY in flight and none
    answered, most are not sent yet. (Waiting for the agent's first log line instead let all of them finish first:
    overlapped removals take milliseconds.) Yields containerd's pid; containerd goes on (SIGCONT) on exit."""
    seen = Counter(d for image in images for d in image.blobs)
    ours = {d.removeprefix("sha256:") for d, n in seen.items() if n == 1}  # not the shared busybox layer
    pid = bed.pid
    assert pid is not None
    blobs = bed.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    with OnDelete(blobs, ours, lambda: os.kill(pid, signal.SIGSTOP)) as frozen:
        apply_nodecleanup(kube, node, {"images": {"minAge": "1s", "maxUnusedAge": "1s"}}, runRequest=run_request)
        wait_for("containerd frozen at the first deletion", frozen.fired.is_set, 30, interval=0.01)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)
