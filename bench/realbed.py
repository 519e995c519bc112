"""What the real-bed benchmarks share: images over a few shared bases with compressible layers, a control plane and
the test bed's node outside pytest."""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from node_janitor.devbed import ContainerdBed, ImageBuilder, Layer
from node_janitor.devbed.images import OciImage

REPO = Path(__file__).resolve().parents[1]

MiB = 1 << 20


def text_layer(size: int, seed: str) -> Layer:
    """A layer of `size` bytes of random hex text: gzip shrinks it to ~55%, like real layers (an unpacked snapshot
    takes ~1.8x its blob), unlike `Layer.random`."""
    rng = random.Random(seed)
    return Layer.from_files({f"data/{seed}.txt": rng.randbytes(size // 2).hex().encode()})


def shared_base_images(
    builder: ImageBuilder, n_images: int, n_bases: int, base_mib: int, app_mib: tuple[int, int], tag: str = "bench"
) -> list[OciImage]:
    """`n_images` images: busybox, base `i % n_bases` (`base_mib` MiB unpacked; `n_bases=0`: a base of its own),
    an app layer of their own."""
    rng = random.Random(f"{tag}-{n_images}-{n_bases}")
    bases = [text_layer(base_mib * MiB, f"{tag}-base{b}") for b in range(n_bases)]
    return [
        builder.build(
            f"bench.local/{tag}/app{i}:v1",
            [
                builder.busybox_layer(),
                bases[i % n_bases] if n_bases else text_layer(base_mib * MiB, f"{tag}-own-base{i}"),
                text_layer(rng.randint(*app_mib) * MiB, f"{tag}-app{i}"),
            ],
            cmd=("/bin/sleep", "2147483647"),
        )
        for i in range(n_images)
    ]


def unique_content(images: list[OciImage]) -> int:
    """Bytes of content the images take in one store (shared blobs once)."""
    blobs = {digest: len(blob) for image in images for digest, blob in image.blobs.items()}
    return sum(blobs.values())


def workdir(prefix: str) -> Path:
    """A fresh directory under /tmp, removed when the benchmark exits (after its beds and control plane stop)."""
    path = Path(tempfile.mkdtemp(prefix=f"nj-bench-{prefix}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def bound_pod(name: str, image: str, node: str) -> dict[str, Any]:
    """A pod bound to `node` (no scheduler needed): host network, the image imported, never pulled."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never"}],
        },
    }


def wait_running(core: Any, names: list[str], timeout: float = 120.0) -> None:
    """Until the pods `names` (namespace default) are Running; `core` is a kubernetes CoreV1Api."""
    deadline = time.monotonic() + timeout
    while not all(core.read_namespaced_pod(n, "default").status.phase == "Running" for n in names):
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods {names} not running within {timeout:.0f} s")
        time.sleep(0.5)


def versions_line() -> str:
    """The version pair a real-bed benchmark runs (env NJ_KUBE and NJ_CONTAINERD choose it, as for the test lanes:
    `NJ_KUBE=1.32 NJ_CONTAINERD=1.6` the oldest pair, unset the newest): its first output line."""
    from node_janitor.devbed.containerd import containerd_binaries
    from tests.support.kube import find_binaries

    return f"versions: Kubernetes {find_binaries().kubernetes_version}, containerd {containerd_binaries().version}"


def run_app_pods(core: Any, bed: ContainerdBed, node: str, count: int = 2) -> tuple[list[OciImage], list[str]]:
    """`count` running pods bound to `node` (`<node>-app<i>`), each with its own image (busybox and 4 MiB of random
    data) imported into the node's bed; their images and pod names, once they run."""
    b = bed.builder
    apps = [
        b.build(f"docker.io/bench/{node}-app{i}:1", [b.busybox_layer(), Layer.random(4 * MiB, f"{node}-a{i}")],
                cmd=("/bin/sleep", "2147483647"))
        for i in range(count)
    ]  # fmt: skip
    bed.import_images(apps)
    names = [f"{node}-app{i}" for i in range(count)]
    for pod_name, app in zip(names, apps, strict=True):
        core.create_namespaced_pod("default", bound_pod(pod_name, app.name, node))
    wait_running(core, names)
    return apps, names
