"""The one place the agent calls the engine: a run is the very code path of `node-janitor prune`
(`engine.NodeEngine.run_once`), and the status's `df` numbers are `node-janitor df`'s (`build_disk_report`).

One NodeEngine per containerd connection: it keeps the snapshot-usage cache and the run lock across runs and
reports. The protected images are passed as a callable: the engine re-reads them right before each image
removal, so a spec that changes in the middle of a run is honoured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from node_janitor.api.policy import PolicyRules
from node_janitor.engine import NodeEngine, PruneReport
from node_janitor.executor import ActionResult
from node_janitor.logs import LogActionResult
from node_janitor.runtime import ContainerdClient, CriClient
from node_janitor.state import LastUsedStore
from node_janitor.usage import DiskReport


def build_engine(
    cri: CriClient, containerd: ContainerdClient, *, namespace: str, pod_log_dir: Path | None, state: LastUsedStore
) -> NodeEngine:
    return NodeEngine(cri, containerd, namespace=namespace, pod_log_dir=pod_log_dir, state=state)


async def run_cleanup(
    engine: NodeEngine,
    rules: PolicyRules,
    *,
    dry_run: bool,
    protected_images: Callable[[], Sequence[str]],
    on_result: Callable[[ActionResult], None],
    on_log_result: Callable[[LogActionResult], None],
) -> PruneReport:
    """One cleanup run with `rules` (the policy held at this moment)."""
    return await engine.run_once(
        rules, dry_run=dry_run, protected_images=protected_images, on_result=on_result, on_log_result=on_log_result
    )


async def measure_disk(engine: NodeEngine, rules: PolicyRules) -> DiskReport:
    """The node's `df` report now, with the policy's log rules and keep patterns (as `df --policy`)."""
    return await engine.build_disk_report(logs_policy=rules.logs, keep=rules.images.keep)
