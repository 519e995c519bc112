"""The operator's one writer. kopf handlers tell it what changed; it marks what that touches, debounces,
recomputes from the kopf indexes (complete before the first handler runs) and writes only what differs.

What a change touches:
- a policy's spec (selector, priority, rules) or its creation/deletion: the nodes its old or new selector
  matches (and, when it was invalid, the nodes whose NodeCleanup names it), and its status;
- a Node's labels (or a new Node, a deleted one): that node; its labels or DiskPressure: the status of the
  policies selecting it before or after;
- a NodeCleanup's spec, labels or owner (someone else's edit, a deletion) or its status.imageRefs: that node;
  its status: the status of the policies selecting the node;
- a workload's images: the references that appear or disappear, then only the nodes reporting one of them.

A policy that the models refuse (it passed the apiserver: version skew, a rule CEL cannot express) selects nothing,
but it does not take its nodes' protections away: a NodeCleanup whose spec.sources name an invalid policy keeps its
last valid spec (never rewritten, never deleted) until the policy is valid again or deleted; the policy's status says
InvalidSpec. (Dropping them sent the agents to the CRD defaults, without the policy's keep and paused.)

Three loops, each debounced: nodes (`node_debounce`), workload images (`images_debounce`: a rollout changes
many objects at once) and policy statuses (`status_debounce`: N node reports make one write per policy;
also every `status_resync`, for agents falling silent). A failed write is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from node_janitor.api import NodeCleanupSpec
from node_janitor.controller.effective import (
    MANAGED_BY,
    Effective,
    build_node_cleanup,
    build_node_cleanup_spec,
    compute_effective_policy,
    compute_foreign_fields,
    compute_protected_images,
    is_in_sync,
)
from node_janitor.controller.kube import ClusterWriter
from node_janitor.controller.leases import AgentLease, LeaseSource
from node_janitor.controller.metrics import OperatorMetrics
from node_janitor.controller.status import Member, compute_policy_events, compute_policy_status
from node_janitor.controller.views import CleanupView, NodeView, PolicyView

__all__ = ["ClusterState", "Reconciler", "ReconcilerSettings"]

log = logging.getLogger("node_janitor.operator")

MAX_BACKOFF = 30.0


class ClusterState(Protocol):
    """The operator's view of the cluster (kopf indexes)."""

    def node(self, name: str) -> NodeView | None: ...
    def nodes(self) -> Iterable[NodeView]: ...
    def policy(self, name: str) -> PolicyView | None: ...
    def policies(self) -> Iterable[PolicyView]: ...
    def cleanup(self, name: str) -> CleanupView | None: ...
    def is_workload_image(self, ref: str) -> bool: ...
    def workload_images(self) -> Iterable[str]:
        """Every image reference a workload uses (normalised)."""
        ...


@dataclass(frozen=True)
class ReconcilerSettings:
    node_debounce: float = 0.2
    images_debounce: float = 1.0
    status_debounce: float = 2.0
    status_resync: float = 60.0
    stale_after: timedelta = timedelta(minutes=5)
    """An agent that has not reported for this long makes its policies Degraded (AgentsNotReporting)."""
    lease_poll: float = 60.0
    """How often the agents' Leases are listed (`leases`)."""
    concurrency: int = 8
    dry_run: bool = False
    """Compute and log, write nothing."""


class _Queue:
    """A set of names to recompute, with a wake-up."""

    def __init__(self) -> None:
        self.items: set[str] = set()
        self.event = asyncio.Event()

    def add(self, *names: str) -> None:
        if names:
            self.items.update(names)
            self.event.set()

    async def take(self, debounce: float) -> set[str]:
        await self.event.wait()
        await asyncio.sleep(debounce)
        self.event.clear()
        items, self.items = self.items, set()
        return items


class Reconciler:
    def __init__(
        self, writer: ClusterWriter, metrics: OperatorMetrics, settings: ReconcilerSettings,
        leases: LeaseSource | None = None,
    ) -> None:  # fmt: skip
        self.writer = writer
        self.lease_source = leases
        self._leases: dict[str, AgentLease] = {}
        """node -> its agent's Lease, as last listed."""
        self._alive: dict[str, bool] = {}
        self.metrics = metrics
        self.settings = settings
        self.state: ClusterState | None = None
        self.synced = asyncio.Event()
        self._nodes, self._policies, self._refs = _Queue(), _Queue(), _Queue()
        self._seen_nodes: dict[str, NodeView] = {}
        self._seen_policies: dict[str, PolicyView] = {}
        self._seen_cleanups: dict[str, CleanupView] = {}
        self._seen_workloads: dict[str, frozenset[str]] = {}
        self._partial_refs: set[str] = set()
        """Nodes whose status.imageRefs leaves refs out: any workload image may be theirs."""
        self._written_cleanups: dict[str, tuple[NodeCleanupSpec, str, str]] = {}
        """node -> (spec, node uid, the NodeCleanup's resourceVersion before): written, its event not seen."""
        self._written_status: dict[str, Any] = {}
        """policy uid -> the status written, until the policy's next event."""
        self._failures: dict[str, int] = {}
        self._effective: dict[frozenset[tuple[str, str]], Effective | None] = {}
        """Effective policy by label set (nodes share labels), emptied whenever a policy changes."""
        self._workloads_version = 0
        """Counts the changes of the workloads' images."""
        self._in_sync_memo: dict[str, tuple[tuple[Any, ...], bool]] = {}
        """node -> (what `_member_in_sync` depended on, its answer)."""
        self._selected: dict[str, set[str]] | None = None
        """policy -> the nodes its selector matches: built from the indexes by the first status pass (complete
        then), kept by the handlers since, so a status pass costs O(its members), not O(nodes x policies)."""

    # --- marks (called by the kopf handlers; cheap, synchronous) -----------------------------------------

    def attach(self, state: ClusterState) -> None:
        """The first handler call: every index holds its initial listing now."""
        if self.state is None:
            self.state = state
            self.synced.set()
            self.metrics.synced.set(1)

    def node_changed(self, name: str, view: NodeView | None) -> None:
        old = self._seen_nodes.pop(name, None)
        if view is not None:
            self._seen_nodes[name] = view
        else:
            self._in_sync_memo.pop(name, None)
        self.metrics.objects.labels("nodes").set(len(self._seen_nodes))
        if old is None or view is None or old.labels != view.labels or old.uid != view.uid:
            self._nodes.add(name)
            self._mark_policies_selecting(old, view)
            self._select_node(name, view)
        elif old.disk_pressure != view.disk_pressure:
            self._mark_policies_selecting(old, view)

    def policy_changed(self, name: str, view: PolicyView | None) -> None:
        old = self._seen_policies.pop(name, None)
        if view is not None:
            self._seen_policies[name] = view
            self._written_status.pop(view.uid, None)
        self.metrics.objects.labels("cleanuppolicies").set(len(self._seen_policies))
        if old is None or view is None or _spec_of(old) != _spec_of(view):
            self._effective.clear()
            self._nodes.add(
                *(n.name for n in self._seen_nodes.values() if any(p.selects(n.labels) for p in (old, view) if p))
            )
            if old is not None and old.error is not None:  # the nodes it kept (it selected nothing meanwhile)
                self._nodes.add(*(c.name for c in self._seen_cleanups.values() if name in _source_names(c)))
            self._select_policy(name, view)
        if view is not None and (old is None or _spec_of(old) != _spec_of(view) or old.status != view.status):
            self._policies.add(name)

    def cleanup_changed(self, name: str, view: CleanupView | None) -> None:
        old = self._seen_cleanups.pop(name, None)
        if view is not None:
            self._seen_cleanups[name] = view
        self._written_cleanups.pop(name, None)
        self.metrics.objects.labels("nodecleanups").set(len(self._seen_cleanups))
        if (
            old is None
            or view is None
            or (old.spec, old.labels, old.owner_uids, old.image_refs, bool(old.image_refs_omitted))
            != (view.spec, view.labels, view.owner_uids, view.image_refs, bool(view.image_refs_omitted))
        ):
            self._nodes.add(name)
        if view is not None and view.image_refs_omitted:
            self._partial_refs.add(name)
        else:
            self._partial_refs.discard(name)
        if old is None or view is None or _aggregate(old) != _aggregate(view) or old.spec != view.spec:
            node = self._seen_nodes.get(name)
            self._mark_policies_selecting(node, None)

    def workload_changed(self, key: str, images: frozenset[str] | None) -> None:
        old = self._seen_workloads.pop(key, frozenset())
        if images:
            self._seen_workloads[key] = images
        if changed := old ^ (images or frozenset()):
            self._workloads_version += 1
            self._refs.add(*changed)

    def pending(self) -> dict[str, set[str]]:
        """What is marked for the next passes: node names, policy names, image references."""
        return {"nodes": set(self._nodes.items), "policies": set(self._policies.items), "images": set(self._refs.items)}

    def _selection(self) -> dict[str, set[str]]:
        assert self.state is not None
        if self._selected is None:
            policies = list(self.state.policies())
            self._selected = {p.name: set() for p in policies}
            for node in self.state.nodes():
                for policy in policies:
                    if policy.selects(node.labels):
                        self._selected[policy.name].add(node.name)
        return self._selected

    def _select_node(self, name: str, view: NodeView | None) -> None:
        if self._selected is None or self.state is None:
            return  # (built complete by the first status pass)
        for policy in self.state.policies():
            nodes = self._selected.setdefault(policy.name, set())
            if view is not None and policy.selects(view.labels):
                nodes.add(name)
            else:
                nodes.discard(name)

    def _select_policy(self, name: str, view: PolicyView | None) -> None:
        if self._selected is None or self.state is None:
            return
        if view is None:
            self._selected.pop(name, None)
        else:
            self._selected[name] = {n.name for n in self.state.nodes() if view.selects(n.labels)}

    def _mark_policies_selecting(self, *nodes: NodeView | None) -> None:
        self._policies.add(
            *(p.name for p in self._seen_policies.values() if any(p.selects(n.labels) for n in nodes if n))
        )

    # --- the loops ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Every task the reconciler ever runs is created here, before the first await (kopf, started after
        this, treats tasks it did not see at its start as its own hung tasks and waits for them on exit)."""
        passes = (
            ("nodes", self._nodes, self.settings.node_debounce, self._reconcile_node),
            ("policies", self._policies, self.settings.status_debounce, self._reconcile_policy),
        )
        async with asyncio.TaskGroup() as group:
            for kind, queue, debounce, work in passes:
                batch: asyncio.Queue[str] = asyncio.Queue()
                group.create_task(self._dispatch(kind, queue, debounce, partial(_hand_over, batch)))
                for _ in range(self.settings.concurrency):
                    group.create_task(self._consume(kind, queue, batch, work))
            group.create_task(self._dispatch("images", self._refs, self.settings.images_debounce, self._distribute))
            group.create_task(self._resync_statuses())
            if self.lease_source is not None:
                group.create_task(self._poll_leases(self.lease_source))

    async def _dispatch(self, kind: str, queue: _Queue, debounce: float,
                        handle: Callable[[set[str]], Awaitable[None] | None]) -> None:  # fmt: skip
        """Debounces the marks of one kind and hands each batch to `handle` (the consumers, or the image
        distribution, which takes a batch at once)."""
        await self.synced.wait()
        if kind == "nodes":
            log.info("event=synced nodes=%d policies=%d nodecleanups=%d", len(self._seen_nodes),
                     len(self._seen_policies), len(self._seen_cleanups))  # fmt: skip
        while True:
            self.metrics.pending.labels(kind).set(len(queue.items))
            names = await queue.take(debounce)
            started = time.monotonic()
            if (handled := handle(names)) is not None:
                await handled
            self.metrics.reconcile_seconds.labels(kind).observe(time.monotonic() - started)

    async def _consume(self, kind: str, queue: _Queue, batch: asyncio.Queue[str], work: Callable[[str], Any]) -> None:
        while True:
            name = await batch.get()
            try:
                await work(name)
                self._failures.pop(f"{kind}/{name}", None)
            except Exception as exc:
                self._retry(kind, queue, name, exc)
            finally:
                batch.task_done()

    def _retry(self, kind: str, queue: _Queue, name: str, exc: Exception) -> None:
        key = f"{kind}/{name}"
        attempts = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(MAX_BACKOFF, 2.0 ** (attempts - 1))
        log.warning("event=retry kind=%s name=%s attempt=%d in=%.0fs error=%r", kind, name, attempts, delay,
                    _short(exc))  # fmt: skip
        asyncio.get_running_loop().call_later(delay, queue.add, name)

    async def _resync_statuses(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_resync)
            self._policies.add(*self._seen_policies)

    async def _poll_leases(self, source: LeaseSource) -> None:
        """Lists the agents' Leases; the policies of nodes whose agent turned silent or alive are marked."""
        await self.synced.wait()
        while True:
            try:
                self.leases_listed(await source.list_agent_leases(), datetime.now(UTC))
            except Exception as exc:
                log.warning("event=lease-list-failed error=%r", _short(exc))
            await asyncio.sleep(self.settings.lease_poll)

    def leases_listed(self, leases: dict[str, AgentLease], now: datetime) -> None:
        self._leases = leases
        alive = {n: now <= lease.renewed + timedelta(seconds=lease.duration_seconds) for n, lease in leases.items()}
        flipped = {n for n in alive.keys() | self._alive.keys() if alive.get(n) != self._alive.get(n)}
        self._alive = alive
        self._mark_policies_selecting(*(self._seen_nodes.get(n) for n in flipped))

    # --- the work ----------------------------------------------------------------------------------------

    def _effective_for(self, state: ClusterState, node: NodeView) -> Effective | None:
        labels = frozenset(node.labels.items())
        if labels not in self._effective:
            self._effective[labels] = compute_effective_policy(state.policies(), node.labels)
        return self._effective[labels]

    def _desired(self, state: ClusterState, node: NodeView, cleanup: CleanupView | None) -> NodeCleanupSpec | None:
        effective = self._effective_for(state, node)
        if effective is None:
            return None
        held = cleanup.image_refs if cleanup is not None else frozenset()
        if cleanup is not None and cleanup.image_refs_omitted:
            # Its list is cut short (a node with thousands of images): an unlisted ref may be held, and a
            # protection must never be lost for that, so every workload image is protected on it.
            held = held | frozenset(state.workload_images())
        protected = compute_protected_images(held, state.is_workload_image, effective.rules.images.keep_workload_images)
        return build_node_cleanup_spec(node.name, effective, protected)

    def _is_in_sync(self, node: NodeView, current: CleanupView | None, spec: NodeCleanupSpec) -> bool:
        written = self._written_cleanups.get(node.name)
        current_rv = current.resource_version if current is not None else ""
        if written is not None and written == (spec, node.uid, current_rv):
            return True  # written; its watch event has not arrived yet
        return is_in_sync(current, node, spec)

    async def _reconcile_node(self, name: str) -> None:
        assert self.state is not None
        node, current = self.state.node(name), self.state.cleanup(name)
        desired = self._desired(self.state, node, current) if node is not None else None
        if node is not None and current is not None and (invalid := self._invalid_sources(current)):
            self.metrics.unchanged.labels("nodecleanup").inc()
            log.info("event=kept nodecleanup=%s invalid-policies=%s: its last valid spec stays", name,
                     ",".join(invalid))  # fmt: skip
            return
        if desired is None or node is None:
            if current is not None and current.labels.get(MANAGED_BY[0]) == MANAGED_BY[1]:
                await self._write("nodecleanup", "delete", name, self.writer.delete_node_cleanup(name, current.uid))
            return
        if self._is_in_sync(node, current, desired):
            self.metrics.unchanged.labels("nodecleanup").inc()
            return
        before = current.resource_version if current is not None else ""
        foreign = compute_foreign_fields(desired, current.spec) if current is not None and current.spec else []
        if current is not None and foreign:  # set by someone else where ours is unset: apply would leave them
            log.warning("event=foreign-fields nodecleanup=%s fields=%s", name, ",".join(foreign))
            await self._write(
                "nodecleanup", "remove-fields", name, self.writer.remove_node_cleanup_fields(name, current.uid, foreign)
            )
        await self._write(
            "nodecleanup", "apply", name, self.writer.apply_node_cleanup(build_node_cleanup(node, desired))
        )
        self._written_cleanups[name] = (desired, node.uid, before)

    def _invalid_sources(self, cleanup: CleanupView) -> list[str]:
        """The policies named in the NodeCleanup's spec.sources that exist but do not validate now."""
        assert self.state is not None
        return [n for n in _source_names(cleanup) if (p := self.state.policy(n)) is not None and p.error is not None]

    def _distribute(self, refs: Iterable[str]) -> None:
        """Marks the nodes that hold one of `refs` (a workload's image appeared or went), and every node whose
        list is cut short (it may hold any). One pass over the NodeCleanups per debounced batch of references."""
        changed = frozenset(refs)
        holders = [name for name, view in self._seen_cleanups.items() if not changed.isdisjoint(view.image_refs)]
        self._nodes.add(*holders, *self._partial_refs)

    def members(self, policy: PolicyView) -> list[Member]:
        assert self.state is not None
        members = []
        for name in self._selection().get(policy.name, ()):
            node = self.state.node(name)
            if node is not None and policy.selects(node.labels):
                cleanup = self.state.cleanup(name)
                members.append(Member(node, cleanup, self._member_in_sync(node, cleanup), self._leases.get(name)))
        return members

    def _member_in_sync(self, node: NodeView, cleanup: CleanupView | None) -> bool:
        """Whether the node's NodeCleanup holds what the operator compiles for it, remembered while nothing it
        depends on changes: the node's view (a new object on every change), what the in-sync check reads of the
        NodeCleanup (`_same_plan_inputs`; not its status: a heartbeat alone is a new view, 1,000 a minute at 5,000
        nodes, and recomputing each cost a status resync 6% of the operator's time at rest), its effective
        policy (recomputed on every policy change), the workloads' images; not while a write of ours waits for
        its event (brief, and the memo would keep the written spec alive). Every status pass asks it for every
        member: building and comparing the spec each time made the passes of a first fill cost O(nodes) each,
        and there are O(nodes) of them."""
        assert self.state is not None
        effective, version = self._effective_for(self.state, node), self._workloads_version
        memo = self._in_sync_memo.pop(node.name, None)
        if node.name not in self._written_cleanups and memo is not None:
            (was_node, was_cleanup, was_effective, was_version), in_sync = memo
            if (
                was_node is node
                and _same_plan_inputs(was_cleanup, cleanup)
                and was_effective is effective
                and was_version == version
            ):
                self._in_sync_memo[node.name] = ((node, cleanup, effective, version), in_sync)
                return in_sync
        desired = self._desired(self.state, node, cleanup)
        in_sync = desired is not None and self._is_in_sync(node, cleanup, desired)
        if node.name not in self._written_cleanups:
            self._in_sync_memo[node.name] = ((node, cleanup, effective, version), in_sync)
        return in_sync

    async def _reconcile_policy(self, name: str) -> None:
        assert self.state is not None
        policy = self.state.policy(name)
        if policy is None:
            return
        now = datetime.now(UTC)
        new = compute_policy_status(policy, self.members(policy), now, self.settings.stale_after)
        current = self._written_status.get(policy.uid, policy.status)
        if new == current:
            self.metrics.unchanged.labels("policy-status").inc()
            return
        body = new.model_dump(mode="json", exclude_none=True)
        await self._write("policy-status", "apply", name, self.writer.apply_policy_status(name, body))
        self._written_status[policy.uid] = new
        for event in compute_policy_events(current, new):
            log.info("event=policy-event policy=%s type=%s reason=%s message=%r", name, event.type, event.reason,
                     event.message)  # fmt: skip
            if not self.settings.dry_run:
                with contextlib.suppress(Exception):  # an Event is worth a try, never a retry of the status
                    await self.writer.post_event(policy, event)
                    self.metrics.events.labels(event.type, event.reason).inc()

    async def _write(self, kind: str, operation: str, name: str, call: Any) -> None:
        if self.settings.dry_run:
            call.close()
            log.info("event=would-write object=%s operation=%s name=%s", kind, operation, name)
            self.metrics.writes.labels(kind, operation, "dry-run").inc()
            return
        try:
            await call
        except Exception:
            self.metrics.writes.labels(kind, operation, "error").inc()
            raise
        self.metrics.writes.labels(kind, operation, "ok").inc()
        log.info("event=write object=%s operation=%s name=%s", kind, operation, name)


def _spec_of(policy: PolicyView) -> tuple[Any, ...]:
    return (policy.uid, policy.generation, policy.priority, policy.selector, policy.rules, policy.error)


async def _hand_over(batch: asyncio.Queue[str], names: set[str]) -> None:
    """One debounced batch to the consumers, in order; returns when every name is done."""
    for name in sorted(names):
        batch.put_nowait(name)
    await batch.join()


def _same_plan_inputs(a: CleanupView | None, b: CleanupView | None) -> bool:
    """Whether the two views agree on everything the desired spec and the in-sync check read."""
    if a is b:
        return True
    if a is None or b is None:
        return False
    return (a.uid, a.spec, a.labels, a.owner_uids, a.image_refs, a.image_refs_omitted) == (
        b.uid, b.spec, b.labels, b.owner_uids, b.image_refs, b.image_refs_omitted
    )  # fmt: skip


def _aggregate(cleanup: CleanupView) -> Any:
    return cleanup.status.aggregate if cleanup.status is not None else None


def _source_names(cleanup: CleanupView) -> list[str]:
    return [s.name for s in cleanup.spec.sources] if cleanup.spec is not None else []


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
