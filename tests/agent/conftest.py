"""Fixtures of the agent tests (see `support.agentbed`): the control plane, agents as subprocesses, a Node object
per test, and real nodes (kubelet + kube-scheduler, tests/support/node.py)."""

from support.agentbed import agents as agents
from support.agentbed import crds_established as crds_established
from support.agentbed import node_name as node_name
from support.kube import kube as kube
from support.node import kube_node as kube_node
from support.node import kube_scheduler as kube_scheduler
