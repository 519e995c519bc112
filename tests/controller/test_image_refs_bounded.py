"""status.imageRefs is bounded (a node with thousands of images never has its status refused), and a cut-short
list never costs a workload image its protection: the operator then protects every workload image on that node."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from controller.test_controller import DictState, cleanup_body, node_view, policy_view
from node_janitor.agent.report import build_image_refs
from node_janitor.api.nodecleanup import MAX_IMAGE_REFS, NodeCleanupStatus
from node_janitor.controller.metrics import OperatorMetrics
from node_janitor.controller.reconciler import Reconciler, ReconcilerSettings
from node_janitor.controller.views import build_cleanup_view
from node_janitor.node.usage import ImageUsage


def _image(n: int, *, containers: int = 0, pinned: bool = False, refs: tuple[str, ...] = ()) -> ImageUsage:
    return ImageUsage(
        id=f"sha256:{n:064x}",
        refs=refs or (f"example.com/img{n:05d}:v1", f"example.com/img{n:05d}@sha256:{n:064x}"),
        size=1,
        shared_size=0,
        cri_size=1,
        containers=containers,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        last_used=None,
        pinned=pinned,
    )


def test_image_refs_are_cut_at_the_limit_removable_images_first_and_the_rest_counted() -> None:
    in_use = [_image(i, containers=1) for i in range(10)]
    pinned = [_image(10, pinned=True)]
    unused = [_image(i) for i in range(11, 3011)]
    refs, omitted = build_image_refs([*in_use, *pinned, *unused])
    assert len(refs) == MAX_IMAGE_REFS and omitted == 2 * 3011 - MAX_IMAGE_REFS
    assert all(int(r[len("example.com/img") :][:5]) >= 11 for r in refs)  # only unused images' refs fit
    assert refs == sorted(refs)
    refs, omitted = build_image_refs([*in_use, *pinned, *unused[:3]], limit=10)
    assert refs[:6] == sorted(r for i in unused[:3] for r in i.refs) and omitted == 2 * 14 - 10
    # under the limit: everything, nothing omitted; an ID-only image lists nothing; an over-long ref is left out
    dangling = _image(99, refs=(f"sha256:{99:064x}",))
    long_ref = _image(98, refs=("example.com/" + "x" * 600 + ":v1", "example.com/short:v1"))
    assert build_image_refs([in_use[0], dangling, long_ref]) == (
        ["example.com/short:v1", *sorted(in_use[0].refs)],
        1,
    )


def test_the_status_model_refuses_more_refs_than_the_limit() -> None:
    NodeCleanupStatus.model_validate({"imageRefs": [f"r{i}" for i in range(MAX_IMAGE_REFS)], "imageRefsOmitted": 5})
    with pytest.raises(ValidationError):
        NodeCleanupStatus.model_validate({"imageRefs": [f"r{i}" for i in range(MAX_IMAGE_REFS + 1)]})


async def test_a_cut_short_list_protects_every_workload_image_and_follows_workload_changes() -> None:
    reconciler = Reconciler(writer=None, metrics=OperatorMetrics(), settings=ReconcilerSettings())  # type: ignore[arg-type]
    state = DictState()
    reconciler.attach(state)
    keep = policy_view("keep", {}, images={"keepWorkloadImages": True})
    state.policies_["keep"] = keep
    reconciler.policy_changed("keep", keep)
    state.workload = {"docker.io/library/app:1", "docker.io/library/listed:1", "docker.io/library/elsewhere:1"}
    spec = {"nodeName": "", "policy": {}}
    for name, status in (
        ("full", {"imageRefs": ["docker.io/library/listed:1", "docker.io/library/other:1"]}),
        ("cut", {"imageRefs": ["docker.io/library/listed:1"], "imageRefsOmitted": 4000}),
    ):
        state.nodes_[name] = node_view(name)
        reconciler.node_changed(name, state.nodes_[name])
        state.cleanups_[name] = build_cleanup_view(cleanup_body(name, {**spec, "nodeName": name}, status))
        reconciler.cleanup_changed(name, state.cleanups_[name])

    def protected(name: str) -> list[str]:
        desired = reconciler._desired(state, state.nodes_[name], state.cleanups_[name])
        assert desired is not None
        return desired.protected_images

    assert protected("full") == ["docker.io/library/listed:1"]  # the intersection, as before
    assert protected("cut") == sorted(state.workload)  # app:1 and elsewhere:1 may be among the 4,000 left out
    # A new workload image is distributed to the cut-short node too (it may hold it), not only to its holders.
    reconciler._nodes.items.clear()
    state.workload.add("docker.io/library/new:1")
    reconciler.workload_changed("pods/default/new", frozenset({"docker.io/library/new:1"}))
    assert reconciler.pending()["images"] == {"docker.io/library/new:1"}
    reconciler._distribute(["docker.io/library/new:1"])
    assert reconciler.pending()["nodes"] == {"cut"}
    assert "docker.io/library/new:1" in protected("cut")
    # Once the list is complete again, the intersection is back.
    status = {"imageRefs": ["docker.io/library/listed:1"], "imageRefsOmitted": 0}
    state.cleanups_["cut"] = build_cleanup_view(cleanup_body("cut", {**spec, "nodeName": "cut"}, status))
    reconciler.cleanup_changed("cut", state.cleanups_["cut"])
    assert protected("cut") == ["docker.io/library/listed:1"]
    reconciler._nodes.items.clear()
    reconciler._distribute(["docker.io/library/new:1"])
    assert reconciler.pending()["nodes"] == set()
