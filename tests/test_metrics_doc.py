"""docs/metrics.md lists every metric the agent and the operator register, with its type, and no `_created`
series is exposed. (The agent's and the operator's real /metrics are checked the same way where they are scraped:
tests/agent/test_agent_report.py, tests/controller/test_operator.py.)"""

from __future__ import annotations

from node_janitor.agent.metrics import AgentMetrics
from node_janitor.controller.metrics import OperatorMetrics
from support.metrics_doc import documented_metrics, exposed_series, undocumented


def _agent_with_every_series() -> AgentMetrics:
    m = AgentMetrics()
    m.reclaimed_bytes.labels("remove-image").inc(1)
    m.actions.labels("remove-image", "done", "lru-under-pressure").inc()
    m.errors.labels("run").inc()
    m.runs.labels("startup", "false").inc()
    m.run_duration.observe(1.0)
    m.watch_events.labels("nodes", "MODIFIED").inc()
    m.events.labels("CleanupDone", "created").inc()
    m.observe_reclaimable({"images": 1})
    m.observe_watermarks(85, 75)
    m.observe_policy(False, False, True)
    return m


def test_every_registered_metric_is_documented_with_its_type() -> None:
    operator = OperatorMetrics()
    operator.writes.labels("nodecleanup", "apply", "ok").inc()
    operator.reconcile_seconds.labels("nodes").observe(0.1)
    for text in (_agent_with_every_series().render().decode(), operator.render().decode()):
        assert undocumented(text) == set()
        assert not [s for s in exposed_series(text) if s.endswith("_created")]


def test_the_check_sees_an_undocumented_metric_and_a_wrong_type() -> None:
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    m = AgentMetrics()
    Counter("node_janitor_new_thing", "not in the doc", registry=m.registry).inc()
    Counter("node_janitor_ready_again", "not in the doc", registry=m.registry)  # no sample: HELP/TYPE only
    missing = undocumented(m.render().decode())
    assert missing == {"node_janitor_new_thing_total (counter)", "node_janitor_ready_again_total (counter)"}
    other = CollectorRegistry()
    Gauge("node_janitor_runs_total", "a gauge where the doc says counter", registry=other).set(1)
    assert undocumented(generate_latest(other).decode()) == {"node_janitor_runs_total (gauge)"}


def test_ratios_run_from_0_to_1_and_counters_end_in_total() -> None:
    for name, type_ in documented_metrics().items():
        assert not name.endswith("_percent"), name
        assert name.endswith("_total") == (type_ == "counter"), name
    m = AgentMetrics()
    from node_janitor.node.inventory import FileSystemEntry

    m.observe_file_systems([FileSystemEntry("imagefs", "/x", 100, 80, 20, inodes=10, inodes_used=5)])
    text = m.render().decode()
    assert 'node_janitor_filesystem_used_ratio{filesystem="imagefs",path="/x"} 0.8' in text
    assert 'node_janitor_filesystem_inodes_used_ratio{filesystem="imagefs",path="/x"} 0.5' in text
    assert 'node_janitor_filesystem_available_bytes{filesystem="imagefs",path="/x"} 20.0' in text
    assert 'node_janitor_build_info{component="agent"' in text
    m.observe_policy(False, False, True)
    m.observe_policy(True, False, True)  # the old labels go: one series, the current one
    policy = [line for line in m.render().decode().splitlines() if line.startswith("node_janitor_policy_info{")]
    assert policy == ['node_janitor_policy_info{dry_run="false",paused="true",scheduled="true"} 1.0']
