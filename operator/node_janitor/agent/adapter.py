"""The one place the agent calls the engine: a run is the very code path of `node-janitor prune`.

Today `prune.prune` and `usage.build_disk_report`; when `engine.NodeEngine` lands, only these two functions change
(`run_once(rules, dry_run=..., protected_images=<the callable>, on_result=..., on_log_result=...)` re-reads the
protected images before each removal, where `prune` gets the set held at the start of the run; `build_disk_report(
logs_policy=rules.logs, keep=rules.images.keep)`), with one NodeEngine per containerd connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from node_janitor.api.policy import PolicyRules
from node_janitor.collector import SnapshotUsageCache
from node_janitor.executor import ActionResult
from node_janitor.logs import LogActionResult
from node_janitor.node import take_inventory
from node_janitor.prune import PruneReport, prune
from node_janitor.runtime import ContainerdClient, CriClient
from node_janitor.state import LastUsedStore, observe_last_used
from node_janitor.usage import DiskReport, build_disk_report


async def run_cleanup(
    cri: CriClient,
    containerd: ContainerdClient,
    rules: PolicyRules,
    *,
    namespace: str,
    pod_log_dir: Path | None,
    state: LastUsedStore,
    dry_run: bool,
    protected_images: Callable[[], Sequence[str]],
    on_result: Callable[[ActionResult], None],
    on_log_result: Callable[[LogActionResult], None],
) -> PruneReport:
    """One cleanup run with `rules` (the policy held at this moment)."""
    return await prune(
        cri,
        containerd,
        rules,
        namespace=namespace,
        pod_log_dir=pod_log_dir,
        dry_run=dry_run,
        state=state,
        protected_images=tuple(protected_images()),
        on_result=on_result,
        on_log_result=on_log_result,
    )


async def measure_disk(
    cri: CriClient,
    containerd: ContainerdClient,
    rules: PolicyRules,
    *,
    namespace: str,
    pod_log_dir: Path | None,
    state: LastUsedStore,
    cache: SnapshotUsageCache,
) -> DiskReport:
    """The node's `df` report now (committed snapshots measured once, through `cache`)."""
    inventory = await take_inventory(cri, containerd, namespace, pod_log_dir, cache=cache)
    now = datetime.now(UTC)
    known, _ = state.load()
    return build_disk_report(inventory, now, observe_last_used(inventory, now, known), logs_policy=rules.logs)
