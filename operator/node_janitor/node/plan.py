"""Pure decisions: inventory + settings + now -> an ordered plan with the exact bytes each action frees.

No I/O here. The planner follows containerd's reference graph (see `inventory`), so each action's bytes are
what it frees given every action before it: removing image A frees only what no remaining image, container,
lease or gc.root label still reaches.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from node_janitor.api.policy import PolicyRules
from node_janitor.api.refs import matches_pattern, normalize_all
from node_janitor.node.ingests import lease_ingests
from node_janitor.node.inventory import (
    ImageEntry,
    Inventory,
    Node,
    NodeKind,
    ReferenceCounts,
    all_roots,
    container_node,
    content_node,
    image_node,
    is_node_of,
    lease_node,
    node_id,
    snapshot_node,
)

UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
LEAST_RECENTLY_USED = "LeastRecentlyUsed"
FEWEST_IMAGES = "FewestImages"
SELECTIONS = (LEAST_RECENTLY_USED, FEWEST_IMAGES)


class ActionKind(StrEnum):
    DELETE_LEASE = "delete-lease"
    REMOVE_SNAPSHOT = "remove-snapshot"
    DELETE_CONTENT = "delete-content"
    REMOVE_CONTAINER = "remove-container"
    REMOVE_IMAGE = "remove-image"
    DISCARD_LAYER = "discard-layer"


class Reason(StrEnum):
    EXPIRED_LEASE = "expired-lease"
    ORPHAN = "orphan"
    EXITED_CONTAINER = "exited-container"
    DANGLING = "dangling-under-pressure"
    LEAST_RECENTLY_USED = "lru-under-pressure"
    FEWEST_IMAGES = "fewest-images-under-pressure"
    MAX_UNUSED_AGE = "unused-too-long"
    UNPACKED_LAYER = "unpacked-layer"


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """The parsed, validated parts of an effective policy that the planner uses."""

    high_percent: float = 85
    low_percent: float = 75
    inodes_high_percent: float = 90
    inodes_low_percent: float = 80
    images_enabled: bool = True
    min_age: timedelta = timedelta(minutes=2)
    max_unused_age: timedelta | None = None
    keep: tuple[str, ...] = ()
    remove_dangling: bool = True
    max_deletions_per_run: int | None = None
    selection: str = LEAST_RECENTLY_USED
    remove_orphan_snapshots: bool = True
    remove_orphan_content: bool = True
    discard_unpacked_layers: bool = False
    remove_expired_leases: bool = True
    remove_exited_after: timedelta | None = None
    protected_images: tuple[str, ...] = ()  # refs the operator says are in use somewhere in the cluster
    headroom_bytes: int = 0
    """Bytes expected on the image file system soon beyond what is there and what in-flight ingests still bring
    (the agent's fill-rate projection): counted in its projected use, as the ingests' are."""
    count_pulls_in_flight: bool = True
    """Count the bytes in-flight ingests still bring in the image file system's projected use. Off only for the
    fill-rate benchmark's baseline (the agent before it looked ahead: `NODE_JANITOR_BENCH_BASELINE`)."""

    @classmethod
    def from_rules(cls, rules: PolicyRules, protected_images: Sequence[str] = ()) -> PlanSettings:
        """The planner's view of a validated policy (a CleanupPolicy spec or a NodeCleanup's effective one)."""
        t, images = rules.thresholds, rules.images
        return cls(
            high_percent=t.high_percent,
            low_percent=t.low_percent,
            inodes_high_percent=t.inodes_high_percent,
            inodes_low_percent=t.inodes_low_percent,
            images_enabled=images.enabled,
            min_age=images.min_age,
            max_unused_age=images.max_unused_age,
            keep=tuple(images.keep),
            remove_dangling=images.remove_dangling,
            max_deletions_per_run=images.max_deletions_per_run,
            selection=images.selection,
            remove_orphan_snapshots=rules.snapshots.remove_orphans,
            remove_orphan_content=rules.content.remove_orphans,
            discard_unpacked_layers=rules.content.discard_unpacked_layers,
            remove_expired_leases=rules.leases.remove_expired,
            remove_exited_after=rules.containers.remove_exited_after,
            protected_images=tuple(protected_images),
        )

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection {self.selection!r} is not one of {', '.join(SELECTIONS)}")
        if not 0 <= self.low_percent < self.high_percent <= 100:
            raise ValueError(f"lowPercent ({self.low_percent}) must be below highPercent ({self.high_percent})")
        if not 0 <= self.inodes_low_percent < self.inodes_high_percent <= 100:
            raise ValueError(
                f"inodesLowPercent ({self.inodes_low_percent}) must be below "
                f"inodesHighPercent ({self.inodes_high_percent})"
            )


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    id: str  # image ID, container ID, lease ID, snapshot key or blob digest
    reason: Reason
    bytes: int  # what it frees, given the actions before it
    inodes: int = 0
    refs: tuple[str, ...] = ()  # an image's refs (all of its records are removed)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    """How far the image file system must shrink: 0 when it is below its high watermarks."""

    bytes: int = 0
    inodes: int = 0
    used_percent: float = 0.0
    inodes_used_percent: float = 0.0
    pending_bytes: int = 0
    """Bytes counted as if used already: in-flight ingests' remaining bytes and the settings' headroom."""

    @property
    def under_pressure(self) -> bool:
        return self.bytes > 0 or self.inodes > 0


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    target: Target
    skipped: Mapping[str, str] = field(default_factory=dict)  # image ID -> why it was not planned

    @property
    def planned_bytes(self) -> int:
        return sum(a.bytes for a in self.actions)

    @property
    def reaches_target(self) -> bool:
        return self.planned_bytes >= self.target.bytes and sum(a.inodes for a in self.actions) >= self.target.inodes


def plan_target(inventory: Inventory, settings: PlanSettings, fs_name: str = "imagefs") -> Target:
    """Bytes/inodes to free to bring the file system from above high to at or below low watermark. On the image
    file system the use is projected: what is there, plus what in-flight pulls still bring (`Inventory.pending`)
    and the settings' headroom (the fill rate's), so the target leaves room for them before they land."""
    fs = inventory.file_system(fs_name)
    if fs is None:
        return Target()
    capacity = fs.used + fs.available
    pulls = inventory.pending.bytes if settings.count_pulls_in_flight else 0
    pending = pulls + settings.headroom_bytes if fs_name == "imagefs" else 0
    projected = fs.used + pending
    need_bytes = 0
    if 100.0 * projected / max(1, capacity) > settings.high_percent:
        need_bytes = projected - int(capacity * settings.low_percent / 100)
    need_inodes = 0
    if fs.inodes and fs.inodes_used_percent > settings.inodes_high_percent:
        need_inodes = fs.inodes_used - int(fs.inodes * settings.inodes_low_percent / 100)
    return Target(max(0, need_bytes), max(0, need_inodes), fs.used_percent, fs.inodes_used_percent, pending)


YOUNGER_THAN_MIN_AGE = "younger than minAge"


def image_protection(
    inventory: Inventory, image: ImageEntry, settings: PlanSettings, now: datetime, in_use: bool
) -> str | None:
    """Why `image` must not be removed, or None when it may be. Judged per image ID over all of its names
    (normalised): CRI `RemoveImage` takes every name with it, so one protected name protects the image."""
    if in_use:
        return "in use by a container"
    if why := inventory.always_protected(image):
        return why
    if pattern := kept_by(image, settings.keep):
        return f"kept by pattern {pattern!r}"
    if protected_by(image, settings.protected_images):
        return "in use in the cluster"
    if image.created_at is None or now - image.created_at < settings.min_age:
        return f"{YOUNGER_THAN_MIN_AGE} {settings.min_age}"
    return None


def kept_by(image: ImageEntry, patterns: Iterable[str]) -> str | None:
    """The first `images.keep` pattern matching any name of `image` (as given, full or familiar), or None."""
    names = (*image.repo_tags, *image.repo_digests, *image.names)
    for pattern in patterns:
        if any(matches_pattern(name, pattern) for name in names):
            return pattern
    return None


def protected_by(image: ImageEntry, protected: Iterable[str]) -> bool:
    """Whether a protected ref (normalised) names `image` or is its ID."""
    return not normalize_all(protected).isdisjoint(image.all_names)


def _node_inodes(inventory: Inventory) -> dict[Node, int]:
    inodes = {snapshot_node(s.key): s.inodes for s in inventory.snapshots}
    inodes.update({content_node(b.digest): 1 for b in inventory.blobs})
    return inodes


def plan_cleanup(
    inventory: Inventory,
    settings: PlanSettings,
    now: datetime,
    last_used: Mapping[str, datetime] | None = None,
    target: Target | None = None,
) -> Plan:
    """The ordered plan. `last_used`: image ID -> when a container last used it (persisted by the agent).

    Phases, each predicting its bytes given every action before it: garbage (expired leases, orphans), exited
    containers, images unused past `maxUnusedAge`, images under pressure until the target is met, compressed copies
    of unpacked layers."""
    target = target if target is not None else plan_target(inventory, settings)
    plan = _PlanBuilder(inventory, settings, now)
    _plan_garbage(plan)
    removed_containers = _plan_exited_containers(plan)
    candidates = _image_candidates(plan, last_used or {}, removed_containers)
    taken = _plan_unused_images(plan, candidates)
    if target.under_pressure:
        _plan_images_under_pressure(plan, [c for c in candidates if c[0].id not in taken], target)
    _plan_discarded_layers(plan)
    return Plan(tuple(plan.actions), target, plan.skipped)


class _PlanBuilder:
    """A plan being built: its actions so far, what they free (bytes, inodes, graph nodes), the reference counts
    left after them, the images skipped and why."""

    def __init__(self, inventory: Inventory, settings: PlanSettings, now: datetime) -> None:
        self.inventory = inventory
        self.settings = settings
        self.now = now
        self.graph = inventory.graph
        self.inodes_of = _node_inodes(inventory)
        self.counts = ReferenceCounts(self.graph, all_roots(inventory, now))
        self.actions: list[Action] = []
        self.freed_bytes = 0
        self.freed_inodes = 0
        self.freed_nodes: set[Node] = set()
        self.skipped: dict[str, str] = {}
        self.image_deletions = 0

    def add(self, kind: ActionKind, ident: str, reason: Reason, nodes: Iterable[Node], **kw: object) -> None:
        """Append an action that frees `nodes`."""
        node_list = list(nodes)
        self.freed_nodes.update(node_list)
        nbytes = self.graph.bytes_of(node_list)
        ninodes = sum(self.inodes_of.get(n, 0) for n in node_list)
        self.freed_bytes += nbytes
        self.freed_inodes += ninodes
        self.actions.append(Action(kind, ident, reason, nbytes, ninodes, **kw))  # type: ignore[arg-type]

    def remove_image(self, image: ImageEntry, reason: Reason) -> None:
        self.image_deletions += 1
        self.add(ActionKind.REMOVE_IMAGE, image.id, reason, self.counts.remove(image_node(image.id)), refs=image.refs)

    def below_cap(self) -> bool:
        """Another image removal is within `maxDeletionsPerRun`."""
        cap = self.settings.max_deletions_per_run
        return cap is None or self.image_deletions < cap

    def met(self, target: Target) -> bool:
        return self.freed_bytes >= target.bytes and self.freed_inodes >= target.inodes


def _plan_garbage(plan: _PlanBuilder) -> None:
    """1. Expired leases, then orphans removed directly: nodes no root reaches at all (an expired lease is a root
    until it is deleted, so what it holds goes with it, or stays when leases.removeExpired is off) and no earlier
    action frees. An expired lease that holds an ingest still being written (a slow pull whose lease ran out) is
    left to containerd: deleting it would let the collector take the pull's data from under it."""
    settings, counts = plan.settings, plan.counts
    writing = {i.ref for i in plan.inventory.ingests if i.in_flight(plan.now)}
    if settings.remove_expired_leases:
        for lease in sorted(plan.inventory.leases, key=lambda x: x.id):
            if lease.expired(plan.now) and not lease_ingests(lease.resources) & writing:
                plan.add(ActionKind.DELETE_LEASE, lease.id, Reason.EXPIRED_LEASE, counts.remove(lease_node(lease.id)))
    orphans = frozenset(plan.graph.size) - frozenset(counts.count) - plan.freed_nodes
    if settings.remove_orphan_snapshots:
        for key in _leaves_first(plan.inventory, {n for n in orphans if is_node_of(n, NodeKind.SNAPSHOT)}):
            plan.add(ActionKind.REMOVE_SNAPSHOT, key, Reason.ORPHAN, [snapshot_node(key)])
    if settings.remove_orphan_content:
        for node in sorted(n for n in orphans if is_node_of(n, NodeKind.CONTENT)):
            plan.add(ActionKind.DELETE_CONTENT, node_id(node), Reason.ORPHAN, [node])


def _plan_exited_containers(plan: _PlanBuilder) -> set[str]:
    """2. CRI containers (not sandboxes) exited longer ago than `removeExitedAfter`: their images may become unused
    by it. Returns their IDs."""
    removed: set[str] = set()
    grace = plan.settings.remove_exited_after
    if grace is None:
        return removed
    for c in sorted(plan.inventory.containers, key=lambda x: x.id):
        finished = c.finished_at or c.created_at
        if c.cri and not c.sandbox and c.state == "EXITED" and finished and plan.now - finished >= grace:
            removed.add(c.id)
            freed = plan.counts.remove(container_node(c.id))
            plan.add(ActionKind.REMOVE_CONTAINER, c.id, Reason.EXITED_CONTAINER, freed, detail=c.name)
    return removed


def _image_candidates(
    plan: _PlanBuilder, last_used: Mapping[str, datetime], removed_containers: set[str]
) -> list[tuple[ImageEntry, datetime]]:
    """3. The images that may go, each with its last use; the others are recorded in `plan.skipped` with why."""
    inventory, now = plan.inventory, plan.now
    users = inventory.image_users
    candidates: list[tuple[ImageEntry, datetime]] = []
    if not plan.settings.images_enabled:
        return candidates
    expired = plan.graph.expired_images
    for image in inventory.images:
        if image.id in expired:
            # No root (containerd 2.x `gc.expire` on every record): it goes with what holds it, or with the
            # collection of orphans; removing it alone frees nothing the plan could count.
            plan.skipped[image.id] = "expired: containerd collects it with what references it"
            continue
        in_use = any(c.id not in removed_containers for c in users.get(image.id, ()))
        why = image_protection(inventory, image, plan.settings, now, in_use)
        if why:
            plan.skipped[image.id] = why
            continue
        candidates.append((image, inventory.last_used(image.id, last_used) or image.created_at or now))
    return candidates


def _plan_unused_images(plan: _PlanBuilder, candidates: Sequence[tuple[ImageEntry, datetime]]) -> set[str]:
    """Images unused for `maxUnusedAge`, whatever the disk, the longest unused first. Returns their IDs."""
    taken: set[str] = set()
    max_age = plan.settings.max_unused_age
    if max_age is None:
        return taken
    for image, used in sorted(candidates, key=lambda iu: (iu[1], iu[0].id)):
        if plan.now - used >= max_age and plan.below_cap():
            plan.remove_image(image, Reason.MAX_UNUSED_AGE)
            taken.add(image.id)
    return taken


def _plan_images_under_pressure(
    plan: _PlanBuilder, pool: Sequence[tuple[ImageEntry, datetime]], target: Target
) -> None:
    """Images in the selection's order (dangling first when asked) until the target is met."""
    settings = plan.settings
    fewest = settings.selection == FEWEST_IMAGES
    if fewest:
        need = (target.bytes - plan.freed_bytes, target.inodes - plan.freed_inodes)
        order = fewest_images(pool, plan.counts, plan.inodes_of, need, dangling_first=settings.remove_dangling)
    else:
        order = least_recently_used(pool, plan.counts, dangling_first=settings.remove_dangling)
    for image in order:
        if plan.met(target):
            break
        if not plan.below_cap():
            plan.skipped[image.id] = f"maxDeletionsPerRun {settings.max_deletions_per_run} reached"
            continue
        if settings.remove_dangling and image.dangling:
            plan.remove_image(image, Reason.DANGLING)
        else:
            plan.remove_image(image, Reason.FEWEST_IMAGES if fewest else Reason.LEAST_RECENTLY_USED)


def _plan_discarded_layers(plan: _PlanBuilder) -> None:
    """4. Compressed copies of layers that are already unpacked (opt-in)."""
    if plan.settings.discard_unpacked_layers:
        for digest in plan_discardable_layers(plan.inventory, plan.counts, plan.now):
            plan.add(ActionKind.DISCARD_LAYER, digest, Reason.UNPACKED_LAYER, [content_node(digest)])


def least_recently_used(
    pool: Sequence[tuple[ImageEntry, datetime]], counts: ReferenceCounts, *, dangling_first: bool
) -> list[ImageEntry]:
    """The kubelet's order: dangling first (if asked), then the longest unused, the larger unique size first."""
    graph = counts.graph

    def key(item: tuple[ImageEntry, datetime]) -> tuple[bool, datetime, int, str]:
        image, used = item
        return (
            not (dangling_first and image.dangling),
            used,
            -graph.bytes_of(counts.would_free(image_node(image.id))),
            image.id,
        )

    return [image for image, _ in sorted(pool, key=key)]


def fewest_images(
    pool: Sequence[tuple[ImageEntry, datetime]],
    counts: ReferenceCounts,
    inodes_of: Mapping[Node, int],
    need: tuple[int, int],
    *,
    dangling_first: bool,
) -> list[ImageEntry]:
    """Few removals that free `need` (bytes, inodes), chosen on a copy of `counts` (left as it is).

    Greedy, dangling images first (if asked): next the image that frees the most of what is still needed
    (bytes, then inodes once the bytes are reached), the longest unused among equals; once one image suffices,
    the smallest that does. What an image frees only grows as others go (it becomes the last holder of a shared
    layer), so gains are kept per image and raised for the new last holders after each pick. Then every pick the
    others can do without is dropped (the cheapest first; dangling ones stay): a shared base that several picks
    free together can make an earlier large pick unnecessary. When `need` cannot be met, the whole pool is
    returned.
    """
    size = counts.graph.size
    scratch = counts.copy()
    by_id = {image.id: (image, used) for image, used in pool}
    holders: dict[Node, list[str]] = {}
    for image_id in by_id:
        for node in scratch.roots.get(image_node(image_id), ()):
            holders.setdefault(node, []).append(image_id)

    def weigh(nodes: Iterable[Node]) -> list[int]:
        nodes = list(nodes)
        return [sum(size.get(n, 0) for n in nodes), sum(inodes_of.get(n, 0) for n in nodes)]

    gain = {i: weigh(scratch.would_free(image_node(i))) for i in by_id}
    freed = [0, 0]
    picks: list[str] = []
    for phase in ([i for i in by_id if dangling_first and by_id[i][0].dangling], list(by_id)):
        remaining = {i for i in phase if image_node(i) in scratch.roots}
        heaps: tuple[list[tuple[int, datetime, str]], list[tuple[int, datetime, str]]] = ([], [])
        for image_id in remaining:
            _push(heaps, gain[image_id], by_id[image_id][1], image_id)
        while remaining and (freed[0] < need[0] or freed[1] < need[1]):
            metric = 0 if freed[0] < need[0] else 1
            short = need[metric] - freed[metric]
            heap = heaps[metric]
            while heap[0][2] not in remaining or -heap[0][0] != gain[heap[0][2]][metric]:
                heapq.heappop(heap)  # picked already, or superseded by a larger gain pushed since
            image_id = heap[0][2]
            if -heap[0][0] >= short:  # one image suffices: the smallest that does, the longest unused among equals
                image_id = min((gain[i][metric], by_id[i][1], i) for i in remaining if gain[i][metric] >= short)[2]
            remaining.discard(image_id)
            picks.append(image_id)
            closure = scratch.roots.get(image_node(image_id), frozenset())
            for n, amount in enumerate(weigh(scratch.remove(image_node(image_id)))):
                freed[n] += amount
            for node in closure:
                # One root still reaches it: if that is an image of the pool, removing it now frees the node too.
                if scratch.count.get(node) == 1:
                    holder = next((h for h in holders.get(node, ()) if image_node(h) in scratch.roots), None)
                    if holder is not None:
                        for n, amount in enumerate(weigh([node])):
                            gain[holder][n] += amount
                        if holder in remaining:
                            _push(heaps, gain[holder], by_id[holder][1], holder)
    if freed[0] < need[0] or freed[1] < need[1]:
        return [by_id[i][0] for i in picks]
    first = {i for i in picks if dangling_first and by_id[i][0].dangling}  # the policy's promise: these go first
    return [by_id[i][0] for i in _without_needless(picks, counts, inodes_of, need, keep=first)]


def _push(
    heaps: tuple[list[tuple[int, datetime, str]], ...], gain: Sequence[int], used: datetime, image_id: str
) -> None:
    for metric, heap in enumerate(heaps):
        heapq.heappush(heap, (-gain[metric], used, image_id))


def _without_needless(
    picks: list[str],
    counts: ReferenceCounts,
    inodes_of: Mapping[Node, int],
    need: tuple[int, int],
    *,
    keep: set[str],
) -> list[str]:
    """`picks` (which together free `need`) without those the rest can do without, cheapest first, until each
    remaining pick is needed; those in `keep` stay."""
    size = counts.graph.size
    closures = {i: counts.roots.get(image_node(i), frozenset()) for i in picks}
    within: dict[Node, int] = {}  # node -> how many picks reach it
    for closure in closures.values():
        for node in closure:
            within[node] = within.get(node, 0) + 1

    def freed_only_by(image_id: str) -> list[Node]:  # freed with the picks, kept without this one
        return [n for n in closures[image_id] if within[n] == counts.count[n]]

    freed = [0, 0]
    for node, k in within.items():
        if k == counts.count[node]:
            freed[0] += size.get(node, 0)
            freed[1] += inodes_of.get(node, 0)
    kept = set(picks)
    dropped = True
    while dropped:  # until no pick can go: a drop changes what the others free alone
        dropped = False
        for image_id in sorted(kept - keep, key=lambda i: (sum(size.get(n, 0) for n in freed_only_by(i)), i)):
            lost = freed_only_by(image_id)
            lost_bytes, lost_inodes = sum(size.get(n, 0) for n in lost), sum(inodes_of.get(n, 0) for n in lost)
            if freed[0] - lost_bytes >= need[0] and freed[1] - lost_inodes >= need[1]:
                kept.discard(image_id)
                dropped = True
                freed[0] -= lost_bytes
                freed[1] -= lost_inodes
                for node in closures[image_id]:
                    within[node] -= 1
    return [i for i in picks if i in kept]


def plan_discardable_layers(inventory: Inventory, counts: ReferenceCounts, now: datetime) -> list[str]:
    """Layer blobs (`containerd.io/uncompressed` labelled) whose every remaining image is unpacked.

    A blob an unexpired lease holds (a pull in progress), that a not-unpacked image still needs, or that another
    namespace keeps is kept.
    """
    graph = inventory.graph
    live_leases: set[Node] = set()
    for closure in graph.lease_closures(now, expired=False).values():
        live_leases |= closure
    layer_blobs = {content_node(b.digest) for b in inventory.blobs if UNCOMPRESSED_LABEL in b.labels}
    needed_by_packed: set[Node] = set()
    remaining_images = [i for i in inventory.images if image_node(i.id) in counts.roots]
    for image in remaining_images:
        closure = graph.image_closures[image.id]
        if not any(is_node_of(n, NodeKind.SNAPSHOT) for n in closure):
            needed_by_packed |= closure
    discardable: set[Node] = set()
    for image in remaining_images:
        discardable |= graph.image_closures[image.id] & layer_blobs
    # A blob another namespace keeps would lose only this namespace's record: nothing freed, nothing to promise.
    keep = needed_by_packed | live_leases | graph.held_elsewhere
    return sorted(node_id(n) for n in discardable - keep)


def _leaves_first(inventory: Inventory, nodes: set[Node]) -> Sequence[str]:
    """Snapshot keys ordered so that children come before their parents (containerd refuses otherwise)."""
    keys = {node_id(n) for n in nodes}
    parent = {s.key: s.parent for s in inventory.snapshots if s.key in keys}
    depth: dict[str, int] = {}

    def depth_of(key: str) -> int:
        if key not in depth:
            p = parent.get(key, "")
            depth[key] = 1 + depth_of(p) if p in keys else 0
        return depth[key]

    return sorted(keys, key=lambda k: (-depth_of(k), k))
