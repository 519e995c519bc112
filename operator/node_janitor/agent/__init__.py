"""The node agent (`node-janitor agent`): one per node, keeps its disks below the watermarks and reports into its
NodeCleanup. May import `api/`, `runtime/`, `node/` (and `http_endpoint`); never the `kubernetes` package (a
subprocess test asserts it). Each part has a public API and tests of its own (tests/agent/test_<part>.py):

- `node_agent`: `NodeAgent`, the composition root: builds the parts on its injected ports (the Kubernetes client,
  the runtime factory, the store, the clock) and runs their loops; what triggers a run is in its docstring.
- `policy`: which policy applies (NodeCleanup, saved, none) and the fail-closed rules (pure, with the store).
- `triggers`: when a run is due: the run queue (coalescing), the monitor's and the watches' decisions, re-arming
  after a run, the cron `Scheduler` (no I/O).
- `fillrate`: ahead of the fill: each file system's growth rate, the image file system's projected time to the
  eviction threshold, the prediction trigger's hysteresis and the monitor's sampling interval (pure).
- `backoff`: a target no run can reach: reported once, retried when something changed (pure).
- `runner`: the runs: one at a time, the engine, SIGTERM, the follow-up rule and the target bookkeeping.
- `reporter`: the NodeCleanup's status (conditions, usage, lastRun, heartbeat), the Events, the run metrics.
- `report`: the shapes the reporter sends (lastRun, conditions, Events, usage; pure).
- `rotation`: the fast log rotation loop beside the runs, restarted with backoff when it dies.
- `runtime_link`: the containerd clients (reconnected), the engine of the current connection, the runtime's
  fingerprint (what the target backoff compares).
- `adapter`: how the engine and the log rotator are built for the agent (`node-janitor prune`'s code path).
- `kube`: its own small apiserver client (aiohttp) and the `AgentKube` port it satisfies; `credentials`: its
  kubeconfig, in-cluster and exec-plugin credentials, as client-go reads them.
- `store`: the state directory (saved policy, status, images' last use; atomic writes); `metrics`: /metrics;
  `preflight`: the checks `node-janitor agent` makes before it starts.

Imports go one way: `node_agent` imports the parts; `runner` -> `reporter`, `triggers`, `runtime_link`;
`reporter` -> `kube`, `policy`, `report`, `metrics`; `triggers` -> `policy`, `backoff`, `report`, `fillrate`;
`metrics` -> `fillrate`; `runtime_link` ->
`backoff`; `policy` -> `store`. No part imports `node_agent`; `node_agent` builds the engine (`adapter`),
`runtime_link` keeps it per connection, only `runner` runs it.
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
