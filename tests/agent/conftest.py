"""Fixtures of the agent tests (see `harness`): the control plane, agents as subprocesses, a Node object per test,
and real nodes (kubelet + kube-scheduler, tests/testbed/node.py)."""

from agent.harness import agents as agents
from agent.harness import crds_established as crds_established
from agent.harness import node_name as node_name
from testbed.kube import kube as kube
from testbed.node import kube_node as kube_node
from testbed.node import kube_scheduler as kube_scheduler
