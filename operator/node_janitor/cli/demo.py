"""`node-janitor demo`: the whole job against a private containerd that the command starts and removes.

It builds a node in a realistic mess (a shared base under several apps, an image used only by an exited
container, a dangling image left by a moved tag, a leaked blob held by an expired lease, a disk above its
high watermark), then shows `df -v`, a dry-run prune, the prune itself, and `df` again.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from node_janitor.api import CleanupPolicy
from node_janitor.cli.prune import render_prune
from node_janitor.cli.render import render_disk_report
from node_janitor.devbed.containerd import (
    CONTAINERD_ENV,
    SYSTEM_CONTAINERD,
    ContainerdBed,
    ContainerdBinaries,
    DevbedError,
    containerd_binaries,
)
from node_janitor.devbed.images import Layer
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.node.collect import CollectOptions, collect_inventory
from node_janitor.node.engine import NodeEngine
from node_janitor.node.usage import build_disk_report
from node_janitor.runtime import open_runtime

MiB = 1 << 20
GiB = 1 << 30
# The demo imports ~120 MiB of layers (blobs and snapshots: ~240 MiB) and fills the disk to 78%: below this it
# runs out of space; above the maximum, the ballast it writes would be the host's problem.
MIN_DISK = 320 * MiB
MAX_DISK = 8 * GiB
DEMO_POLICY = """
apiVersion: nodejanitor.io/v1alpha1
kind: CleanupPolicy
metadata: {name: demo}
spec:
  thresholds: {highPercent: 70, lowPercent: 50}
  images:
    minAge: 0s
    keep: ["demo.local/platform/*"]
"""


def check_disk_size(disk_size: int, backing_dir: str) -> None:
    """Refuse sizes that are not a loop disk the demo can use (0 would put the demo on the host's own disk)."""
    if not MIN_DISK <= disk_size <= MAX_DISK:
        raise DevbedError(
            f"--disk-size must be between {MIN_DISK // MiB}Mi and {MAX_DISK // GiB}Gi "
            f"(the demo runs on a loop disk of that size), got {disk_size} bytes"
        )
    st = os.statvfs(backing_dir)
    if st.f_bavail * st.f_frsize < disk_size:
        raise DevbedError(
            f"--disk-size {disk_size // MiB}Mi: {backing_dir} has only {st.f_bavail * st.f_frsize // MiB}Mi "
            "available to back the loop disk"
        )


def run_demo(disk_size: int, echo: Callable[[str], None] = print) -> int:
    check_disk_size(disk_size, tempfile.gettempdir())
    if os.geteuid() != 0:
        raise DevbedError("the demo starts its own containerd and mounts a small disk: run it as root")
    with ContainerdBed(disk_size=disk_size, binaries=_demo_containerd()) as bed:
        echo(
            f"Started a private containerd {bed.binaries.version} on {bed.address} with a {disk_size // MiB} MiB "
            f"disk at {bed.disk}"
        )
        asyncio.run(_demo(bed, echo))
    echo("\nStopped the private containerd and removed its disk.")
    return 0


def _demo_containerd() -> ContainerdBinaries:
    """The containerd $NJ_CONTAINERD names; unset, the newest 2.3 built, else Debian's 1.6 (the demo needs no build)."""
    try:
        return containerd_binaries()
    except DevbedError:
        if os.environ.get(CONTAINERD_ENV):
            raise
        return containerd_binaries(SYSTEM_CONTAINERD)


async def _demo(bed: ContainerdBed, echo: Callable[[str], None]) -> None:
    b = bed.builder
    base = Layer.random(24 * MiB, "demo-base")
    runtime = Layer.random(8 * MiB, "demo-runtime")
    images = {
        "web": b.build("demo.local/shop/web:1.4", [b.busybox_layer(), base, runtime, Layer.random(6 * MiB, "web")]),
        "worker": b.build(
            "demo.local/shop/worker:2.0", [b.busybox_layer(), base, runtime, Layer.random(4 * MiB, "wk")]
        ),
        "migrate": b.build("demo.local/shop/migrate:7", [b.busybox_layer(), base, Layer.random(5 * MiB, "mig")]),
        "old-web": b.build("demo.local/shop/web:1.3", [b.busybox_layer(), base, runtime, Layer.random(6 * MiB, "w3")]),
        "report": b.build("demo.local/batch/report:2023", [b.busybox_layer(), Layer.random(20 * MiB, "report")]),
        "agent": b.build("demo.local/platform/agent:1", [b.busybox_layer(), Layer.random(6 * MiB, "agent")]),
        "nightly-1": b.build("demo.local/ci/nightly:latest", [b.busybox_layer(), Layer.random(12 * MiB, "n1")]),
    }
    bed.import_images(list(images.values()))
    nightly2 = b.build("demo.local/ci/nightly:latest", [b.busybox_layer(), Layer.random(10 * MiB, "n2")])
    bed.import_images([nightly2])  # moves the tag: yesterday's nightly is left dangling
    echo("Imported 8 images (a shared 24 MiB base under four of them; 'nightly:latest' moved, leaving one dangling)")

    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        pod = await run_pod(cri, bed.pod_log_dir, "shop")
        web = await start_container(
            cri, pod, "web", "demo.local/shop/web:1.4", "while true; do echo serving; sleep 1; done"
        )
        mig = await start_container(cri, pod, "migrate", "demo.local/shop/migrate:7", "echo migrated")
        await wait_for_state(cri, web.id, "RUNNING")
        await wait_for_state(cri, mig.id, "EXITED")
        echo("Pod 'shop': web:1.4 running, migrate:7 exited (its image stays: an exited container still uses it)")

        lease = await containerd.create_lease("demo-interrupted-pull", expire=timedelta(seconds=1))
        await containerd.with_lease(lease.id).write_content("demo-partial", Layer.random(15 * MiB, "partial").blob)
        await asyncio.sleep(1.1)
        echo("An interrupted pull left 15 MiB behind an expired lease")

        usage = bed.usage()
        capacity = usage.used + usage.available
        await asyncio.to_thread(bed.fill, leave_available=int(capacity * 0.22))
        echo(f"Filled the disk to {bed.usage().used_percent:.0f}% (policy: high 70%, low 50%)\n")

        echo("$ node-janitor df -v")
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        now = datetime.now(UTC)
        echo(render_disk_report(build_disk_report(inventory, now), now, verbose=True))

        policy = CleanupPolicy.from_yaml(DEMO_POLICY, "demo policy")
        for dry_run in (True, False):
            echo(f"\n$ node-janitor prune --policy demo.yaml{' --dry-run' if dry_run else ''}")
            engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
            report = await engine.run_once(policy.spec, dry_run=dry_run)
            echo(render_prune(report))

        echo("\n$ node-janitor df")
        inventory = await collect_inventory(
            cri, containerd, CollectOptions(namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        )
        now = datetime.now(UTC)
        echo(render_disk_report(build_disk_report(inventory, now), now))
        await remove_all_pods(cri)
