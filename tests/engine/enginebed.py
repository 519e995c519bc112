"""Helpers for engine tests on the real containerd bed."""

from __future__ import annotations

from typing import Any

from node_janitor.api import CleanupPolicy
from node_janitor.api.policy import PolicyRules

# Every unused image older than 0 s goes, whatever the disk: what protects an image is all that keeps it.
REMOVE_ALL_UNUSED: dict[str, Any] = {"images": {"minAge": "0s", "maxUnusedAge": "0s"}}


def rules(spec: dict[str, Any]) -> PolicyRules:
    """The per-node rules of a CleanupPolicy with this spec (validated as `kubectl apply` would)."""
    manifest = {"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": "t"}}
    return CleanupPolicy.from_manifest({**manifest, "spec": spec}).spec.rules()
