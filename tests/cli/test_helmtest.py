"""The chart's `helm test` check (python -m node_janitor.cli.helmtest): what the apiserver's answers make of it.
On the real node, through the chart's test hook Job: tests/e2e/test_helm_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from node_janitor.cli.helmtest import judge

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
READY = {"status": {"readyReplicas": 1}}


def cleanup(name: str, ago: timedelta | None) -> dict[str, Any]:
    status = {} if ago is None else {"heartbeatTime": (NOW - ago).isoformat().replace("+00:00", "Z")}
    return {"metadata": {"name": name}, "status": status}


def test_a_ready_operator_and_one_fresh_report_pass() -> None:
    verdict = judge(READY, [cleanup("a", timedelta(hours=2)), cleanup("b", timedelta(seconds=30))], NOW,
                    timedelta(minutes=5))  # fmt: skip
    assert verdict.ok
    assert verdict.lines == ("operator: 1 ready replica(s)", "nodecleanup a: reported 2h ago",
                             "nodecleanup b: reported 30s ago")  # fmt: skip


def test_each_missing_part_fails_naming_it() -> None:
    fresh = [cleanup("a", timedelta(seconds=1))]
    assert not judge(None, fresh, NOW, timedelta(minutes=5)).ok
    assert "operator: no Deployment" in judge(None, fresh, NOW, timedelta(minutes=5)).lines
    assert not judge({"status": {}}, fresh, NOW, timedelta(minutes=5)).ok
    stale = judge(READY, [cleanup("a", timedelta(minutes=6))], NOW, timedelta(minutes=5))
    assert not stale.ok
    unreported = judge(READY, [cleanup("a", None)], NOW, timedelta(minutes=5))
    assert not unreported.ok and "nodecleanup a: no report yet" in unreported.lines
    none = judge(READY, [], NOW, timedelta(minutes=5))
    assert not none.ok and any("no NodeCleanup" in line for line in none.lines)
