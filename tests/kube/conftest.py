"""Fixtures of the Kubernetes tests: one real control plane for the session (`kube`), with our CRDs applied
(`crds`); kube-scheduler for the session (`kube_scheduler`) and real nodes, a kubelet each on its own
containerd bed (`kube_node`, a factory: tests/support/node.py)."""

from __future__ import annotations

import pytest

from support.kube import REPO, ControlPlane
from support.kube import kube as kube
from support.node import kube_node as kube_node
from support.node import kube_scheduler as kube_scheduler

CRD_NAMES = ("cleanuppolicies.nodejanitor.io", "nodecleanups.nodejanitor.io")


@pytest.fixture(scope="session")
def crds(kube: ControlPlane) -> tuple[str, ...]:
    """`kubectl apply -f crds/` (again: the `kube` fixture applied them before starting the controller
    manager), waited until Established; returns the CRD names."""
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES))
    return CRD_NAMES
