"""The agent's Events (`agent.events`), with the in-memory apiserver (`support.agentbed.MemoryKube`): repeats are
added to one Event's count like client-go's correlator does, and a node's Events are rate-limited (a token bucket:
25 at once, then one per 5 minutes). The same against the real apiserver: tests/agent/test_agent_events_real.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from node_janitor.agent.events import EventRecorder, TokenBucket, series_key
from node_janitor.agent.kube import KubeError
from node_janitor.agent.report import RunOutcome, node_event
from support.agentbed import MemoryKube

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _done(i: int, series: str = "schedule") -> dict[str, Any]:
    message, when = f"{series} run removed {i} object(s)", NOW + timedelta(minutes=5 * i)
    return node_event("Normal", "CleanupDone", message, "node-a", "uid-a", when, series=series)


async def test_repeats_add_to_one_events_count_with_the_latest_message() -> None:
    kube = MemoryKube()
    results: list[tuple[str, str]] = []
    recorder = EventRecorder(kube, "default", on_result=lambda reason, result: results.append((reason, result)))
    for i in range(1, 4):
        assert recorder.record(_done(i))
    recorder.record(_done(4, series="watermark"))  # another trigger: another Event
    assert await recorder.flush() and not recorder.pending
    scheduled, watermark = kube.events
    assert scheduled["count"] == 3 and scheduled["message"] == "schedule run removed 3 object(s)"
    assert (
        scheduled["firstTimestamp"] == "2026-12-01T12:05:00Z" and scheduled["lastTimestamp"] == "2026-12-01T12:15:00Z"
    )
    assert watermark["count"] == 1 and watermark["metadata"]["annotations"] == {"nodejanitor.io/series": "watermark"}
    assert [name for name, _ in kube.event_patches] == [scheduled["metadata"]["name"]] * 2
    assert results == [("CleanupDone", r) for r in ("created", "aggregated", "aggregated", "created")]


def test_the_series_key_is_client_gos_with_the_series_for_the_message() -> None:
    a, b = _done(1), _done(2)
    assert series_key(a) == series_key(b)  # the numbers in the message do not matter within a series
    plain = node_event("Warning", "X", "m1", "node-a", "uid-a", NOW)
    assert series_key(plain) != series_key({**plain, "message": "m2"})  # no series: the message is the key
    assert series_key(plain) == series_key({**plain, "lastTimestamp": "later"})
    assert series_key(a) != series_key(
        node_event("Normal", "CleanupDone", "m", "node-b", "uid-b", NOW, series="schedule")
    )


async def test_a_node_s_events_are_rate_limited_by_a_token_bucket() -> None:
    clock, kube = Clock(), MemoryKube()
    results: list[str] = []
    recorder = EventRecorder(kube, "default", clock=clock, on_result=lambda _, result: results.append(result))
    accepted = [recorder.record(_done(i, series=f"s{i}")) for i in range(30)]
    assert accepted == [True] * 25 + [False] * 5 and results == ["dropped"] * 5
    clock.now += 299
    assert not recorder.record(_done(99))
    clock.now += 1  # one token every 5 minutes
    assert recorder.record(_done(99)) and not recorder.record(_done(100))
    clock.now += 25 * 300 * 10  # a long quiet time fills the bucket up to its burst, no more
    assert sum(recorder.record(_done(i, series=f"t{i}")) for i in range(30)) == 25
    bucket = TokenBucket(2, 10.0, clock)
    assert bucket.take() and bucket.take() and not bucket.take()


async def test_a_series_whose_event_expired_is_created_again_with_its_count() -> None:
    kube = MemoryKube()
    recorder = EventRecorder(kube, "default")
    recorder.record(_done(1))
    recorder.record(_done(2))
    assert await recorder.flush()
    kube.events.clear()  # the apiserver's event TTL (1 h by default) removed it
    recorder.record(_done(3))
    assert await recorder.flush()
    (again,) = kube.events
    assert again["count"] == 3 and again["firstTimestamp"] == "2026-12-01T12:05:00Z"
    recorder.record(_done(4))
    assert await recorder.flush() and kube.events[0]["count"] == 4 and len(kube.events) == 1


async def test_a_transient_refusal_keeps_the_queue_a_final_one_drops_the_event() -> None:
    class Refusing(MemoryKube):
        status = 503

        async def create_event(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
            if self.status:
                raise KubeError("events: refused", self.status)
            return await super().create_event(namespace, event)

    kube = Refusing()
    errors: list[int] = []
    recorder = EventRecorder(kube, "default", on_error=lambda: errors.append(1))
    recorder.record(_done(1))
    recorder.record(_done(2, series="watermark"))
    assert not await recorder.flush() and len(recorder.pending) == 2
    kube.status = 403
    assert await recorder.flush() and not recorder.pending and kube.events == []
    assert len(errors) == 3


async def test_the_reporter_aggregates_its_run_events(tmp_path: Path) -> None:
    """Three scheduled runs that each removed something: one Event with count 3 (the old agent posted three), and
    node_janitor_events_total says so."""
    from node_janitor.agent.metrics import AgentMetrics
    from node_janitor.agent.policy import PolicyHolder
    from node_janitor.agent.reporter import Reporter
    from node_janitor.agent.store import AgentStore

    kube = MemoryKube()
    store = AgentStore(tmp_path / "state")
    reporter = Reporter(
        "node-a", kube, store, PolicyHolder("node-a", store), AgentMetrics(), clock=lambda: NOW,
        runtime_error=lambda: None, rotator_failure=lambda: None,
    )  # fmt: skip
    row = {"kind": "remove-image", "id": "sha256:a", "refs": [], "bytes": 1, "reason": "r", "outcome": "done"}
    for _ in range(3):
        outcome = RunOutcome("schedule", NOW, 0.1, False, None, rows=(row,))
        reporter.record_run(outcome)
        assert await reporter.send()
    (event,) = kube.events
    assert event["reason"] == "CleanupDone" and event["count"] == 3
    samples = {
        s.labels["result"]: s.value
        for m in reporter.metrics.registry.collect()
        for s in m.samples
        if s.name == "node_janitor_events_total"
    }
    assert samples == {"created": 1, "aggregated": 2}
