"""The agent's Prometheus metrics (`node_janitor_` names, own registry), served on its /metrics.

Prometheus' conventions: base units (bytes, seconds), ratios from 0 to 1 in `_ratio` gauges, counters end in
`_total` and expose no `_created` series, `node_janitor_build_info` says the version. docs/metrics.md lists every
metric (tests/test_metrics_doc.py scrapes a real agent and fails on an undocumented one)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from node_janitor.agent.fillrate import FillPredictor
from node_janitor.http_endpoint import metrics_registry
from node_janitor.node.ingests import Pending
from node_janitor.node.inventory import FileSystemEntry

log = logging.getLogger(__name__)


def share_out(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """`total` split over `weights`' keys in proportion to them, in whole units that add up to `total` exactly
    (the remainders go to the largest weights first). No positive weight: nothing is shared."""
    positive = {k: w for k, w in weights.items() if w > 0}
    whole = sum(positive.values())
    if total <= 0 or not whole:
        return {}
    shares = {k: total * w // whole for k, w in positive.items()}
    left = total - sum(shares.values())
    for k in sorted(positive, key=lambda k: (-positive[k], k))[:left]:
        shares[k] += 1
    return shares


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = metrics_registry("agent")  # with node_janitor_build_info; no `_created` series
        r = self.registry
        self.reclaimed_bytes = Counter(
            "node_janitor_reclaimed_bytes",
            "Bytes freed, measured, by action kind: a log action's file sizes before and after; the runtime's "
            "actions (images, containers, snapshots, content, leases) as the image file system's gain during the "
            "run, shared out over the kinds that ran in proportion to their planned sizes.",
            ["kind"],
            registry=r,
        )
        self.actions = Counter(
            "node_janitor_actions",
            "Cleanup actions (removals, rotations, compressions) by kind, outcome (done, skipped, failed) and the "
            "reason they were planned for.",
            ["kind", "outcome", "reason"],
            registry=r,
        )
        self.errors = Counter(
            "node_janitor_errors",
            "Errors by where they happened (run, runtime, apiserver, logrotator).",
            ["source"],
            registry=r,
        )
        self.runs = Counter("node_janitor_runs", "Cleanup runs by trigger.", ["trigger", "dry_run"], registry=r)
        self.run_duration = Histogram(
            "node_janitor_run_duration_seconds",
            "Duration of cleanup runs.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.last_run_timestamp = Gauge(
            "node_janitor_last_run_timestamp_seconds", "When the last cleanup run ended (Unix time).", registry=r
        )
        self.last_run_reclaimed = Gauge(
            "node_janitor_last_run_reclaimed_bytes", "Bytes the last run really freed (measured).", registry=r
        )
        self.last_run_planned = Gauge(
            "node_janitor_last_run_planned_bytes", "Bytes the last run planned to free.", registry=r
        )
        self.target_short = Gauge(
            "node_janitor_target_short_bytes",
            "Bytes the last run left above the low watermark with nothing more it may remove (0: reached).",
            registry=r,
        )
        self.reclaimable = Gauge(
            "node_janitor_reclaimable_bytes",
            "Bytes a cleanup could free as last measured (`node-janitor df`'s RECLAIMABLE), by type.",
            ["type"],
            registry=r,
        )
        labels = ["filesystem", "path"]
        self.fs_size_bytes = Gauge(
            "node_janitor_filesystem_size_bytes", "Size of a watched file system.", labels, registry=r
        )
        self.fs_used_bytes = Gauge(
            "node_janitor_filesystem_used_bytes", "Used bytes of a watched file system.", labels, registry=r
        )
        self.fs_available_bytes = Gauge(
            "node_janitor_filesystem_available_bytes",
            "Bytes of a watched file system available to unprivileged users (statvfs f_bavail).",
            labels,
            registry=r,
        )
        self.fs_used_ratio = Gauge(
            "node_janitor_filesystem_used_ratio",
            "Used space of a watched file system, 0 to 1: used / (used + available), as `df` and the watermarks.",
            labels,
            registry=r,
        )
        self.fs_inodes_used_ratio = Gauge(
            "node_janitor_filesystem_inodes_used_ratio",
            "Used inodes of a watched file system, 0 to 1.",
            labels,
            registry=r,
        )
        self.high_watermark = Gauge(
            "node_janitor_high_watermark_ratio",
            "The policy's high watermark (thresholds.highPercent / 100): above it a run starts.",
            registry=r,
        )
        self.low_watermark = Gauge(
            "node_janitor_low_watermark_ratio",
            "The policy's low watermark (thresholds.lowPercent / 100): what a run reclaims down to.",
            registry=r,
        )
        self.policy_info = Gauge(
            "node_janitor_policy_info",
            "Always 1; its labels describe the policy the agent applies: paused, dry_run, scheduled (has a schedule).",
            ["paused", "dry_run", "scheduled"],
            registry=r,
        )
        self._policy_labels: tuple[str, ...] = ()
        self.watch_events = Counter(
            "node_janitor_watch_events",
            "Watch events received, by resource (only the agent's own objects).",
            ["resource", "type"],
            registry=r,
        )
        self.events = Counter(
            "node_janitor_events",
            "Events about the node, by reason and what became of them: created (a new Event), aggregated (a count "
            "added to an existing one), dropped (over the rate limit, or refused).",
            ["reason", "result"],
            registry=r,
        )
        self.ready = Gauge("node_janitor_ready", "1 when containerd answers and a policy is held.", registry=r)
        self._fill_metrics(r)

    # ---- ahead of the fill (agent/fillrate.py, node/ingests.py) ----

    def _fill_metrics(self, r: CollectorRegistry) -> None:
        self.pending_bytes = Gauge(
            "node_janitor_pending_bytes",
            "Bytes pulls in flight (containerd's content ingests) still bring to the image file system, counted as "
            "used by the triggers and the target (ingests of known size only).",
            registry=r,
        )
        self.pending_unknown_ingests = Gauge(
            "node_janitor_pending_unknown_ingests",
            "Ingests in flight whose size is unknown (what they still bring is unknown, not zero).",
            registry=r,
        )
        self.fill_rate = Gauge(
            "node_janitor_filesystem_fill_rate_bytes_per_second",
            "Growth of a watched file system over the last 15 s (least squares; removals not subtracted).",
            ["filesystem"],
            registry=r,
        )
        self.eviction_eta = Gauge(
            "node_janitor_eviction_eta_seconds",
            "Projected seconds until the image file system reaches thresholds.evictionPercent at its fill rate "
            "(+Inf: not filling).",
            registry=r,
        )

    def observe_fill(self, fill: FillPredictor, pending: Pending) -> None:
        self.pending_bytes.set(pending.bytes)
        self.pending_unknown_ingests.set(pending.unknown)
        for name, rate in fill.rates.items():
            self.fill_rate.labels(name).set(max(0.0, rate.rate() or 0.0))
        if fill.forecast is not None:
            self.eviction_eta.set(fill.forecast.seconds_to_eviction)

    def observe_file_systems(self, file_systems: Iterable[FileSystemEntry]) -> None:
        for fs in file_systems:
            labels = (fs.name, fs.path)
            self.fs_size_bytes.labels(*labels).set(fs.size)
            self.fs_used_bytes.labels(*labels).set(fs.used)
            self.fs_available_bytes.labels(*labels).set(fs.available)
            self.fs_used_ratio.labels(*labels).set(round(fs.used_percent / 100, 5))
            if fs.inodes:
                self.fs_inodes_used_ratio.labels(*labels).set(round(fs.inodes_used_percent / 100, 5))

    def observe_watermarks(self, high_percent: float, low_percent: float) -> None:
        self.high_watermark.set(high_percent / 100)
        self.low_watermark.set(low_percent / 100)

    def observe_policy(self, paused: bool, dry_run: bool, scheduled: bool) -> None:
        labels = tuple(str(v).lower() for v in (paused, dry_run, scheduled))
        if labels != self._policy_labels:  # one series, the current one
            self.policy_info.clear()
            self.policy_info.labels(*labels).set(1)
            self._policy_labels = labels

    def observe_reclaimable(self, by_type: Mapping[str, int]) -> None:
        for type_, value in by_type.items():
            self.reclaimable.labels(type_).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
