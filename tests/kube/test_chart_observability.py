"""The chart's monitoring objects and log settings: the ServiceMonitor or the PodMonitor (one job label either way), the
PrometheusRule's alerts run by `promtool test rules` on series written here (each alert firing where it should and
silent where it should not), and the Grafana dashboard, whose every expression names documented metrics.
(`helm template` only: no apiserver needed; helm and promtool are the cached builds.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.kube import REPO, _module_version, cache_dir, find_binaries
from support.metrics_doc import documented_metrics
from support.promtool import find_promtool

pytestmark = pytest.mark.kube

CHART = REPO / "charts" / "node-janitor"
AGENT_JOB, OPERATOR_JOB = "nj-node-janitor-agent", "nj-node-janitor-operator"
NS = "node-janitor"


def helm_binary() -> Path:
    """The cached helm (the rest of the control plane is not needed here); built with it if missing."""
    helm = cache_dir() / f"helm-{_module_version('helm', 'helm.sh/helm/v3')}" / "helm"
    return helm if helm.is_file() else find_binaries().helm


def render(tmp_path: Path, *values: str, check: bool = True) -> Any:
    helm = helm_binary()
    env = {**os.environ, **{f"HELM_{k}_HOME": str(tmp_path / "helm" / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}
    result = subprocess.run(
        [str(helm), "template", "nj", str(CHART), "--namespace", NS, *values],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if not check:
        return result.stderr
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def of_kind(docs: Any, kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("monitor", ["serviceMonitor", "podMonitor"])
def test_either_monitor_gives_the_jobs_the_alerts_select(tmp_path: Path, monitor: str) -> None:
    docs = render(tmp_path, "--set", f"metrics.{monitor}.enabled=true")
    kind = monitor[0].upper() + monitor[1:]
    monitors = {d["metadata"]["name"]: d for d in of_kind(docs, kind)}
    assert set(monitors) == {AGENT_JOB, OPERATOR_JOB}
    for name, doc in monitors.items():
        (endpoint,) = doc["spec"]["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
        assert endpoint["port"] == "metrics"
        relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
        assert relabel["job"]["replacement"] == name
        assert ("node" in relabel) == (name == AGENT_JOB)
    assert not of_kind(docs, "ServiceMonitor" if kind == "PodMonitor" else "PodMonitor")
    both = ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true"]
    assert "choose one" in render(tmp_path, *both, check=False)


# --- the alerts -----------------------------------------------------------------------------------------

AGENT = f'job="{AGENT_JOB}"'
OPERATOR = f'job="{OPERATOR_JOB}"'


def _target(node: str) -> str:
    return f'{AGENT},instance="10.0.0.{node[-1]}:9743",node="{node}"'


def _labels(node: str, severity: str = "warning") -> dict[str, str]:
    return {"severity": severity, "job": AGENT_JOB, "instance": f"10.0.0.{node[-1]}:9743", "node": node}


# Each case: input series (1-minute steps), then (alert, eval_time, the labels of each alert expected firing).
RULE_TESTS: list[dict[str, Any]] = [
    {  # n1 stops answering at 10m; n2 answers throughout
        "interval": "1m",
        "input_series": [
            {"series": f"up{{{_target('n1')}}}", "values": "1x10 0x30"},
            {"series": f"up{{{_target('n2')}}}", "values": "1x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "15m", "alertname": "NodeJanitorAgentDown", "exp_alerts": []},  # not yet 10m
            {"eval_time": "25m", "alertname": "NodeJanitorAgentDown",
             "exp_alerts": [{"exp_labels": _labels("n1")}]},
        ],
    },
    {  # kube-state-metrics: one agent pod unavailable from 5m on
        "interval": "1m",
        "input_series": [
            {"series": f'kube_daemonset_status_number_unavailable{{namespace="{NS}",daemonset="{AGENT_JOB}"}}',
             "values": "0x5 1x30"},
            {"series": 'kube_daemonset_status_number_unavailable{namespace="other",daemonset="other"}',
             "values": "3x35"},
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "NodeJanitorAgentUnavailable",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": NS, "daemonset": AGENT_JOB}}]},
        ],
    },
    {  # n1's agent not ready (containerd away) for 20m; n2 ready
        "interval": "1m",
        "input_series": [
            {"series": f"node_janitor_ready{{{_target('n1')}}}", "values": "0x30"},
            {"series": f"node_janitor_ready{{{_target('n2')}}}", "values": "1x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "NodeJanitorAgentNotReady",
             "exp_alerts": [{"exp_labels": _labels("n1")}]},
        ],
    },
    {  # above the high watermark (0.85): n1 with nothing freed, n2 freeing, n3 below; n4 above only briefly
        "interval": "1m",
        "input_series": [
            *[{"series": f'node_janitor_high_watermark_ratio{{{_target(n)}}}', "values": "0.85x80"}
              for n in ("n1", "n2", "n3", "n4")],
            {"series": f'node_janitor_filesystem_used_ratio{{{_target("n1")},filesystem="imagefs",path="/c"}}',
             "values": "0.92x80"},
            {"series": f'node_janitor_filesystem_used_ratio{{{_target("n1")},filesystem="logs",path="/l"}}',
             "values": "0.10x80"},
            {"series": f'node_janitor_reclaimed_bytes_total{{{_target("n1")},kind="remove-image"}}',
             "values": "5000x80"},
            {"series": f'node_janitor_filesystem_used_ratio{{{_target("n2")},filesystem="imagefs",path="/c"}}',
             "values": "0.92x80"},
            {"series": f'node_janitor_reclaimed_bytes_total{{{_target("n2")},kind="remove-image"}}',
             "values": "0+1000x80"},
            {"series": f'node_janitor_filesystem_used_ratio{{{_target("n3")},filesystem="imagefs",path="/c"}}',
             "values": "0.50x80"},
            {"series": f'node_janitor_filesystem_used_ratio{{{_target("n4")},filesystem="imagefs",path="/c"}}',
             "values": "0.50x40 0.95x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "NodeJanitorDiskAboveHighWatermark", "exp_alerts": []},  # for: 30m
            {"eval_time": "60m", "alertname": "NodeJanitorDiskAboveHighWatermark",
             "exp_alerts": [{"exp_labels": _labels("n1", "critical")}]},
        ],
    },
    {  # n1's run errors keep rising; n2 had errors once, long ago
        "interval": "1m",
        "input_series": [
            {"series": f'node_janitor_errors_total{{{_target("n1")},source="run"}}', "values": "0+1x90"},
            {"series": f'node_janitor_errors_total{{{_target("n2")},source="run"}}', "values": "0 3x90"},
            {"series": f'node_janitor_errors_total{{{_target("n3")},source="apiserver"}}', "values": "0+1x90"},
        ],
        "alert_rule_test": [
            {"eval_time": "80m", "alertname": "NodeJanitorRunErrors", "exp_alerts": [{"exp_labels": _labels("n1")}]},
        ],
    },
    {  # 27 hours in: n1 (scheduled) never ran, n2 (scheduled) runs every minute, n3 has no schedule, n4 is paused
        "interval": "1m",
        "input_series": [
            {"series": f"node_janitor_last_run_timestamp_seconds{{{_target('n1')}}}", "values": "0x1700"},
            {"series": f"node_janitor_last_run_timestamp_seconds{{{_target('n2')}}}", "values": "0+60x1700"},
            {"series": f"node_janitor_last_run_timestamp_seconds{{{_target('n3')}}}", "values": "0x1700"},
            {"series": f"node_janitor_last_run_timestamp_seconds{{{_target('n4')}}}", "values": "0x1700"},
            *[{"series": f'node_janitor_policy_info{{{_target(n)},paused="{p}",dry_run="false",scheduled="{s}"}}',
               "values": "1x1700"}
              for n, p, s in (("n1", "false", "true"), ("n2", "false", "true"), ("n3", "false", "false"),
                              ("n4", "true", "true"))],
        ],
        "alert_rule_test": [
            {"eval_time": "25h", "alertname": "NodeJanitorNoRecentRun", "exp_alerts": []},  # within 26 hours
            {"eval_time": "27h", "alertname": "NodeJanitorNoRecentRun",
             "exp_alerts": [{"exp_labels": _labels("n1")}]},
        ],
    },
    {  # the operator: its one target down from 10m on, not synced, failing writes
        "interval": "1m",
        "input_series": [
            {"series": f'up{{{OPERATOR},instance="10.0.1.1:8080"}}', "values": "1x10 0x30"},
            {"series": f'node_janitor_operator_synced{{{OPERATOR},instance="10.0.1.1:8080"}}', "values": "0x40"},
            {"series": f'node_janitor_operator_writes_total{{{OPERATOR},instance="10.0.1.1:8080",object="nodecleanup",'
                       f'operation="apply",outcome="error"}}', "values": "0+2x40"},
            {"series": f'node_janitor_operator_writes_total{{{OPERATOR},instance="10.0.1.1:8080",object="nodecleanup",'
                       f'operation="apply",outcome="ok"}}', "values": "0+9x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "NodeJanitorOperatorDown", "exp_alerts": []},
            {"eval_time": "30m", "alertname": "NodeJanitorOperatorDown",
             "exp_alerts": [{"exp_labels": {"severity": "critical", "job": OPERATOR_JOB}}]},
            {"eval_time": "30m", "alertname": "NodeJanitorOperatorNotSynced",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "job": OPERATOR_JOB}}]},
            {"eval_time": "30m", "alertname": "NodeJanitorOperatorWritesFailing",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "job": OPERATOR_JOB}}]},
        ],
    },
    {  # a healthy operator and fleet: nothing fires
        "interval": "1m",
        "input_series": [
            {"series": f'up{{{OPERATOR},instance="10.0.1.1:8080"}}', "values": "1x60"},
            {"series": f'node_janitor_operator_synced{{{OPERATOR},instance="10.0.1.1:8080"}}', "values": "1x60"},
            {"series": f"up{{{_target('n1')}}}", "values": "1x60"},
            {"series": f"node_janitor_ready{{{_target('n1')}}}", "values": "1x60"},
        ],
        "alert_rule_test": [
            {"eval_time": "50m", "alertname": name, "exp_alerts": []}
            for name in ("NodeJanitorOperatorDown", "NodeJanitorOperatorNotSynced", "NodeJanitorAgentDown",
                         "NodeJanitorAgentNotReady", "NodeJanitorOperatorWritesFailing")
        ],
    },
]  # fmt: skip


def test_the_alerts_fire_where_they_should_and_only_there(tmp_path: Path) -> None:
    """`promtool check rules` on the PrometheusRule as rendered (annotations' templates included), then
    `promtool test rules` on the cases above (annotations left out of the comparison: the rules' logic)."""
    promtool = find_promtool()
    (rule,) = of_kind(render(tmp_path, "--set", "metrics.prometheusRule.enabled=true"), "PrometheusRule")
    groups = rule["spec"]["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"]}
    tested = {t["alertname"] for case in RULE_TESTS for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == alerts, f"alerts without a firing case: {alerts - tested}"

    full = tmp_path / "full.yaml"
    full.write_text(yaml.safe_dump({"groups": groups}))
    check = subprocess.run([str(promtool), "check", "rules", str(full)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    bare = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]} for g in groups]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": bare}))
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": RULE_TESTS}))
    result = subprocess.run(
        [str(promtool), "test", "rules", str(tests)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_settings_reach_the_rules(tmp_path: Path) -> None:
    docs = render(
        tmp_path, "--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.prometheusRule.highWatermarkFor=1h",
        "--set", "metrics.prometheusRule.noRunHours=50", "--set", "metrics.prometheusRule.additionalLabels.team=infra",
        "--set", "metrics.prometheusRule.labels.release=kps",
    )  # fmt: skip
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    disk = rules["NodeJanitorDiskAboveHighWatermark"]
    assert disk["for"] == "1h" and "[1h]" in disk["expr"]
    assert "> 50 * 3600" in rules["NodeJanitorNoRecentRun"]["expr"]
    assert all(r["labels"]["team"] == "infra" for r in rules.values())
    refused = render(tmp_path, "--set", "metrics.prometheusRule.enabled=true", "--set",
                     "metrics.prometheusRule.agentDownFor=soon", check=False)  # fmt: skip
    assert "agentDownFor" in refused


# --- the dashboard ------------------------------------------------------------------------------------------


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def _documented_name(series: str, documented: dict[str, str]) -> bool:
    """A series name a documented metric exposes (a histogram's `_bucket`, `_sum`, `_count` too)."""
    if series in documented:
        return True
    base = re.sub(r"_(bucket|sum|count)$", "", series)
    return documented.get(base) == "histogram"


def test_the_dashboard_is_labelled_for_the_sidecar_and_uses_documented_metrics(tmp_path: Path) -> None:
    docs = render(tmp_path, "--set", "metrics.dashboard.enabled=true")
    (config_map,) = of_kind(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NS
    dashboard = json.loads(config_map["data"]["node-janitor.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "node-janitor.json").read_text())
    documented = documented_metrics()
    exprs = _exprs(dashboard["panels"])
    assert len(exprs) >= 10
    for expr in exprs:
        names = set(re.findall(r"\bnode_janitor_\w+", expr))
        assert names, f"no node-janitor metric in {expr!r}"
        assert all(_documented_name(n, documented) for n in names), f"undocumented metric in {expr!r}"
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for wanted in ("Fleet disk", "Reclaimed bytes by kind", "Actions by outcome", "Run duration",
                   "Top nodes by reclaimable"):  # fmt: skip
        assert wanted in titles, titles
    moved = render(tmp_path, "--set", "metrics.dashboard.enabled=true", "--set", "metrics.dashboard.namespace=grafana")
    assert of_kind(moved, "ConfigMap")[0]["metadata"]["namespace"] == "grafana"


def test_the_check_catches_an_undocumented_metric_in_an_expression() -> None:
    documented = documented_metrics()
    assert _documented_name("node_janitor_run_duration_seconds_bucket", documented)
    assert not _documented_name("node_janitor_filesystem_used_percent", documented)  # the old 0-100 gauge
    assert not _documented_name("node_janitor_reclaimed_bytes_bucket", documented)


# --- logs -------------------------------------------------------------------------------------------------------


def test_one_log_format_and_level_for_both_components(tmp_path: Path) -> None:
    def args(docs: Any, kind: str) -> list[str]:
        (workload,) = of_kind(docs, kind)
        return list(workload["spec"]["template"]["spec"]["containers"][0]["args"])

    defaults = render(tmp_path)
    for kind in ("Deployment", "DaemonSet"):
        assert {"--log-format=text", "--log-level=info"} <= set(args(defaults, kind))
    docs = render(tmp_path, "--set", "logging.format=json", "--set", "logging.level=debug")
    for kind in ("Deployment", "DaemonSet"):
        assert {"--log-format=json", "--log-level=debug"} <= set(args(docs, kind))
    assert "logging.format" in render(tmp_path, "--set", "logging.format=yaml", check=False)
