"""NodeCleanup (nodejanitor.io/v1alpha1): one per node, named after it; the contract between the operator
(which writes the spec: the node's effective policy) and the node's agent (which writes the status)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from node_janitor.api.fields import CEL_VALIDATIONS, ApiModel, NonEmptyString
from node_janitor.api.meta import API_VERSION, Conditions, Resource, Timestamp, list_map
from node_janitor.api.policy import PolicyRules

__all__ = [
    "DRY_RUN_REQUEST_PREFIX",
    "RUN_REQUEST_ANNOTATION",
    "FileSystemStatus",
    "LastRun",
    "NodeCleanup",
    "NodeCleanupSpec",
    "NodeCleanupStatus",
    "PlannedAction",
    "PolicySource",
    "RunTrigger",
    "Usage",
    "UsageEntry",
    "is_dry_run_request",
    "requested_run",
]

Count = Annotated[int, Field(ge=0)]
MAX_IMAGE_REFS = 1000
"""status.imageRefs holds at most this many (a node with thousands of images must not have its status refused)."""
MAX_IMAGE_REF_LENGTH = 512
MAX_PACKED_LENGTH = 1 << 19
ImageRef = Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_REF_LENGTH)]
Bytes = Annotated[int, Field(ge=0)]
Percentage = Annotated[float, Field(ge=0, le=100)]
RunTrigger = Literal["schedule", "pressure", "request", "watermark", "prediction", "startup"]
DRY_RUN_REQUEST_PREFIX = "dry-run:"
"""spec.runRequest tokens starting with this ask for a dry run."""


RUN_REQUEST_ANNOTATION = "nodejanitor.io/run-request"
"""`node-janitor run` asks through this annotation: a metadata change, so the NodeCleanup's generation stays what
the operator's spec made it (a spec.runRequest change bumps it). It carries a token as spec.runRequest does and
wins over it when both are set."""


def is_dry_run_request(token: str | None) -> bool:
    """Whether a spec.runRequest token asks for a dry run."""
    return token is not None and token.startswith(DRY_RUN_REQUEST_PREFIX)


def requested_run(annotations: Mapping[str, str] | None, spec_token: str | None) -> str | None:
    """The run request a NodeCleanup carries: its RUN_REQUEST_ANNOTATION, else spec.runRequest."""
    return (annotations or {}).get(RUN_REQUEST_ANNOTATION) or spec_token


class PolicySource(ApiModel):
    """A CleanupPolicy that contributed to the effective policy."""

    name: NonEmptyString
    """The CleanupPolicy's name."""
    generation: Count
    """The CleanupPolicy's .metadata.generation that was compiled."""
    priority: int
    """The CleanupPolicy's priority."""


class NodeCleanupSpec(ApiModel):
    """What the node's agent should do, compiled by the operator."""

    node_name: NonEmptyString
    """The node this object is for (also its name)."""
    policy: PolicyRules = PolicyRules()
    """The effective policy: the highest-priority selecting CleanupPolicy (ties: name) as a whole, with
    images.keep unioned, and images.keepWorkloadImages and paused set if any selecting policy sets them."""
    sources: list[PolicySource] = []
    """Every selecting CleanupPolicy, the winner first."""
    protected_images: list[str] = []
    """Image references that workloads anywhere in the cluster use and that this node holds (the
    intersection with status.imageRefs); the agent never removes them."""
    run_request: str | None = None
    """A token; when it changes the agent runs a cleanup at once and reports the token in
    status.lastRun.runRequest. A token starting with `dry-run:` asks for a dry run (plan, remove nothing).
    `node-janitor run` sets the annotation nodejanitor.io/run-request instead (no generation bump), which wins
    when both are set."""


class UsageEntry(ApiModel):
    """Disk usage of one kind of object (a `docker system df` row)."""

    total: Count = 0
    """How many there are."""
    active: Count = 0
    """How many are in use."""
    size: Bytes = 0
    """Bytes they take on disk, shared data counted once."""
    reclaimable: Bytes = 0
    """Bytes removing the unused ones would free."""


class Usage(ApiModel):
    """The node's disk usage by kind of object."""

    images: UsageEntry = UsageEntry()
    """Container images."""
    containers: UsageEntry = UsageEntry()
    """Containers (their writable layers)."""
    snapshots: UsageEntry = UsageEntry()
    """containerd snapshots."""
    content: UsageEntry = UsageEntry()
    """containerd content store blobs."""
    logs: UsageEntry = UsageEntry()
    """Pod log files."""


class FileSystemStatus(ApiModel):
    """A file system the agent watches."""

    name: NonEmptyString
    """What it holds, e.g. imagefs or logs."""
    path: str
    """A path on it, e.g. /var/lib/containerd."""
    size_bytes: Bytes
    """Its size."""
    used_bytes: Bytes
    """Bytes used."""
    used_percent: Percentage
    """Percentage of space used."""
    inodes_used_percent: Percentage | None = None
    """Percentage of inodes used (unset if the file system has no inode limit)."""


class PlannedAction(ApiModel):
    """One action of a plan (reported for dry runs)."""

    kind: NonEmptyString
    """What it does, e.g. remove-image, remove-container, rotate-log."""
    ref: str
    """What it acts on: an image reference or ID, a container ID, a log path."""
    bytes: Bytes = 0
    """Bytes it is expected to free."""
    reason: str = ""
    """Why, e.g. lru-under-pressure, unused-too-long, orphan."""


class LastRun(ApiModel):
    """The node's last cleanup run."""

    trigger: RunTrigger
    """What started it: schedule, pressure (the node's DiskPressure), request (spec.runRequest),
    watermark (a file system above thresholds.highPercent), prediction (the image file system filling fast
    enough to reach thresholds.evictionPercent within thresholds.predictHorizon) or startup (the agent's first
    run)."""
    start_time: Timestamp
    """When it started."""
    duration_seconds: Annotated[float, Field(ge=0)] = 0.0
    """How long it took."""
    dry_run: bool = False
    """Whether it only planned."""
    actions: Count = 0
    """Actions planned (dry run) or performed."""
    planned_bytes: Bytes = 0
    """Bytes the plan expected to free."""
    reclaimed_bytes: int = 0
    """Bytes really freed, measured on the file systems."""
    reclaimed: str | None = None
    """reclaimedBytes for people (e.g. 1.5Gi)."""
    errors: list[str] = []
    """What could not be done, one message per failed action."""
    run_request: str | None = None
    """The run request token this run answered (the nodejanitor.io/run-request annotation or spec.runRequest), if
    a request started it."""
    plan: Annotated[list[PlannedAction], Field(max_length=50)] = []
    """For a dry run: the first 50 planned actions."""


class NodeCleanupStatus(ApiModel):
    """The node's report, written by its agent."""

    conditions: Conditions = []
    """Latest observations of the agent's state; Ready tells whether it applies the current spec."""
    observed_generation: Count | None = None
    """The .metadata.generation the agent last acted on."""
    usage: Usage | None = None
    """Disk usage by kind of object."""
    file_systems: Annotated[list[FileSystemStatus], Field(json_schema_extra=list_map("name"))] = []
    """The watched file systems."""
    disk_percent: Percentage | None = None
    """The highest usedPercent of the watched file systems."""
    image_count: Count | None = None
    """Images on the node."""
    reclaimable_bytes: Bytes | None = None
    """Bytes a cleanup could free now."""
    reclaimable: str | None = None
    """reclaimableBytes for people (e.g. 1.5Gi)."""
    last_run: LastRun | None = None
    """The last cleanup run."""
    image_refs: Annotated[list[ImageRef], Field(max_length=MAX_IMAGE_REFS)] = []
    """References (tags and digests) of the images on the node, for the operator's protected set: at most 1000,
    those of images no container uses first (the only ones a cleanup may remove)."""
    image_refs_omitted: Count | None = None
    """How many references imageRefs leaves out (over its limit, or packed into imageRefsPacked). While some are
    left out beyond the packed ones, the operator protects every workload image on this node, listed or not."""
    image_refs_packed: Annotated[str, Field(max_length=MAX_PACKED_LENGTH)] | None = None
    """The references, packed (gzip, base64, prefixed gzip+base64:) when the list would make the status patch
    large; imageRefs is then empty and imageRefsOmitted counts them too."""
    heartbeat_time: Timestamp | None = None
    """When the agent last reported, with or without a run."""


class NodeCleanup(Resource):
    """One node's effective cleanup policy (spec, from the operator) and disk report (status, from the
    node's agent). Named after the node."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL_VALIDATIONS: [
                {
                    "rule": "!has(self.spec) || self.spec.nodeName == self.metadata.name",
                    "message": "spec.nodeName must equal metadata.name (a NodeCleanup is named after its node)",
                    "fieldPath": ".spec.nodeName",
                }
            ]
        }
    )

    kind_name: ClassVar[str] = "NodeCleanup"
    plural: ClassVar[str] = "nodecleanups"

    api_version: Literal["nodejanitor.io/v1alpha1"] = API_VERSION
    """APIVersion defines the versioned schema of this representation of an object."""
    kind: Literal["NodeCleanup"] = "NodeCleanup"
    """Kind is a string value representing the REST resource this object represents."""
    spec: NodeCleanupSpec
    """What the node's agent should do, compiled by the operator."""
    status: NodeCleanupStatus | None = None
    """The node's report, written by its agent."""

    @model_validator(mode="after")
    def _named_after_node(self) -> Self:
        if self.metadata.name is not None and self.metadata.name != self.spec.node_name:
            raise ValueError(
                f"spec.nodeName ({self.spec.node_name}) must equal metadata.name ({self.metadata.name}): "
                "a NodeCleanup is named after its node"
            )
        return self
