"""`TargetBackoff`: an unreachable target is reported once per episode and retried only when something changed."""

from __future__ import annotations

from node_janitor.agent.backoff import FIRST_DELAY, MAX_DELAY, TargetBackoff, runtime_fingerprint
from node_janitor.node.inventory import FileSystemEntry

GiB = 1 << 30
POLICY = ("rules", 1)


def _fs(used: int, capacity: int = 100 * GiB) -> list[FileSystemEntry]:
    return [FileSystemEntry(name="imagefs", path="/var/lib/containerd", size=capacity, used=used,
                            available=capacity - used)]  # fmt: skip


RUNTIME = runtime_fingerprint([("c1", "RUNNING"), ("c2", "EXITED")], ["sha256:a"])


def _blocked() -> TargetBackoff:
    backoff = TargetBackoff()
    assert backoff.record(5 * GiB, "short", POLICY, _fs(85 * GiB), now=0.0)  # a new episode: the one Event
    backoff.note_runtime(RUNTIME)
    return backoff


def test_an_episode_starts_once_and_blocks_until_something_changes() -> None:
    backoff = _blocked()
    assert backoff.blocked
    assert backoff.changed(POLICY, _fs(85 * GiB + GiB), RUNTIME, now=10.0) is None  # 1% moved: noise
    assert backoff.changed(POLICY, _fs(85 * GiB), None, now=10.0) is None  # the runtime did not answer
    assert backoff.blocked
    # A retry that is short still continues the episode: no second Event.
    why = backoff.changed(("rules", 2), _fs(85 * GiB), RUNTIME, now=11.0)
    assert why == "the policy changed" and not backoff.blocked
    assert backoff.changed(("rules", 3), _fs(85 * GiB), RUNTIME, now=11.0) is None  # released already: once
    assert not backoff.record(5 * GiB, "short", ("rules", 2), _fs(85 * GiB), now=12.0)
    assert backoff.blocked and backoff.episode is not None and backoff.episode.runs == 2
    # A run that reaches the target ends it; the next shortfall is a new episode, with its own Event.
    assert not backoff.record(0, "", POLICY, _fs(50 * GiB), now=13.0)
    assert not backoff.blocked and backoff.episode is None
    assert backoff.record(GiB, "short", POLICY, _fs(85 * GiB), now=14.0)


def test_the_runtime_s_containers_or_images_changing_release_it() -> None:
    backoff = _blocked()
    new_image = runtime_fingerprint([("c1", "RUNNING"), ("c2", "EXITED")], ["sha256:a", "sha256:b"])
    assert backoff.changed(POLICY, _fs(85 * GiB), new_image, now=1.0) == "an image arrived"
    backoff = _blocked()
    image_gone = runtime_fingerprint([("c1", "RUNNING"), ("c2", "EXITED")], [])
    assert backoff.changed(POLICY, _fs(85 * GiB), image_gone, now=1.0) is None  # frees nothing more
    backoff = _blocked()
    exited = runtime_fingerprint([("c1", "EXITED"), ("c2", "EXITED")], ["sha256:a"])
    assert backoff.changed(POLICY, _fs(85 * GiB), exited, now=1.0) == "the runtime's containers changed"


def test_the_disk_s_usage_moving_by_5_percent_releases_it() -> None:
    backoff = _blocked()
    assert backoff.changed(POLICY, _fs(85 * GiB - 6 * GiB), RUNTIME, now=1.0) == (
        f"imagefs usage moved by {-6 * GiB:+d} bytes"
    )


def test_time_alone_releases_it_with_a_doubling_delay() -> None:
    """An image reaching minAge changes nothing the agent watches: the time fallback, 5 min doubling to 1 h."""
    backoff = _blocked()
    assert backoff.changed(POLICY, _fs(85 * GiB), RUNTIME, now=FIRST_DELAY - 1) is None
    assert backoff.changed(POLICY, _fs(85 * GiB), RUNTIME, now=FIRST_DELAY) is not None
    now = FIRST_DELAY
    delays = []
    for _ in range(6):
        backoff.record(5 * GiB, "short", POLICY, _fs(85 * GiB), now=now)
        assert backoff.episode is not None
        delays.append(backoff.episode.delay)
        now = backoff.episode.retry_at
    assert delays == [2 * FIRST_DELAY, 4 * FIRST_DELAY, 8 * FIRST_DELAY, MAX_DELAY, MAX_DELAY, MAX_DELAY]


def test_an_image_reaching_min_age_brings_the_next_try_forward() -> None:
    backoff = TargetBackoff()
    backoff.record(5 * GiB, "short", POLICY, _fs(85 * GiB), now=0.0, eligible_in=3.0)
    backoff.note_runtime(RUNTIME)
    assert backoff.changed(POLICY, _fs(85 * GiB), RUNTIME, now=2.9) is None
    assert backoff.changed(POLICY, _fs(85 * GiB), RUNTIME, now=3.0) is not None
    backoff.record(5 * GiB, "short", POLICY, _fs(85 * GiB), now=3.0, eligible_in=FIRST_DELAY * 10)
    assert backoff.episode is not None and backoff.episode.retry_at == 3.0 + 2 * FIRST_DELAY  # never later
