"""The kopf registrations: indexes (the operator's state) and on.event handlers (what changed), nothing else.

Neither kind of handler is persisted by kopf: no finalizer, no progress or last-handled-configuration
annotation, no patch of the watched object, so the operator never writes to a Node (nor to a policy's
metadata). Every write goes through the Reconciler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import kopf

from node_janitor.api import GROUP, VERSION
from node_janitor.controller.reconciler import Reconciler
from node_janitor.controller.views import (
    CleanupView,
    NodeView,
    PolicyView,
    build_cleanup_view,
    build_node_view,
    build_policy_view,
)
from node_janitor.controller.workloads import WORKLOAD_KINDS, WorkloadKind, compute_workload_images

__all__ = ["IndexState", "register"]

T = TypeVar("T")

NODES, POLICIES, CLEANUPS = "nj_nodes", "nj_policies", "nj_cleanups"


def _workload_index(kind: WorkloadKind) -> str:
    return f"nj_images_{kind.plural}"


def _one(index: Mapping[str, Any], key: str) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store else None


class IndexState:
    """The ClusterState of the Reconciler, read from kopf's indexes (live mappings of key -> store)."""

    def __init__(self, indices: Mapping[str, Mapping[str, Any]]) -> None:
        self._nodes = indices[NODES]
        self._policies = indices[POLICIES]
        self._cleanups = indices[CLEANUPS]
        self._workloads = [indices[_workload_index(k)] for k in WORKLOAD_KINDS]

    def node(self, name: str) -> NodeView | None:
        view: NodeView | None = _one(self._nodes, name)
        return view

    def nodes(self) -> Iterable[NodeView]:
        return [v for store in self._nodes.values() for v in store]

    def policy(self, name: str) -> PolicyView | None:
        view: PolicyView | None = _one(self._policies, name)
        return view

    def policies(self) -> Iterable[PolicyView]:
        return [v for store in self._policies.values() for v in store]

    def cleanup(self, name: str) -> CleanupView | None:
        view: CleanupView | None = _one(self._cleanups, name)
        return view

    def is_workload_image(self, ref: str) -> bool:
        return any(ref in index for index in self._workloads)

    def workload_images(self) -> Iterable[str]:
        return {ref for index in self._workloads for ref in index}


def _memo_by_version(build: Callable[[kopf.Body], T]) -> Callable[[kopf.Body], T]:
    """`build`, called once per object version: kopf calls two handlers with each NodeCleanup event (an index and
    an on.event handler), and parsing a status of hundreds of imageRefs is most of what an event costs (issue 21: 5,000
    agents' heartbeats)."""
    last: dict[str, tuple[str, T]] = {}

    def cached(body: kopf.Body) -> T:
        meta = body.get("metadata") or {}
        name, version = str(meta.get("name", "")), str(meta.get("resourceVersion", ""))
        hit = last.get(name)
        if hit is not None and version and hit[0] == version:
            return hit[1]
        view = build(body)
        last[name] = (version, view)
        return view

    return cached


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """Registers every handler of the operator on `registry`, feeding `reconciler`. (Plain calls instead of
    decorators: kopf is untyped for mypy.)"""

    def attach(kwargs: Mapping[str, Any]) -> None:
        if reconciler.state is None:
            reconciler.attach(IndexState(kwargs))

    def watch(resource: tuple[str, ...], index: str, view: Callable[[kopf.Body], Any],
              changed: Callable[[str, Any], None]) -> None:  # fmt: skip
        def index_handler(name: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
            return {name: view(body)}

        async def event_handler(name: str, body: kopf.Body, event: Mapping[str, Any], **kwargs: Any) -> None:
            attach(kwargs)
            changed(name, None if event.get("type") == "DELETED" else view(body))

        kopf.index(*resource, id=index, registry=registry)(index_handler)
        kopf.on.event(*resource, id=f"{index}_event", registry=registry)(event_handler)

    cleanup_view = _memo_by_version(build_cleanup_view)
    watch(("v1", "nodes"), NODES, build_node_view, reconciler.node_changed)
    watch((GROUP, VERSION, "cleanuppolicies"), POLICIES, build_policy_view, reconciler.policy_changed)
    watch((GROUP, VERSION, "nodecleanups"), CLEANUPS, cleanup_view, reconciler.cleanup_changed)

    for kind in WORKLOAD_KINDS:
        _register_workload(registry, reconciler, kind, attach)


def _register_workload(
    registry: kopf.OperatorRegistry, reconciler: Reconciler, kind: WorkloadKind, attach: Callable[[Any], None]
) -> None:
    group_version = f"{kind.group}/{kind.version}" if kind.group else kind.version

    def images_index(body: kopf.Body, **_: Any) -> dict[str, None]:
        return dict.fromkeys(compute_workload_images(kind, body))

    async def images_event(body: kopf.Body, event: Mapping[str, Any], namespace: str, name: str, **kwargs: Any) -> None:
        attach(kwargs)
        images = None if event.get("type") == "DELETED" else compute_workload_images(kind, body)
        reconciler.workload_changed(f"{kind.plural}/{namespace}/{name}", images)

    kopf.index(group_version, kind.plural, id=_workload_index(kind), registry=registry)(images_index)
    kopf.on.event(group_version, kind.plural, id=f"{_workload_index(kind)}_event", registry=registry)(images_event)
