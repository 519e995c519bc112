"""CleanupPolicy (nodejanitor.io/v1alpha1): what to clean on which nodes, and when."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from node_janitor.api.cron import CronSchedule
from node_janitor.api.fields import (
    CEL_VALIDATIONS,
    ApiModel,
    CronExpression,
    Duration,
    NonEmptyString,
    PositiveDuration,
    PositiveSize,
    Size,
)
from node_janitor.api.meta import API_VERSION, Conditions, LabelSelector, Resource, Timestamp
from node_janitor.api.node_paths import (
    CEL_GLOB_RULES,
    MAX_EXTRA_PATHS,
    MAX_GLOB_LENGTH,
    PROTECTED_TREES,
    glob_problem,
)

__all__ = [
    "CleanupPolicy",
    "CleanupPolicySpec",
    "CleanupPolicyStatus",
    "ContainersPolicy",
    "ContentPolicy",
    "ExtraLogPath",
    "ImagesPolicy",
    "LeasesPolicy",
    "LogsPolicy",
    "PolicyRules",
    "SnapshotsPolicy",
    "Thresholds",
]

Percent = Annotated[int, Field(ge=1, le=100)]


def _less_than(low: str, high: str) -> JsonDict:
    """A CEL rule `low < high`, reported on the low field. (A messageExpression quoting the values would
    exceed the apiserver's CEL cost budget, so the values are only in the models' message.)"""
    return {
        "rule": f"self.{low} < self.{high}",
        "message": f"{low} must be less than {high}",
        "fieldPath": f".{low}",
        "reason": "FieldValueInvalid",
    }


class Thresholds(ApiModel):
    """Watermarks: reclaim when a watched file system (containerd's image file system, the pod log file
    system) goes above a high watermark, until it is below the matching low one."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL_VALIDATIONS: [
                _less_than("lowPercent", "highPercent"),
                _less_than("inodesLowPercent", "inodesHighPercent"),
            ]
        }
    )

    high_percent: Percent = 85
    """Start reclaiming when used space goes above this percentage (1-100)."""
    low_percent: Percent = 75
    """Stop reclaiming once used space is below this percentage (1-100, less than highPercent)."""
    inodes_high_percent: Percent = 90
    """Start reclaiming when used inodes go above this percentage (1-100)."""
    inodes_low_percent: Percent = 80
    """Stop reclaiming once used inodes are below this percentage (1-100, less than inodesHighPercent)."""
    eviction_percent: Percent = 85
    """The used-space percentage at which the kubelet evicts for the image file system (1-100): its
    evictionHard imagefs.available<15% by default is 85. Prediction aims to stay below it."""
    predict: bool = True
    """Reclaim ahead of a fill, not only above highPercent: when the image file system's recent growth (a
    least-squares rate over the last 15 s), counting the bytes pulls in flight still bring, would reach
    evictionPercent within predictHorizon plus the time a run takes, the agent reclaims to lowPercent and leaves
    room for what lands meanwhile. Fires once per fill (again only when the rate or the level rises markedly).
    false: react at highPercent only."""
    predict_horizon: PositiveDuration = timedelta(seconds=30)
    """How far ahead a fill counts (Go duration, default 30s): reclaim when evictionPercent is projected within
    this plus a run's duration. 30s covers a run (a few seconds), the agent's sampling (0.25-2s) and the kubelet's
    eviction check (every 10s) several times over, yet leaves a disk filling slower than 0.5% a second 15 points
    below evictionPercent alone."""

    @model_validator(mode="after")
    def _low_below_high(self) -> Self:
        for low, high, low_name, high_name in (
            (self.low_percent, self.high_percent, "lowPercent", "highPercent"),
            (self.inodes_low_percent, self.inodes_high_percent, "inodesLowPercent", "inodesHighPercent"),
        ):
            if low >= high:
                raise ValueError(f"{low_name} ({low}) must be less than {high_name} ({high})")
        return self


class ImagesPolicy(ApiModel):
    """Which container images may be removed. Images in use, younger than minAge, kept, pinned, or the
    sandbox (pause) image are never removed."""

    enabled: bool = True
    """Remove unused images."""
    min_age: Duration = timedelta(minutes=2)
    """Never remove an image pulled more recently than this (Go duration, e.g. 2m, 1h30m)."""
    max_unused_age: Duration | None = None
    """Remove images unused for longer than this even without disk pressure (Go duration, e.g. 168h)."""
    keep: list[NonEmptyString] = []
    """Glob patterns over image references (e.g. registry.k8s.io/*); matching images are never removed."""
    remove_dangling: bool = True
    """Remove untagged (dangling) images first."""
    max_deletions_per_run: Annotated[int, Field(ge=1)] | None = None
    """Remove at most this many images in one run (unlimited if unset)."""
    selection: Literal["LeastRecentlyUsed", "FewestImages"] = "LeastRecentlyUsed"
    """Which removable images go first under pressure (after dangling ones, if removeDangling).
    LeastRecentlyUsed (the kubelet's order): the longest unused first. FewestImages: the images whose removal
    frees the most bytes that nothing else still uses (shared layers count only once their last remaining user
    goes), so the fewest images are removed to reach the low watermark; the last one is the smallest that
    suffices, and the longest unused goes first among equals."""
    keep_workload_images: bool = True
    """Never remove an image that a Pod or the pod template of a Deployment, ReplicaSet, StatefulSet,
    DaemonSet, Job or CronJob anywhere in the cluster references, even where no container runs it yet (the
    operator protects it on every node that holds it)."""


class SnapshotsPolicy(ApiModel):
    """containerd snapshots."""

    remove_orphans: bool = True
    """Remove snapshots that no image, container or lease references."""


class ContentPolicy(ApiModel):
    """containerd's content store (image blobs)."""

    remove_orphans: bool = True
    """Remove blobs that no image or lease references."""
    discard_unpacked_layers: bool = False
    """Remove the compressed copy of layers already unpacked into snapshots (such images can no longer be
    exported or pushed)."""


class LeasesPolicy(ApiModel):
    """containerd leases."""

    remove_expired: bool = True
    """Remove leases past their expiry, releasing what they hold."""


class ContainersPolicy(ApiModel):
    """Stopped containers."""

    remove_exited_after: Duration | None = None
    """Remove containers exited for longer than this (Go duration); kubelet's own garbage collection
    governs them if unset."""


class ExtraLogPath(ApiModel):
    """A rule for other log files on the node."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL_VALIDATIONS: [
                {"rule": "has(self.maxAge) || has(self.maxSize)", "message": "set maxAge, maxSize or both"},
                {
                    "rule": f"!{list(PROTECTED_TREES)!r}.exists(t, self.glob == t || self.glob.startsWith(t + '/'))",
                    "message": "the glob is inside a tree extraPaths never touch (the runtime's, the kubelet's, "
                    "the system's)",
                },
                *CEL_GLOB_RULES,  # the rest of glob_problem, wildcards included
            ]
        }
    )

    glob: Annotated[str, Field(min_length=2, max_length=MAX_GLOB_LENGTH, pattern=r"^/")]
    """Absolute glob of the files the rule governs, e.g. /var/log/journal/**/*.journal. Directory symlinks are
    never followed; a glob that can reach containerd's or the kubelet's state, the pod logs or a system tree
    (/etc, /usr, /boot, /proc, /sys, /dev, ...) is refused."""

    @field_validator("glob")
    @classmethod
    def _contained(cls, glob: str) -> str:
        problem = glob_problem(glob)
        if problem is not None:
            raise ValueError(problem)
        return glob

    max_age: Duration | None = None
    """Remove matching files last modified longer ago than this (Go duration)."""
    max_size: Size | None = None
    """Remove the oldest matching files while they together exceed this size (quantity, e.g. 1Gi)."""

    @model_validator(mode="after")
    def _has_a_limit(self) -> Self:
        if self.max_age is None and self.max_size is None:
            raise ValueError("set maxAge, maxSize or both")
        return self


class LogsPolicy(ApiModel):
    """Container logs under /var/log/pods: rotation, compression, a node-wide budget and orphans."""

    enabled: bool = True
    """Manage container logs."""
    max_size: PositiveSize = 10 * 2**20
    """Rotate a container's live log when it reaches this size (quantity, e.g. 10Mi)."""
    max_files: Annotated[int, Field(ge=1)] = 5
    """Log files kept per container, the live one included (at least 1)."""
    compress: bool = True
    """Gzip rotated files, except the newest one (log shippers may still read it)."""
    check_interval: PositiveDuration = timedelta(seconds=5)
    """How often log sizes are checked (Go duration, e.g. 5s)."""
    node_budget: Size | None = None
    """Most space all pod logs together may take (quantity, e.g. 5Gi); oldest rotated files go first."""
    remove_orphaned: bool = True
    """Remove log directories of pods the runtime no longer knows."""
    orphan_grace_period: Duration = timedelta(hours=1)
    """How long an orphaned pod log directory is kept (Go duration)."""
    extra_paths: Annotated[list[ExtraLogPath], Field(max_length=MAX_EXTRA_PATHS)] = []
    """Rules for other log files on the node (at most 32)."""


class PolicyRules(ApiModel):
    """What to clean and when: the part of a CleanupPolicy that applies to a node."""

    dry_run: bool = False
    """Plan and report, but remove nothing."""
    paused: bool = False
    """Do nothing at all on the selected nodes."""
    schedule: CronExpression | None = None
    """Also sweep on this 5-field cron schedule (e.g. '0 3 * * *'), whatever the disk usage."""
    thresholds: Thresholds = Thresholds()
    """When to reclaim space: high and low watermarks for space and inodes."""
    images: ImagesPolicy = ImagesPolicy()
    """Which container images may be removed."""
    snapshots: SnapshotsPolicy = SnapshotsPolicy()
    """containerd snapshots."""
    content: ContentPolicy = ContentPolicy()
    """containerd's content store (image blobs)."""
    leases: LeasesPolicy = LeasesPolicy()
    """containerd leases."""
    containers: ContainersPolicy = ContainersPolicy()
    """Stopped containers."""
    logs: LogsPolicy = LogsPolicy()
    """Container logs: rotation, compression, node budget, orphans."""

    @property
    def cron_schedule(self) -> CronSchedule | None:
        """The parsed `schedule`, if any."""
        return CronSchedule.parse(self.schedule) if self.schedule is not None else None


class CleanupPolicySpec(PolicyRules):
    """The desired cleanup on the nodes the policy selects."""

    node_selector: LabelSelector = LabelSelector()
    """The nodes the policy applies to (by label); empty selects every node."""
    priority: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] = 0
    """When several policies select a node, the one with the highest priority (ties: the name first in
    alphabetical order) gives the node its whole policy; protections are unioned across every selecting
    policy: images.keep patterns add up, images.keepWorkloadImages on any of them keeps workload images, and
    paused on any of them pauses the node."""

    def rules(self) -> PolicyRules:
        """The per-node part of the spec (without nodeSelector and priority)."""
        return PolicyRules.model_validate({name: getattr(self, name) for name in PolicyRules.model_fields})


class CleanupPolicyStatus(ApiModel):
    """The policy's effect across the cluster, maintained by the operator."""

    conditions: Conditions = []
    """Latest observations of the policy's state; Ready tells whether it is applied to its nodes."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation the operator last acted on."""
    matched_nodes: Annotated[int, Field(ge=0)] | None = None
    """Nodes the policy selects."""
    nodes_under_pressure: Annotated[int, Field(ge=0)] | None = None
    """Selected nodes above their high watermark or with the DiskPressure condition."""
    reclaimed_bytes: Annotated[int, Field(ge=0)] | None = None
    """Bytes reclaimed on the selected nodes by their last runs."""
    reclaimed: str | None = None
    """reclaimedBytes for people (e.g. 1.5Gi)."""
    last_run_time: Timestamp | None = None
    """When a selected node last ran a cleanup."""


class CleanupPolicy(Resource):
    """Cluster-wide intent: which nodes to keep clean, of what, and when."""

    kind_name: ClassVar[str] = "CleanupPolicy"
    plural: ClassVar[str] = "cleanuppolicies"

    api_version: Literal["nodejanitor.io/v1alpha1"] = API_VERSION
    """APIVersion defines the versioned schema of this representation of an object."""
    kind: Literal["CleanupPolicy"] = "CleanupPolicy"
    """Kind is a string value representing the REST resource this object represents."""
    spec: CleanupPolicySpec = CleanupPolicySpec()
    """The desired cleanup."""
    status: CleanupPolicyStatus | None = None
    """The policy's effect across the cluster, maintained by the operator."""
