"""node-janitor: keeps Kubernetes node disks healthy (containerd images, snapshots, content, logs)."""

__version__ = "0.1.0"
