"""How the agent builds and uses its engine: a run is the very code path of `node-janitor prune` (the agent calls
`engine.NodeEngine.run_once` on the engine built here), and the status's `df` numbers are `node-janitor df`'s
(`NodeEngine.build_disk_report`).

One NodeEngine per containerd connection: it keeps the snapshot-usage cache and the run lock across runs and
reports, and the log janitor and the pod log tree's lock that the fast rotator shares (`build_rotator`): one
log-path cache, one metrics callback, one lock for the tree. The protected images are passed as a callable: the
engine re-reads them right before each image removal, so a spec that changes in the middle of a run is honoured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from node_janitor.api.policy import LogsPolicy
from node_janitor.node.engine import NodeEngine
from node_janitor.node.last_used import LastUsedStore
from node_janitor.node.logs import LogActionResult, LogJanitor, LogRotator, LogTreeLock, RunLock
from node_janitor.runtime import ContainerdClient, CriClient

log = logging.getLogger("node_janitor.agent")


def build_engine(
    cri: CriClient,
    containerd: ContainerdClient,
    *,
    namespace: str,
    pod_log_dir: Path | None,
    state: LastUsedStore,
    kubelet_root: Path,
    state_dir: Path | None = None,
    extra_paths_within: Sequence[str] | None = None,
    on_log_result: Callable[[LogActionResult], None],
    run_lock: RunLock | None = None,
    configured_images: Sequence[str] = (),
) -> NodeEngine:
    """The engine of one connection; `on_log_result` hears every log action, the runs' and the rotator's. No
    extraPaths rule reaches `state_dir` (the agent's own state: its saved policy, status and images' last use)."""
    lock = LogTreeLock(pod_log_dir) if pod_log_dir is not None else None
    janitor = LogJanitor(cri, on_result=on_log_result, tree_lock=lock)
    return NodeEngine(
        cri,
        containerd,
        namespace=namespace,
        pod_log_dir=pod_log_dir,
        state=state,
        log_janitor=janitor,
        log_lock=lock,
        run_lock=run_lock,
        kubelet_root=kubelet_root,
        own_trees=() if state_dir is None else (state_dir,),
        extra_paths_within=extra_paths_within,
        configured_images=configured_images,
    )


async def build_rotator(engine: NodeEngine, pod_log_dir: Path, policy: LogsPolicy) -> LogRotator:
    """The fast rotation loop on the engine's janitor and tree lock; its sweeps' extraPaths keep out of the
    node's containerd and kubelet trees as the engine's runs do."""
    protected: tuple[Path, ...] = ()
    if policy.extra_paths:
        protected, warnings = await engine.protected_trees()
        for warning in warnings:
            log.warning("log rotator: %s", warning)
    return LogRotator(
        engine.cri,
        pod_log_dir,
        policy,
        janitor=engine.log_janitor,
        lock=engine.log_lock,
        protected=protected,
        extra_paths_within=engine.extra_paths_within,
    )
