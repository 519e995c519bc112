"""The image references workloads use: the pod templates of the built-in controllers (pure).

A workload uses the image of every container (init and ephemeral ones too) and the image of every image volume
(`volumes[].image.reference`, KEP-4639, GA in Kubernetes 1.36): the kubelet pulls that one too and containerd
mounts it read-only, with no container of that image.

Pods themselves are not indexed (150,000 of them took minutes to list again on a restart): a Pod owned by one of
these is covered by its template, and every Pod, bare or not, by the agent of the node it is bound to, which
protects the images of its node's pods itself (`agent/pods.py`, image volumes included)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from node_janitor.api.refs import normalize_all

__all__ = ["WORKLOAD_KINDS", "WorkloadKind", "compute_workload_images"]


@dataclass(frozen=True)
class WorkloadKind:
    kind: str
    group: str
    version: str
    plural: str
    pod_spec_path: tuple[str, ...]
    """Where the pod spec is in the object."""


WORKLOAD_KINDS: Final = (
    WorkloadKind("Deployment", "apps", "v1", "deployments", ("spec", "template", "spec")),
    WorkloadKind("ReplicaSet", "apps", "v1", "replicasets", ("spec", "template", "spec")),
    WorkloadKind("StatefulSet", "apps", "v1", "statefulsets", ("spec", "template", "spec")),
    WorkloadKind("DaemonSet", "apps", "v1", "daemonsets", ("spec", "template", "spec")),
    WorkloadKind("Job", "batch", "v1", "jobs", ("spec", "template", "spec")),
    WorkloadKind("CronJob", "batch", "v1", "cronjobs", ("spec", "jobTemplate", "spec", "template", "spec")),
)

_CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")


def compute_workload_images(kind: WorkloadKind, body: Mapping[str, Any]) -> frozenset[str]:
    """The normalised image references of every container (init and ephemeral ones too) and every image volume
    of the object's pod spec; an unparsable reference is kept as written (it can then only match the same
    string)."""
    spec: Any = body
    for part in kind.pod_spec_path:
        spec = spec.get(part) if isinstance(spec, Mapping) else None
    if not isinstance(spec, Mapping):
        return frozenset()
    containers = (
        container.get("image")
        for key in _CONTAINER_LISTS
        for container in spec.get(key) or ()
        if isinstance(container, Mapping)
    )
    volumes = (
        volume["image"].get("reference")
        for volume in spec.get("volumes") or ()
        if isinstance(volume, Mapping) and isinstance(volume.get("image"), Mapping)
    )
    return normalize_all(image for image in (*containers, *volumes) if isinstance(image, str) and image)
