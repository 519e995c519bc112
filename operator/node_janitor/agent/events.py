"""The agent's Events on its Node, aggregated like client-go's event correlator (tools/record/events_cache.go):

- **Series.** Repeats of the same event (same involved object, type, reason, source and series key) do not
  create new objects: the Event the first one created is patched, its `count` increased, its `lastTimestamp` and
  message the latest. The series key is the Event's annotation `nodejanitor.io/series` when it has one (a run's
  Event: its trigger, so the numbers in its message do not make every run a new Event), else its message. A
  patch answered 404 (the apiserver's event TTL, one hour by default, removed it) creates the Event again.
  Known series are kept for the `cache_size` most recent keys (client-go: 4096).
- **Spam filter.** Per node (the one agent is its node's only source) a token bucket: `burst` Events at once, then
  one per `refill_seconds` (client-go's EventSourceObjectSpamFilter: 25, then one per 5 minutes). What it refuses is
  dropped, counted (`node_janitor_events_total{result="dropped"}`) and logged; a repeat takes a token like a new
  Event.

Events wait in a bounded queue (`MAX_PENDING`, the oldest dropped first) while the apiserver is away; `flush()`
sends them, a transient refusal leaves the rest for the next try.

A 5-minute schedule that removes something every run thus makes ONE Event per node and trigger whose count grows
by 288 a day, where it made 288 Events a day."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node_janitor.agent.kube import AgentKube, KubeError

log = logging.getLogger(__name__)

SERIES_ANNOTATION = "nodejanitor.io/series"
BURST = 25
REFILL_SECONDS = 300.0
CACHE_SIZE = 4096
MAX_PENDING = 50


def is_transient(status: int) -> bool:
    """An apiserver answer worth retrying the same request for (no answer, credentials being rotated, timeout,
    throttling, server errors)."""
    return status in (0, 401, 408, 429) or status >= 500


class TokenBucket:
    """`burst` tokens, one more every `refill_seconds` up to `burst`; `clock` is monotonic seconds."""

    def __init__(self, burst: int, refill_seconds: float, clock: Callable[[], float]) -> None:
        self.burst, self.refill_seconds, self.clock = burst, refill_seconds, clock
        self.tokens = float(burst)
        self.updated = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) / self.refill_seconds)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def series_key(event: dict[str, Any]) -> tuple[str, ...]:
    """What makes two Events repeats of one another (client-go's getEventKey, with the series annotation standing
    for the message when there is one)."""
    involved = event.get("involvedObject") or {}
    source = event.get("source") or {}
    annotations = (event.get("metadata") or {}).get("annotations") or {}
    return (
        str(source.get("component", "")),
        str(source.get("host", "")),
        str(involved.get("apiVersion", "")),
        str(involved.get("kind", "")),
        str(involved.get("namespace", "")),
        str(involved.get("name", "")),
        str(involved.get("uid", "")),
        str(event.get("type", "")),
        str(event.get("reason", "")),
        str(annotations.get(SERIES_ANNOTATION, f"message:{event.get('message', '')}")),
    )


@dataclass
class _Series:
    name: str
    count: int
    first_timestamp: str


class EventRecorder:
    """Records Events about one node: `record(event)` (rate-limited, queued), `await flush()` (sends; False: try
        again). `on_result(reason, result)` is told what became of each (created, aggregated or dropped), `on_error()`
    of each refusal."""

    def __init__(
        self,
        kube: AgentKube,
        namespace: str,
        *,
        burst: int = BURST,
        refill_seconds: float = REFILL_SECONDS,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[str, str], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.kube, self.namespace = kube, namespace
        self.bucket = TokenBucket(burst, refill_seconds, clock)
        self.cache_size = cache_size
        self.on_result, self.on_error = on_result, on_error
        self.pending: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING)
        self._series: OrderedDict[tuple[str, ...], _Series] = OrderedDict()

    def _tell(self, event: dict[str, Any], result: str) -> None:
        if self.on_result is not None:
            self.on_result(str(event.get("reason", "")), result)

    def record(self, event: dict[str, Any]) -> bool:
        """Queues `event` unless the node's rate limit refuses it (False: dropped)."""
        if not self.bucket.take():
            log.info(
                "event dropped (over the rate limit) reason=%s message=%s", event.get("reason"), event.get("message")
            )
            self._tell(event, "dropped")
            return False
        if len(self.pending) == self.pending.maxlen:
            self._tell(self.pending[0], "dropped")
        self.pending.append(event)
        return True

    async def flush(self) -> bool:
        """Sends the queued Events in order: a repeat patches its series' Event, a new one is created. False when
        the apiserver gave a transient answer (the rest stay queued); an Event refused for good is dropped."""
        while self.pending:
            event = self.pending[0]
            try:
                result = await self._send(event)
            except KubeError as exc:
                if self.on_error is not None:
                    self.on_error()
                if is_transient(exc.status):
                    log.warning("event not posted yet: %s", exc)
                    return False
                log.error("event dropped: %s", exc)  # refused for good (e.g. forbidden): never block the rest
                result = "dropped"
            self.pending.popleft()
            self._tell(event, result)
        return True

    async def _send(self, event: dict[str, Any]) -> str:
        key = series_key(event)
        known = self._series.get(key)
        if known is not None:
            count = known.count + int(event.get("count") or 1)
            patch = {"count": count, "lastTimestamp": event.get("lastTimestamp"), "message": event.get("message")}
            try:
                await self.kube.patch_event(self.namespace, known.name, patch)
            except KubeError as exc:
                if exc.status not in (403, 404):
                    raise
                # 404: expired (the event TTL); 403: no right to patch (an older chart's RBAC). Created again,
                # its count and first time kept.
                del self._series[key]
                event = {**event, "count": count, "firstTimestamp": known.first_timestamp}
            else:
                known.count = count
                self._series.move_to_end(key)
                return "aggregated"
        created = await self.kube.create_event(self.namespace, event)
        name = str(((created or {}).get("metadata") or {}).get("name") or "")
        if name:
            self._series[key] = _Series(name, int(event.get("count") or 1), str(event.get("firstTimestamp") or ""))
            while len(self._series) > self.cache_size:
                self._series.popitem(last=False)
        return "created"
