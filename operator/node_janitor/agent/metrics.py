"""The agent's Prometheus metrics (`node_janitor_` names, own registry) and its small HTTP endpoint:
/metrics, /healthz (the process answers), /readyz (containerd answers and a policy is held)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from node_janitor.agent.fillrate import FillPredictor
from node_janitor.node.ingests import Pending
from node_janitor.node.inventory import FileSystemEntry

log = logging.getLogger(__name__)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reclaimed_bytes = Counter(
            "node_janitor_reclaimed_bytes",
            "Bytes freed by completed actions, by action kind (planned sizes).",
            ["kind"],
            registry=r,
        )
        self.actions = Counter(
            "node_janitor_actions",
            "Cleanup actions by kind and outcome (done, skipped, failed).",
            ["kind", "outcome"],
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
        self.fs_used_bytes = Gauge(
            "node_janitor_filesystem_used_bytes",
            "Used bytes of a watched file system.",
            ["filesystem", "path"],
            registry=r,
        )
        self.fs_used_percent = Gauge(
            "node_janitor_filesystem_used_percent",
            "Used space of a watched file system, in percent.",
            ["filesystem", "path"],
            registry=r,
        )
        self.fs_inodes_used_percent = Gauge(
            "node_janitor_filesystem_inodes_used_percent",
            "Used inodes of a watched file system, in percent.",
            ["filesystem", "path"],
            registry=r,
        )
        self.watch_events = Counter(
            "node_janitor_watch_events",
            "Watch events received, by resource (only the agent's own objects).",
            ["resource", "type"],
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
            self.fs_used_bytes.labels(fs.name, fs.path).set(fs.used)
            self.fs_used_percent.labels(fs.name, fs.path).set(round(fs.used_percent, 3))
            if fs.inodes:
                self.fs_inodes_used_percent.labels(fs.name, fs.path).set(round(fs.inodes_used_percent, 3))

    def render(self) -> bytes:
        return generate_latest(self.registry)
