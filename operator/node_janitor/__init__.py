"""node-janitor: keeps Kubernetes node disks healthy (containerd images, snapshots, content, logs).

The packages, what lives there and what each may import (of ours; `defaults` aside, which every package may import).
docs/architecture.md has the same map, the flow and who writes what.
- `api/`: the pydantic models (CleanupPolicy, NodeCleanup), CRD generation, units, durations, image refs: nothing.
- `runtime/`: our .proto files, generated stubs, typed async CRI and containerd clients, `open_runtime`: `api/`.
- `node/`: the node engine: inventory, collect, plan, execute, last use, `df`, `NodeEngine`, `logs/`: `api/`,
  `runtime/`, `atomic_json`.
- `agent/`: the node agent (`node-janitor agent`) and its own credentials, never the `kubernetes` package: `api/`,
  `runtime/`, `node/`, `http_endpoint`, `atomic_json`.
- `controller/`: the operator (`node-janitor operator`): kopf handlers, pure views, one writer: `api/`,
  `http_endpoint`.
- `cli/`: the commands and their text rendering, `run NODE`, the demo: everything.
- `devbed/`: the private containerd of the tests and the demo, an OCI image builder: `api/`, `runtime/`, `node/`
  (statvfs).
- `http_endpoint`: the agent's and the operator's /metrics and health endpoint (aiohttp): nothing.
- `atomic_json`: the one atomic JSON write of our state files (O_EXCL | O_NOFOLLOW, fsync, rename): nothing.
- `defaults`: the node's conventional paths and names (containerd's socket, `k8s.io`, `overlayfs`, /var/log/pods,
  /var/lib/kubelet): nothing.
"""

__version__ = "0.1.0"
