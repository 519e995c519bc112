"""The images of the pods bound to this node: the agent protects them itself (issue 21, issue 22).

The operator indexes pod templates (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs), not every
Pod: at 150,000 Pods that index alone took minutes to list again on a restart. A Pod owned by one of those is
covered by its template; a bare Pod (or one owned by anything else) is covered here, by the agent of the node it is
bound to, which watches only its own node's pods (field selector `spec.nodeName=NODE`; RBAC cannot restrict the
selector, so the agent's role may list every pod: docs/security.md).

Every Pod bound to the node counts, whatever its phase: pending ones (images pulled, containers not started yet),
running, crash-looping or finished ones. Its images are every container's (init and ephemeral ones too), the
image volumes' (`volumes[].image.reference`) and the image IDs its container statuses name.

Fail closed: until the first listing succeeds after a start, the last saved set (`pods.json` in the state
directory) is protected; it is saved again on every change.

A pod waiting to start (phase Pending, or no status yet) is a pull that may begin any moment: the kubelet creates
its sandbox, then pulls its images. `on_starting` hears each such pod as it is listed, added or changed (the agent
samples its disks at once), and `pull_expected()` says one was seen within PULL_EXPECTED_SECONDS (the agent samples
fast meanwhile; the pull's own ingests keep it fast after that). The fill-rate sweep's 40% wave landed within
1.5 s, between two of the idle monitor's 2 s ticks, before the agent had a sample of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from node_janitor.agent.kube import AgentKube, Backoff, Gone, KubeError
from node_janitor.agent.store import read_json, write_atomically
from node_janitor.api.refs import normalize_all

__all__ = ["PODS_PATH", "NodePods", "build_pod_images", "follow_node_pods"]

log = logging.getLogger(__name__)

PODS_PATH = "/api/v1/pods"
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")
PULL_EXPECTED_SECONDS = 30.0
"""How long after a pod of the node was seen waiting to start a pull is expected (module docstring)."""


def _strings(values: Iterable[Any]) -> Iterable[str]:
    return (v for v in values if isinstance(v, str) and v)


def build_pod_images(pod: Mapping[str, Any]) -> frozenset[str]:
    """The normalised image references a Pod names (module docstring); an unparsable one is kept as written."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    names: list[Any] = [c.get("image") for key in _CONTAINER_LISTS for c in spec.get(key) or () if isinstance(c, dict)]
    names += [(v.get("image") or {}).get("reference") for v in spec.get("volumes") or () if isinstance(v, dict)]
    for key in _STATUS_LISTS:
        for s in status.get(key) or ():
            if isinstance(s, dict):
                names += [s.get("image"), _image_id(s.get("imageID"))]
    return normalize_all(_strings(names))


def _image_id(value: Any) -> str | None:
    """containerStatuses[].imageID: `docker-pullable://repo@sha256:...`, `repo@sha256:...` or `sha256:...`."""
    if not isinstance(value, str) or not value:
        return None
    return value.split("://", 1)[-1]


class NodePods:
    """The pods bound to this node, by uid, and the images they name (`images()`)."""

    def __init__(
        self,
        state_file: Path | None = None,
        on_change: Callable[[], None] | None = None,
        *,
        on_starting: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_file, self.on_change = state_file, on_change
        self.on_starting, self.clock = on_starting, clock
        self._starting: set[str] = set()  # uids of the pods waiting to start
        self._starting_seen: float | None = None  # `clock` when one was last seen so
        self._pods: dict[str, frozenset[str]] = {}
        self._images: frozenset[str] = frozenset()
        self.listed = False
        self._saved: frozenset[str] = frozenset()
        if state_file is not None:
            document, warning = read_json(state_file)
            if warning:
                log.warning("%s", warning)
            if isinstance(document, dict) and isinstance(document.get("images"), list):
                self._saved = frozenset(_strings(document["images"]))

    def images(self) -> frozenset[str]:
        """What the node's pods name; before the first listing, what they named when last saved."""
        return self._images if self.listed else self._saved

    def pull_expected(self) -> bool:
        """A pod of the node waits to start and was seen so within PULL_EXPECTED_SECONDS: its images may be pulled
        now."""
        seen = self._starting_seen
        return bool(self._starting) and seen is not None and self.clock() - seen <= PULL_EXPECTED_SECONDS

    def replace(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """A listing: every pod of the node."""
        pods = list(pods)
        self._pods = {_uid(p): build_pod_images(p) for p in pods}
        self._starting = set()
        self.listed = True
        self._update()
        for pod in pods:
            self._note_starting(pod)

    def apply(self, kind: str, pod: Mapping[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED)."""
        if kind == "DELETED":
            self._pods.pop(_uid(pod), None)
            self._starting.discard(_uid(pod))
        elif kind in ("ADDED", "MODIFIED"):
            self._pods[_uid(pod)] = build_pod_images(pod)
        else:
            return
        self._update()
        if kind != "DELETED":
            self._note_starting(pod)

    def _note_starting(self, pod: Mapping[str, Any]) -> None:
        uid = _uid(pod)
        if not _waiting_to_start(pod):
            self._starting.discard(uid)
            return
        self._starting.add(uid)
        self._starting_seen = self.clock()
        if self.on_starting is not None:
            self.on_starting()

    def _update(self) -> None:
        images = frozenset().union(*self._pods.values()) if self._pods else frozenset()
        if images == self._images and self._saved == images:
            return
        self._images = images
        path = self.state_file if images != self._saved else None
        if path is not None and (warning := write_atomically(path, {"images": sorted(images)})) is not None:
            log.warning("%s", warning)
        self._saved = images
        if self.on_change is not None:
            self.on_change()


def _waiting_to_start(pod: Mapping[str, Any]) -> bool:
    """Phase Pending (or none yet), not being deleted."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return not meta.get("deletionTimestamp") and status.get("phase") in (None, "", "Pending")


def _uid(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


async def follow_node_pods(kube: AgentKube, node_name: str, pods: NodePods) -> None:
    """List, then watch, the pods bound to `node_name` for ever (again from a listing on 410 Gone, with backoff
    while the apiserver is away). Never returns (cancel it)."""
    selector = f"spec.nodeName={node_name}"
    backoff = Backoff()
    resource_version: str | None = None
    while True:
        try:
            if resource_version is None:
                items, resource_version = await kube.list_objects(PODS_PATH, selector)
                pods.replace(items)
                log.info("pods listed node=%s pods=%d images=%d", node_name, len(items), len(pods.images()))
            async for kind, obj in kube.watch_objects(PODS_PATH, selector, resource_version):
                resource_version = str(obj.get("metadata", {}).get("resourceVersion") or resource_version)
                pods.apply(kind, obj)
            backoff.reset()
        except Gone:
            resource_version = None
        except KubeError as exc:
            delay = backoff.next()
            log.warning("pod watch failed node=%s retry_in=%.1fs: %s", node_name, delay, exc)
            await asyncio.sleep(delay)
