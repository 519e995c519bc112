"""The node agent (`node-janitor agent`): one per node, keeps its disks below the watermarks and reports into its
NodeCleanup. See `node_agent` for what triggers a run. May import `api/`, `runtime/`, `node/` (and
`http_endpoint`); never the `kubernetes` package (a subprocess test asserts it): its credentials are its own
(`credentials`: kubeconfig, in-cluster, exec plugins, as client-go reads them) and its API client is aiohttp (`kube`).
"""

from node_janitor.agent.kube import KubeClient, KubeConfigError
from node_janitor.agent.node_agent import AgentConfig, AgentStartError, NodeAgent, run_agent
from node_janitor.agent.policy import HeldPolicy, PolicyHolder

__all__ = [
    "AgentConfig",
    "AgentStartError",
    "HeldPolicy",
    "KubeClient",
    "KubeConfigError",
    "NodeAgent",
    "PolicyHolder",
    "run_agent",
]
