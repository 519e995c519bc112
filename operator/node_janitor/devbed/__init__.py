"""A private, disposable containerd for tests, benchmarks and the demo.

Real parts only: Debian's containerd and runc, an optional loop-mounted ext4 file system so that fullness is
real, and OCI images built here from busybox-static and random bytes (no registry is reachable).
"""

from node_janitor.devbed.containerd import ContainerdBed, DevbedError
from node_janitor.devbed.images import ImageBuilder, Layer, OciImage

__all__ = ["ContainerdBed", "DevbedError", "ImageBuilder", "Layer", "OciImage"]
