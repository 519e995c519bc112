"""Fixtures of the agent tests (see `harness`): the control plane, agents as subprocesses, a Node per test."""

from agent.harness import agents as agents
from agent.harness import crds_established as crds_established
from agent.harness import node_name as node_name
from testbed.kube import kube as kube
