"""The agent's Event aggregation (`agent.events`) against the real apiserver, through the agent's own client:
repeats patch one Event's count; an Event the apiserver removed (the event TTL) is created again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from node_janitor.agent import KubeClient
from node_janitor.agent.events import EventRecorder
from node_janitor.agent.report import node_event
from support.kube import ControlPlane

pytestmark = pytest.mark.kube

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_repeats_become_one_event_with_a_count_on_the_real_apiserver(kube: ControlPlane) -> None:
    node = f"nj-events-{uuid.uuid4().hex[:8]}"
    client = KubeClient.from_config(str(kube.kubeconfig))
    recorder = EventRecorder(client, "default")
    try:
        for i in range(5):
            message = f"schedule run removed {i + 1} object(s)"
            recorder.record(node_event("Normal", "CleanupDone", message, node, None, T0 + timedelta(minutes=5 * i),
                                       series="schedule"))  # fmt: skip
        recorder.record(node_event("Warning", "CleanupFailed", "watermark run: 1 error(s): x", node, None, T0,
                                   series="watermark"))  # fmt: skip
        assert await recorder.flush()

        def events() -> list[dict[str, Any]]:
            listed = kube.kubectl_json("get", "events", "-n", "default", f"--field-selector=involvedObject.name={node}")
            return sorted(listed["items"], key=lambda e: e["reason"])

        done, failed = events()
        assert (done["reason"], done["count"]) == ("CleanupDone", 5)
        assert done["message"] == "schedule run removed 5 object(s)"
        assert done["firstTimestamp"] == "2026-12-01T12:00:00Z" and done["lastTimestamp"] == "2026-12-01T12:20:00Z"
        assert (failed["reason"], failed["count"]) == ("CleanupFailed", 1)

        kube.kubectl("delete", "event", "-n", "default", done["metadata"]["name"])  # as the event TTL would
        recorder.record(node_event("Normal", "CleanupDone", "schedule run removed 6 object(s)", node, None,
                                   T0 + timedelta(minutes=25), series="schedule"))  # fmt: skip
        assert await recorder.flush()
        again, _ = events()
        assert again["metadata"]["name"] != done["metadata"]["name"]
        assert (again["count"], again["firstTimestamp"]) == (6, "2026-12-01T12:00:00Z")
    finally:
        await client.close()
        kube.kubectl("delete", "events", "-n", "default", f"--field-selector=involvedObject.name={node}", check=False)
