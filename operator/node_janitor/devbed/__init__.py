"""A private, disposable containerd for tests, benchmarks and the demo.

Real parts only: containerd 2.x (built by hack/build-containerd.sh; `NJ_CONTAINERD=1.6` for Debian's) and
Debian's runc, an optional loop-mounted ext4 file system so that fullness is real, and OCI images built here from
busybox-static and random bytes.
"""

from node_janitor.devbed.containerd import ContainerdBed, ContainerdBinaries, DevbedError, containerd_binaries
from node_janitor.devbed.images import ImageBuilder, Layer, OciImage

__all__ = [
    "ContainerdBed",
    "ContainerdBinaries",
    "DevbedError",
    "ImageBuilder",
    "Layer",
    "OciImage",
    "containerd_binaries",
]
