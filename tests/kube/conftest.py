"""Fixtures of the Kubernetes tests: one real control plane for the session (`kube`), with our CRDs applied
(`crds`); kube-scheduler for the session (`kube_scheduler`) and real nodes, a kubelet each on its own
containerd bed (`kube_node`, a factory: tests/support/node.py)."""

from support.kube import crds as crds
from support.kube import kube as kube
from support.node import kube_node as kube_node
from support.node import kube_scheduler as kube_scheduler
