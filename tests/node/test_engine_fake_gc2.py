"""The engine on the in-memory node with objects labelled as containerd 2.3 labels them: an image whose only records
are extra names (expired at once, `gc.bref.image` to another image's name) goes with that image, and the plan
counts it there: no second removal for bytes the first one frees."""

from __future__ import annotations

from pathlib import Path

from node_janitor.node.engine import NodeEngine
from node_janitor.node.last_used import LastUsedStore
from node_janitor.node.plan import ActionKind
from support.enginebed import rules
from support.fakeruntime import IMAGE_FS, T0, FakeDisk, FakeHost, FakeRuntime
from support.logfakes import FakeClock

MiB = 1 << 20


async def test_an_image_attached_to_another_by_its_extra_names_goes_with_it(tmp_path: Path) -> None:
    clock = FakeClock(T0.replace(month=6))
    runtime = FakeRuntime(clock=clock)
    main = runtime.add_image("example.com/app:v2", [("base", 2 * MiB), ("app-2", 6 * MiB)])
    old = runtime.add_image("example.com/app-old:v1", [("app-1", 6 * MiB)])
    # Only its extra name is left, attached to the tag that now names `main` (a moved tag on containerd 2.3).
    runtime.add_extra_name(old, f"example.com/app@{old.manifest}", of="example.com/app:v2")
    del runtime.records[old.ref], runtime.records[old.id]
    runtime.collect_garbage()
    assert old.id in runtime.image_ids()  # the collector keeps it: main's name holds it

    used = runtime.stored_bytes()
    main_alone = 2 * MiB + 1 * MiB + 6 * MiB + 3 * MiB  # base and app-2: snapshots, then blobs (half)
    size = int((used - main_alone - 4 * MiB) / 0.10)  # at 10%: more than main alone frees, less than with `old`
    host = FakeHost({IMAGE_FS: FakeDisk(size, 0, [runtime.stored_bytes])})
    (tmp_path / "pods").mkdir()
    engine = NodeEngine(
        runtime.cri,
        runtime.containerd,
        pod_log_dir=tmp_path / "pods",
        state=LastUsedStore(tmp_path / "state.json"),
        clock=clock,
        host=host,
    )
    spec = {"thresholds": {"highPercent": 20, "lowPercent": 10}, "images": {"minAge": "0s"}}
    report = await engine.run_once(rules(spec))

    assert report.errors == []
    removals = [a for a in report.plan.actions if a.kind is ActionKind.REMOVE_IMAGE]
    assert [a.id for a in removals] == [main.id]  # one removal frees both
    assert removals[0].bytes >= main_alone + 6 * MiB + 3 * MiB
    assert report.execution is not None
    assert report.execution.reclaimed_bytes == report.execution.done_bytes == removals[0].bytes
    assert runtime.image_ids() == set()
