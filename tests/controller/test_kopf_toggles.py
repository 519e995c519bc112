"""kopf's ToggleSet as the operator runs it (controller/kopf_toggles.py): index pre-population wakes each waiting
worker O(1) times instead of once per object, and every wait still ends when its state comes.

The workers below do what kopf's do during the initial listing of an indexed resource (kopf/_core/reactor:
queueing.watcher makes one toggle per object, processing.process_resource_event drops it once indexed and
waits for the whole set), on kopf's real ToggleSet; the end-to-end run is tests/controller/test_operator.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kopf._cogs.aiokits import aiotoggles

from node_janitor.controller import kopf_toggles


@pytest.fixture(autouse=True)
def patched() -> None:
    assert kopf_toggles.install()


def counting(toggles: aiotoggles.ToggleSet) -> list[int]:
    """Counts the evaluations of the set's state (every wake-up of a waiter evaluates it once)."""
    calls = [0]
    original = toggles.is_on

    def is_on() -> bool:
        calls[0] += 1
        return original()

    toggles.is_on = is_on  # type: ignore[method-assign]
    return calls


async def prepopulate(objects: int) -> int:
    indexed = aiotoggles.ToggleSet(all)
    calls = counting(indexed)
    listing = await indexed.make_toggle(name="the resource's listing")

    async def worker(own: Any) -> None:
        await asyncio.sleep(0)  # (indexing)
        await indexed.drop_toggle(own)
        await indexed.wait_for(True)

    workers = []
    for i in range(objects):
        workers.append(asyncio.create_task(worker(await indexed.make_toggle(name=f"object {i}"))))
        if i % 10 == 0:
            await asyncio.sleep(0)  # the watcher reads on; the workers already spawned index and wait
    await indexed.drop_toggle(listing)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
    assert indexed.is_on()
    return calls[0]


def test_index_prepopulation_wakes_each_worker_a_bounded_number_of_times() -> None:
    objects = 400
    evaluations = asyncio.run(prepopulate(objects))
    # patched: 6 per object (2,404). kopf's own ToggleSet wakes every waiting worker whenever the watcher
    # yields after a make/drop: quadratic, 8,600 here, 32,000 for 800 objects
    assert evaluations <= 8 * objects


def test_every_wait_on_a_toggle_set_still_ends_when_its_state_comes() -> None:
    async def scenario() -> None:
        blocking = aiotoggles.ToggleSet(all)
        first = await blocking.make_toggle(name="a")
        off = asyncio.create_task(blocking.wait_for(False))
        await asyncio.wait_for(off, timeout=5)  # off already: no change needed
        on = asyncio.create_task(blocking.wait_for(True))
        second = await blocking.make_toggle(name="b")
        await blocking.drop_toggles([first])
        await asyncio.sleep(0.05)
        assert not on.done()
        await blocking.drop_toggle(second)
        await asyncio.wait_for(on, timeout=5)
        back_off = asyncio.create_task(blocking.wait_for(False))
        await asyncio.sleep(0.05)
        assert not back_off.done()
        await blocking.make_toggle(name="c")
        await asyncio.wait_for(back_off, timeout=5)

        # a set of `any` (kopf's pause): turning one of its toggles on still wakes the set's waiters
        paused = aiotoggles.ToggleSet(any)
        peer = await paused.make_toggle(False, name="peer")
        waiting = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await peer.turn_to(True)
        await asyncio.wait_for(waiting, timeout=5)
        resumed = asyncio.create_task(paused.wait_for(False))
        await paused.drop_toggle(peer)
        await asyncio.wait_for(resumed, timeout=5)

    asyncio.run(scenario())


def test_install_is_idempotent() -> None:
    before = aiotoggles.ToggleSet.make_toggle
    assert kopf_toggles.install()
    assert aiotoggles.ToggleSet.make_toggle is before


def test_the_operator_builds_no_diff_base_while_no_handler_reads_one() -> None:
    """Issue 21: kopf deep-copies every event's body into a diff-base essence that only change-detecting and
    daemon/timer handlers read. The operator registers none, so it uses a storage that builds nothing; a handler
    that reads the essence brings kopf's own back."""
    import kopf

    from node_janitor.controller.app import NoEssenceDiffBase, configure_settings, needs_diff_base
    from node_janitor.controller.handlers import register
    from node_janitor.controller.metrics import OperatorMetrics
    from node_janitor.controller.reconciler import Reconciler, ReconcilerSettings

    registry = kopf.OperatorRegistry()
    register(registry, Reconciler(writer=None, metrics=OperatorMetrics(), settings=ReconcilerSettings()))  # type: ignore[arg-type]
    assert not needs_diff_base(registry)
    settings = kopf.OperatorSettings()
    configure_settings(settings, diff_base=needs_diff_base(registry))
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoEssenceDiffBase)
    body = kopf.Body({"metadata": {"name": "n", "annotations": {}}, "spec": {"x": [1] * 1000}, "status": {}})
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None

    updated = kopf.OperatorRegistry()
    kopf.on.update("v1", "nodes", registry=updated)(lambda **_: None)
    timed = kopf.OperatorRegistry()
    kopf.timer("v1", "nodes", interval=1, registry=timed)(lambda **_: None)
    for reader in (updated, timed):
        assert needs_diff_base(reader)
        settings = kopf.OperatorSettings()
        configure_settings(settings, diff_base=needs_diff_base(reader))
        assert type(settings.persistence.diffbase_storage) is kopf.AnnotationsDiffBaseStorage
