"""The operator: CleanupPolicies and Nodes in, one NodeCleanup per selected Node out. May import `api/` only
(and `http_endpoint`, kopf, the `kubernetes` package); `node-janitor run NODE` is the CLI's (`cli.run`).

- `views`: what the operator keeps of each watched object (pure, built from raw bodies).
- `effective`: a node's effective policy, its protected images, the NodeCleanup to apply (pure).
- `workloads`: the image references of Pods and pod templates (pure).
- `status`: a policy's status aggregated from its nodes' reports, and the Events worth posting (pure).
- `reconciler`: the one writer: marks what a change touches, debounces, writes only what differs.
- `kube`: the Kubernetes I/O the reconciler uses (server-side apply, deletes, status, Events).
- `handlers`: the kopf registrations (thin: indexes and on.event handlers only, nothing persisted).
- `app`: `node-janitor operator` (kopf embedded, settings, /metrics, /healthz, /readyz).
- `kubeconfig`: the kubernetes client's Configuration for the operator and `node-janitor run` (not the agent's).
- `kopf_toggles`: a fix for kopf's index pre-population (quadratic in the indexed objects without it).
"""

DEFAULT_METRICS_PORT = 8080
"""The operator's /metrics, /healthz and /readyz port (agreed with the chart)."""
DEFAULT_PEERING = "node-janitor"
"""The ClusterKopfPeering the operator's replicas share (the chart creates it)."""
