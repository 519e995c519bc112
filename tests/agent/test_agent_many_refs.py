"""A node with more image references than status.imageRefs may hold (the CRD's maxItems): the agent's status is
still accepted, with the first MAX_IMAGE_REFS refs (those of removable images first) and the count of the rest."""

from __future__ import annotations

import pytest

from node_janitor.api.nodecleanup import MAX_IMAGE_REFS
from node_janitor.api.packed_refs import unpack_refs
from node_janitor.devbed import ContainerdBed
from support.agentbed import AgentFactory, MiB, apply_nodecleanup, build_images, condition, status, wait_for
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]

EXTRA_TAGS = MAX_IMAGE_REFS + 200


def test_a_node_with_more_refs_than_the_limit_still_reports(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = containerd_bed
    (image,) = build_images(bed, "example.com/manyrefs", 1, size=1 * MiB)
    bed.import_images([image])
    tags = [f"example.com/manyrefs/t{i:04d}:v1" for i in range(EXTRA_TAGS)]
    for start in range(0, len(tags), 200):  # image records only: one image, 1,201 names
        bed.ctr("images", "tag", image.name, *tags[start : start + 200])
    apply_nodecleanup(kube, node_name, {"thresholds": {"highPercent": 99, "lowPercent": 98}})
    agents.start(node_name, bed)

    st = wait_for("a status with a lastRun", lambda: (s := status(kube, node_name)).get("lastRun") and s, 45)
    # that many are sent packed (issue 21: imageRefsPacked), and imageRefsOmitted counts the packed ones too
    assert st["imageRefs"] == []
    refs = unpack_refs(st["imageRefsPacked"])
    assert len(refs) == MAX_IMAGE_REFS and refs == sorted(refs)  # every image here is unused: one sorted group
    everything = sorted({image.name, *tags, *refs})
    assert refs == everything[:MAX_IMAGE_REFS]
    assert st["imageRefsOmitted"] - len(refs) >= len(everything) - MAX_IMAGE_REFS >= 200
    assert condition(st, "Degraded")["status"] == "False", st["conditions"]
