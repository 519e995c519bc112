"""The reference graph's node names: one spelling, made and read by `node_janitor.node.inventory`'s helpers."""

from __future__ import annotations

import pytest

from node_janitor.node.inventory import (
    GC_ROOTS,
    OTHER_NAMESPACES,
    NodeKind,
    container_node,
    content_node,
    graph_node,
    image_node,
    is_node_of,
    lease_node,
    node_id,
    node_kind,
    snapshot_node,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("node", "kind", "ident"),
    [
        (content_node(DIGEST), NodeKind.CONTENT, DIGEST),
        (snapshot_node("k8s.io/12/sha256:x"), NodeKind.SNAPSHOT, "k8s.io/12/sha256:x"),
        (image_node(DIGEST), NodeKind.IMAGE, DIGEST),
        (container_node("c1"), NodeKind.CONTAINER, "c1"),
        (lease_node("l:1"), NodeKind.LEASE, "l:1"),
    ],
)
def test_a_node_names_its_kind_and_id_even_when_the_id_has_colons(node: str, kind: NodeKind, ident: str) -> None:
    assert node == graph_node(kind, ident)
    assert node_kind(graph_node(kind, ident)) is kind
    assert node_id(graph_node(kind, ident)) == ident
    assert is_node_of(graph_node(kind, ident), kind)
    assert not any(is_node_of(graph_node(kind, ident), other) for other in NodeKind if other is not kind)


def test_the_special_roots_are_of_no_kind() -> None:
    assert node_kind(GC_ROOTS) is None and node_kind(OTHER_NAMESPACES) is None
    assert GC_ROOTS != OTHER_NAMESPACES
