"""The operator's Prometheus metrics (`node_janitor_operator_*`, and `node_janitor_build_info`), served on its
/metrics. Counters expose no `_created` series; docs/metrics.md lists every metric (tests/test_metrics_doc.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, generate_latest

from node_janitor.http_endpoint import metrics_registry

__all__ = ["OperatorMetrics"]


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = metrics_registry("operator")
        r = self.registry
        self.writes = Counter(
            "node_janitor_operator_writes", "Writes to the apiserver by object and operation",
            ["object", "operation", "outcome"], registry=r,
        )  # fmt: skip
        self.unchanged = Counter(
            "node_janitor_operator_unchanged", "Recomputations that found nothing to write, by object",
            ["object"], registry=r,
        )  # fmt: skip
        self.events = Counter("node_janitor_operator_events", "Events posted on policies", ["type", "reason"],
                              registry=r)  # fmt: skip
        self.reconcile_seconds = Histogram(
            "node_janitor_operator_reconcile_duration_seconds", "Duration of one debounced pass, by kind",
            ["kind"], registry=r, buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
        )  # fmt: skip
        self.pending = Gauge("node_janitor_operator_pending", "Objects marked for recomputation", ["kind"],
                             registry=r)  # fmt: skip
        self.objects = Gauge("node_janitor_operator_objects", "Objects the operator watches, by kind", ["kind"],
                             registry=r)  # fmt: skip
        self.synced = Gauge("node_janitor_operator_synced", "1 once the initial listing of every watched kind is in",
                            registry=r)  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
