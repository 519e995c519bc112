"""The node's conventional paths and names, one home for each: the CLI flags, the agent's configuration, the engine,
the runtime clients, the test bed and the models' protected trees default to these. The chart's values.yaml repeats
them for the DaemonSet (tests/test_defaults.py checks that it agrees). Imports nothing: every package may use it."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONTAINERD_ADDRESS = "/run/containerd/containerd.sock"
"""containerd's gRPC socket: it serves both CRI and containerd's own API."""
CONTAINERD_ROOT = Path("/var/lib/containerd")
"""containerd's root directory (content store, snapshots, metadata)."""
CONTAINERD_STATE = Path("/run/containerd")
"""containerd's state directory (sockets, runc's state)."""
DEFAULT_NAMESPACE = "k8s.io"
"""The containerd namespace of the CRI plugin."""
DEFAULT_SNAPSHOTTER = "overlayfs"
"""The snapshotter CRI unpacks images with."""
DEFAULT_POD_LOG_DIR = Path("/var/log/pods")
"""The kubelet's CRI pod log directory."""
DEFAULT_KUBELET_ROOT = Path("/var/lib/kubelet")
"""The kubelet's root directory (never reached by `logs.extraPaths`)."""
DEFAULT_STATE_DIR = Path("/var/lib/node-janitor")
"""The agent's own small state directory on the node (last use of images)."""
