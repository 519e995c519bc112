"""Image reference normalisation (Docker's distribution/reference rules, as containerd's CRI plugin applies them)."""

from __future__ import annotations

import pytest

from node_janitor.api import refs

ID = "sha256:" + "ab" * 32
DIGEST = "sha256:" + "cd" * 32


@pytest.mark.parametrize(
    ("given", "full"),
    [
        ("pause:3.6", "docker.io/library/pause:3.6"),
        ("library/pause:3.6", "docker.io/library/pause:3.6"),
        ("docker.io/library/pause:3.6", "docker.io/library/pause:3.6"),
        ("index.docker.io/library/pause:3.6", "docker.io/library/pause:3.6"),
        ("nginx", "docker.io/library/nginx:latest"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/team/app:v1", "localhost:5000/team/app:v1"),
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),
        (f"nginx:1.25@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),  # the digest wins, as in containerd
        (f"quay.io/x/y:1@{DIGEST}", f"quay.io/x/y@{DIGEST}"),
        (ID, ID),
    ],
)
def test_normalize(given: str, full: str) -> None:
    assert refs.normalize(given) == full


@pytest.mark.parametrize("bad", ["", "UPPER/case", "a b", "nginx:", "nginx@sha256:xyz", "/nginx", "nginx:tag/x"])
def test_invalid_references_are_refused(bad: str) -> None:
    with pytest.raises(refs.InvalidReference):
        refs.normalize(bad)
    assert refs.normalize_or_none(bad) is None


def test_familiar_form() -> None:
    assert refs.familiar("docker.io/library/nginx:1.25") == "nginx:1.25"
    assert refs.familiar("docker.io/bitnami/redis:7") == "bitnami/redis:7"
    assert refs.familiar("registry.k8s.io/pause:3.10") == "registry.k8s.io/pause:3.10"


@pytest.mark.parametrize(
    ("ref", "pattern", "matches"),
    [
        ("docker.io/library/nginx:1.25", "nginx:*", True),
        ("nginx:1.25", "docker.io/library/nginx:*", True),
        ("docker.io/library/nginx:1.25", "docker.io/*", True),
        ("docker.io/library/nginx:1.25", "redis:*", False),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/*", True),
        ("docker.io/library/nginx-extra:1", "nginx:*", False),
    ],
)
def test_patterns_match_familiar_and_full_forms(ref: str, pattern: str, matches: bool) -> None:
    assert refs.matches_pattern(ref, pattern) is matches


def test_two_spellings_are_one_name() -> None:
    assert refs.same_image_name("pause:3.6", "docker.io/library/pause:3.6")
    assert not refs.same_image_name("pause:3.6", "pause:3.7")
    assert refs.normalize_all(["pause:3.6", "docker.io/library/pause:3.6", "not a ref"]) == {
        "docker.io/library/pause:3.6",
        "not a ref",
    }


def test_a_reference_with_tag_and_digest_is_the_digest_form_containerd_records() -> None:
    """containerd records a pull of `repo:tag@digest` under `repo@digest` (the tag dropped): both sides meet."""
    workload = f"registry.example/team/app:v1@{DIGEST}"
    recorded = f"registry.example/team/app@{DIGEST}"
    assert refs.same_image_name(workload, recorded)
    assert refs.normalize_all([workload]) == refs.normalize_all([recorded])
    # a node that records the tagged spelling itself (`ctr images tag`) still meets it
    assert refs.same_image_name(workload, f"registry.example/team/app:v1@{DIGEST}")
    assert not refs.same_image_name(workload, "registry.example/team/app:v1")  # the tag alone is not pinned


def test_patterns_still_see_the_tag_beside_a_digest() -> None:
    assert refs.matches_pattern(f"nginx:1.25@{DIGEST}", "nginx:1.25*")
    assert refs.matches_pattern(f"nginx:1.25@{DIGEST}", "docker.io/library/nginx:1.25@*")
    assert refs.matches_pattern(f"nginx:1.25@{DIGEST}", "nginx@*")
    assert not refs.matches_pattern(f"nginx:1.25@{DIGEST}", "nginx:1.26*")
