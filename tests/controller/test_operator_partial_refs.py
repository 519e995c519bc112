"""A NodeCleanup whose status.imageRefs was cut short (status.imageRefsOmitted > 0) against the real operator: every
workload image is protected on that node, listed or not, also one that appears later; the intersection is back once
the list is complete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.kube import ControlPlane
from support.operator import POOL, Operator, apply, cleanups, node, patch_status, policy, running_operator
from support.poll import wait_for

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module")
def operator(kube: ControlPlane, crds: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with running_operator(kube, tmp_path_factory.mktemp("operator-partial")) as op:
        yield op


def _pod(name: str, image: str) -> dict[str, object]:
    """A workload using `image`: a ReplicaSet at 0 replicas (the operator indexes pod templates, not Pods)."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}}}}  # fmt: skip


def test_a_cut_short_image_list_protects_every_workload_image(
    operator: Operator, kube: ControlPlane, tmp_path: Path
) -> None:
    for name in ("part-1", "part-2"):
        node(kube, name, **{POOL: "part"})
    policy(kube, "part", {POOL: "part"}, images={"keepWorkloadImages": True})
    wait_for("NodeCleanups of part", lambda: set(cleanups(kube, "part-")) == {"part-1", "part-2"})
    apply(kube, _pod("part-listed", "registry.example/part/listed:v1"))
    apply(kube, _pod("part-unlisted", "registry.example/part/unlisted:v1"))
    patch_status(kube, "part-1", {"imageRefs": ["registry.example/part/listed:v1"], "imageRefsOmitted": 3000})
    patch_status(kube, "part-2", {"imageRefs": ["registry.example/part/listed:v1"], "imageRefsOmitted": 0})

    def protected(name: str) -> list[str]:
        """This test's images among the node's protected ones: with a cut-short list every workload image of the
        cluster is protected, the pods other tests left on the shared control plane included."""
        refs = cleanups(kube, "part-")[name]["spec"].get("protectedImages") or []
        return [ref for ref in refs if ref.startswith("registry.example/part/")]

    both = ["registry.example/part/listed:v1", "registry.example/part/unlisted:v1"]
    wait_for("both protected on part-1 (it may hold the unlisted one)", lambda: protected("part-1") == both)
    assert protected("part-2") == ["registry.example/part/listed:v1"]  # a complete list: the intersection
    apply(kube, _pod("part-new", "registry.example/part/new:v1"))
    wait_for("a new workload image protected on part-1 too",
             lambda: "registry.example/part/new:v1" in protected("part-1"))  # fmt: skip
    assert protected("part-2") == ["registry.example/part/listed:v1"]
    patch_status(kube, "part-1", {"imageRefsOmitted": 0})
    wait_for("the intersection again once the list is complete",
             lambda: protected("part-1") == ["registry.example/part/listed:v1"])  # fmt: skip
    for pod in ("part-listed", "part-unlisted", "part-new"):
        kube.kubectl("delete", "replicaset", pod, "-n", "default", "--wait=false")


def test_a_packed_image_list_protects_as_the_plain_one(operator: Operator, kube: ControlPlane) -> None:
    """status.imageRefsPacked (issue 21: one status patch at 200 images under 16 KiB) is read as the same list."""
    from node_janitor.api.packed_refs import pack_refs

    node(kube, "pack-1", **{POOL: "pack"})
    policy(kube, "pack", {POOL: "pack"}, images={"keepWorkloadImages": True})
    wait_for("the NodeCleanup of pack-1", lambda: "pack-1" in cleanups(kube, "pack-"))
    apply(kube, _pod("pack-used", "registry.example/pack/used:v1"))
    held = [f"registry.example/pack/cached-{i}:v1" for i in range(300)] + ["registry.example/pack/used:v1"]
    patch_status(kube, "pack-1", {"imageRefs": [], "imageRefsPacked": pack_refs(held), "imageRefsOmitted": len(held)})
    used = ["registry.example/pack/used:v1"]
    wait_for("the packed workload image protected, and only it",
             lambda: cleanups(kube, "pack-")["pack-1"]["spec"].get("protectedImages") == used)  # fmt: skip
    kube.kubectl("delete", "replicaset", "pack-used", "-n", "default", "--wait=false")
