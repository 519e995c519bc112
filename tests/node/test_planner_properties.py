"""Property tests of the planner's invariants over random stores with shared layers.

The oracle recomputes, from scratch, what is still reachable once the planned roots are gone, independently
of the planner's incremental reference counts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node_janitor.node.inventory import (
    BlobEntry,
    ContainerEntry,
    FileSystemEntry,
    ImageEntry,
    Inventory,
    LeaseEntry,
    NodeKind,
    SnapshotEntry,
    content_node,
    is_node_of,
    snapshot_node,
)
from node_janitor.node.plan import (
    FEWEST_IMAGES,
    LEAST_RECENTLY_USED,
    SELECTIONS,
    ActionKind,
    PlanSettings,
    Reason,
    Target,
    image_protection,
    plan_cleanup,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SNAP_LABEL = "containerd.io/gc.ref.snapshot.overlayfs"


@st.composite
def stores(draw: st.DrawFn) -> tuple[Inventory, PlanSettings]:
    n_layers = draw(st.integers(2, 8))
    layer_sizes = draw(st.lists(st.integers(1, 5000), min_size=n_layers, max_size=n_layers))
    n_images = draw(st.integers(1, 10))
    blobs: dict[str, BlobEntry] = {}
    snaps: dict[str, SnapshotEntry] = {}
    images = []
    for i in range(n_images):
        chain = draw(st.lists(st.integers(0, n_layers - 1), min_size=1, max_size=4))
        parent = ""
        layer_digests = []
        for layer in chain:
            digest = f"sha256:l{layer}"
            blobs[digest] = BlobEntry(digest, layer_sizes[layer], labels={"containerd.io/uncompressed": "x"})
            layer_digests.append(digest)
            key = f"{parent}>{layer}"
            snaps.setdefault(key, SnapshotEntry(key, parent, size=2 * layer_sizes[layer], inodes=layer + 1))
            parent = key
        config = BlobEntry(f"sha256:c{i}", 50 + i, labels={SNAP_LABEL: parent})
        manifest_labels = {"containerd.io/gc.ref.content.config": config.digest}
        manifest_labels.update({f"containerd.io/gc.ref.content.l.{j}": d for j, d in enumerate(layer_digests)})
        manifest = BlobEntry(f"sha256:m{i}", 10, labels=manifest_labels)
        blobs[config.digest] = config
        blobs[manifest.digest] = manifest
        tagged = draw(st.booleans())
        age = draw(st.integers(0, 10_000))
        images.append(
            ImageEntry(
                id=config.digest,
                names=((f"reg/app{i}:v1",) if tagged else ()) + (config.digest,),
                targets=(manifest.digest,),
                repo_tags=(f"reg/app{i}:v1",) if tagged else (),
                created_at=NOW - timedelta(minutes=age),
                pinned=draw(st.integers(0, 9)) == 0,
            )
        )
    containers = []
    for i, image in enumerate(images):
        if draw(st.integers(0, 3)) == 0:
            state = draw(st.sampled_from(["RUNNING", "EXITED", "CREATED"]))
            containers.append(
                ContainerEntry(f"ctr{i}", image=image.id, state=state, created_at=NOW - timedelta(minutes=i))
            )
    # Garbage: stray blobs and snapshots, some held by leases (expired or live), some by nothing.
    leases = []
    for j in range(draw(st.integers(0, 3))):
        held = []
        for k in range(draw(st.integers(0, 2))):
            if draw(st.booleans()):
                digest = f"sha256:stray{j}-{k}"
                blobs[digest] = BlobEntry(digest, draw(st.integers(1, 3000)))
                held.append(("content", digest))
            else:
                key = f"stray{j}-{k}"
                snaps[key] = SnapshotEntry(key, "", size=draw(st.integers(1, 3000)), inodes=2)
                held.append(("snapshots/overlayfs", key))
        if draw(st.booleans()) and blobs:  # a lease may also hold what an image holds
            held.append(("content", draw(st.sampled_from(sorted(blobs)))))
        hours = draw(st.sampled_from([-2, 2, None]))
        leases.append(
            LeaseEntry(
                f"lease{j}", expires_at=None if hours is None else NOW + timedelta(hours=hours), resources=tuple(held)
            )
        )
    total = sum(b.size for b in blobs.values()) + sum(s.size for s in snaps.values())
    used = total + draw(st.integers(0, 2_000))
    capacity = used * 100 // draw(st.integers(30, 100))
    fs = FileSystemEntry("imagefs", "/", size=capacity, used=used, available=capacity - used, inodes=0)
    inventory = Inventory(
        taken_at=NOW,
        images=tuple(images),
        blobs=tuple(blobs.values()),
        snapshots=tuple(snaps.values()),
        containers=tuple(containers),
        leases=tuple(leases),
        file_systems=(fs,),
        sandbox_image=draw(st.sampled_from(["", "reg/app0:v1"])),
    )
    high = draw(st.integers(2, 99))
    plan_settings = PlanSettings(
        high_percent=high,
        low_percent=draw(st.integers(1, high - 1)),
        min_age=timedelta(minutes=draw(st.integers(0, 2000))),
        keep=tuple(draw(st.lists(st.sampled_from(["reg/app1:*", "reg/app2:v1", "*/app3*"]), max_size=2))),
        remove_dangling=draw(st.booleans()),
        max_deletions_per_run=draw(st.one_of(st.none(), st.integers(1, 5))),
        remove_expired_leases=draw(st.booleans()),
        remove_orphan_snapshots=draw(st.booleans()),
        remove_orphan_content=draw(st.booleans()),
        selection=draw(st.sampled_from(SELECTIONS)),
    )
    return inventory, plan_settings


def _still_reachable(
    inventory: Inventory, removed_images: set[str], deleted_leases: frozenset[str] = frozenset()
) -> set[str]:
    """Nodes some remaining root reaches: images not removed, containers, leases not deleted, gc.root labels."""
    graph = inventory.graph
    reach: set[str] = set(graph.gc_root_closure)
    for image_id, closure in graph.image_closures.items():
        if image_id not in removed_images:
            reach |= closure
    for closure in graph.container_closures.values():
        reach |= closure
    for lease in inventory.leases:
        if lease.id not in deleted_leases:
            reach |= graph.lease_closure(lease)
    return reach


PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(stores())
def test_never_plans_a_protected_image(store: tuple[Inventory, PlanSettings]) -> None:
    inventory, plan_settings = store
    plan = plan_cleanup(inventory, plan_settings, NOW)
    users = inventory.image_users
    by_id = inventory.image_by_id()
    for action in plan.actions:
        if action.kind is ActionKind.REMOVE_IMAGE:
            image = by_id[action.id]
            assert not users.get(image.id), "an image with a container (any state) was planned"
            assert image_protection(inventory, image, plan_settings, NOW, in_use=False) is None
            assert now_minus(image) >= plan_settings.min_age
            assert not image.pinned and inventory.sandbox_image not in image.names


def now_minus(image: ImageEntry) -> timedelta:
    assert image.created_at is not None
    return NOW - image.created_at


@PROPS
@given(stores())
def test_predicted_bytes_are_exactly_what_disappears(store: tuple[Inventory, PlanSettings]) -> None:
    inventory, plan_settings = store
    plan = plan_cleanup(inventory, plan_settings, NOW)
    graph = inventory.graph
    removed = {a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE}
    deleted_leases = frozenset(a.id for a in plan.actions if a.kind is ActionKind.DELETE_LEASE)
    direct = {snapshot_node(a.id) for a in plan.actions if a.kind is ActionKind.REMOVE_SNAPSHOT}
    direct |= {content_node(a.id) for a in plan.actions if a.kind is ActionKind.DELETE_CONTENT}
    everything = {n for n in graph.size if not is_node_of(n, NodeKind.IMAGE)}  # image records are nodes of 0 bytes
    rooted_before = _still_reachable(inventory, set())
    rooted_after = _still_reachable(inventory, removed, deleted_leases)
    # Gone: what lost its last root, plus the unrooted nodes removed directly; nothing is counted twice.
    gone = ((rooted_before - rooted_after) | direct) & everything
    assert direct <= everything - rooted_before, "a node some root still reaches was removed directly"
    assert plan.planned_bytes == graph.bytes_of(gone)
    inodes = {snapshot_node(s.key): s.inodes for s in inventory.snapshots} | {
        content_node(b.digest): 1 for b in inventory.blobs
    }
    assert sum(a.inodes for a in plan.actions) == sum(inodes[n] for n in gone)
    if plan_settings.remove_orphan_snapshots and plan_settings.remove_orphan_content:
        assert everything - rooted_before <= direct, "an unrooted node was left behind"


@PROPS
@given(stores())
def test_reaches_target_when_possible_with_least_overshoot(store: tuple[Inventory, PlanSettings]) -> None:
    inventory, plan_settings = store
    plan = plan_cleanup(inventory, plan_settings, NOW)
    image_actions = [a for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE]
    users = inventory.image_users
    removable = {
        i.id
        for i in inventory.images
        if image_protection(inventory, i, plan_settings, NOW, in_use=bool(users.get(i.id))) is None
    }
    graph = inventory.graph
    freeable = graph.bytes_of(_still_reachable(inventory, set()) - _still_reachable(inventory, removable))
    capped = (
        plan_settings.max_deletions_per_run is not None and len(image_actions) >= plan_settings.max_deletions_per_run
    )
    if freeable >= plan.target.bytes and not capped:
        assert plan.planned_bytes >= plan.target.bytes
    if image_actions and plan.target.bytes:
        # Stopped as soon as the target was met: without the last removal it was not met yet.
        assert plan.planned_bytes - image_actions[-1].bytes < plan.target.bytes
    if not plan.target.under_pressure:
        assert not image_actions


@PROPS
@given(stores())
def test_order_is_dangling_then_least_recently_used(store: tuple[Inventory, PlanSettings]) -> None:
    inventory, plan_settings = store
    if plan_settings.selection != LEAST_RECENTLY_USED:
        return
    plan = plan_cleanup(inventory, plan_settings, NOW)
    by_id = inventory.image_by_id()
    keys = []
    for action in plan.actions:
        if action.kind is ActionKind.REMOVE_IMAGE:
            image = by_id[action.id]
            assert image.created_at is not None
            keys.append((0 if plan_settings.remove_dangling and image.dangling else 1, image.created_at))
    assert keys == sorted(keys)


@PROPS
@given(stores())
def test_fewest_images_needs_every_image_it_removes(store: tuple[Inventory, PlanSettings]) -> None:
    """Under FewestImages each removed image is needed: without any one of them (the others removed) the target
    is not met. (Dangling images go first by the policy and are left out of it.) Bytes the others free are
    measured from scratch on the graph, not with the planner's counts."""
    inventory, plan_settings = store
    if plan_settings.selection != FEWEST_IMAGES:
        return
    plan = plan_cleanup(inventory, plan_settings, NOW)
    if not plan.reaches_target or plan.target.inodes:
        return
    by_id = inventory.image_by_id()
    graph = inventory.graph
    deleted_leases = frozenset(a.id for a in plan.actions if a.kind is ActionKind.DELETE_LEASE)
    removed = {a.id for a in plan.actions if a.kind is ActionKind.REMOVE_IMAGE}
    reach_after = _still_reachable(inventory, removed, deleted_leases)
    for action in plan.actions:
        if action.reason not in (Reason.FEWEST_IMAGES, Reason.DANGLING):
            continue
        if plan_settings.remove_dangling and by_id[action.id].dangling:
            continue
        # What the plan would free without this one image: less what only its removal lets go.
        lost = graph.bytes_of(_still_reachable(inventory, removed - {action.id}, deleted_leases) - reach_after)
        assert lost > 0 and plan.planned_bytes - lost < plan.target.bytes, f"{action.id} was not needed"


def test_no_pressure_and_no_age_rule_plans_nothing() -> None:
    inventory = Inventory(
        taken_at=NOW,
        images=(
            ImageEntry("sha256:c", ("a:1",), ("sha256:m",), repo_tags=("a:1",), created_at=NOW - timedelta(days=9)),
        ),
        blobs=(
            BlobEntry("sha256:m", 10, labels={"containerd.io/gc.ref.content.config": "sha256:c"}),
            BlobEntry("sha256:c", 10),
        ),
        file_systems=(FileSystemEntry("imagefs", "/", 100, 10, 90),),
    )
    plan = plan_cleanup(inventory, PlanSettings(), NOW)
    assert plan.actions == ()
    assert not plan.target.under_pressure
    forced = plan_cleanup(inventory, PlanSettings(), NOW, target=Target(bytes=1))
    assert [a.id for a in forced.actions] == ["sha256:c"]
