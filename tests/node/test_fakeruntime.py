"""The in-memory node itself (tests/support/fakeruntime.py): its collector and its CRI view behave as containerd's
do where the engine's tests rely on them, and the engine's accounting agrees with it to the byte."""

from __future__ import annotations

from node_janitor.node.engine import NodeEngine
from node_janitor.node.last_used import LastUsedStore
from support.fakeruntime import IMAGE_FS, T0, FakeDisk, FakeHost, FakeRuntime

MiB = 1 << 20


async def test_removing_an_image_keeps_the_layers_another_image_shares() -> None:
    rt = FakeRuntime()
    a = rt.add_image("example.com/a:v1", [("base", 2 * MiB), ("a", MiB)], digest_ref=True)
    b = rt.add_image("example.com/b:v1", [("base", 2 * MiB), ("b", MiB)])
    assert a.layers[0] == b.layers[0] and len(rt.snapshots) == 3  # the base layer once
    assert {i.id: (i.repo_tags, len(i.repo_digests)) for i in await rt.cri.list_images()} == {
        a.id: (("example.com/a:v1",), 1),
        b.id: (("example.com/b:v1",), 0),
    }

    await rt.cri.remove_image("example.com/a:v1")  # any name removes every record of the image
    assert rt.image_ids() == {b.id} and not [n for n in rt.records if "a:" in n or n == a.id]
    assert a.layers[0] in rt.blobs and a.layers[1] not in rt.blobs and a.manifest not in rt.blobs
    await rt.cri.remove_image(b.id)
    assert rt.blobs == {} and rt.snapshots == {} and rt.stored_bytes() == 0


async def test_a_lease_keeps_what_it_holds_until_it_expires_and_a_container_its_snapshot() -> None:
    rt = FakeRuntime()
    held = rt.add_orphan_blob("held", MiB)
    loose = rt.add_orphan_blob("loose", MiB)
    rt.add_lease("pull", [("content", held)])
    image = rt.add_image("example.com/a:v1", [("a", MiB)])
    pod = rt.add_pod("web", "uid-1")
    rt.add_container("c", image, pod=pod, writes=4096)
    await rt.cri.remove_image(image.id)
    assert held in rt.blobs and loose not in rt.blobs
    assert image.top in rt.snapshots and "active-c" in rt.snapshots  # the container keeps its snapshot chain
    rt.add_lease("pull", [("content", held)], expires_at=T0.replace(year=2020))
    await rt.cri.remove_container("c")
    assert held not in rt.blobs and rt.snapshots.keys() == {"active-sb-uid-1"}  # the sandbox's own


async def test_what_df_says_an_image_frees_is_what_the_collector_frees() -> None:
    rt = FakeRuntime()
    images = [rt.add_image(f"example.com/{n}:v1", [("base", 2 * MiB), (n, (i + 1) * MiB)]) for i, n in enumerate("abc")]
    host = FakeHost({IMAGE_FS: FakeDisk(100 * MiB, 0, [rt.stored_bytes])})
    engine = NodeEngine(rt.cri, rt.containerd, pod_log_dir=None, state=LastUsedStore(None), host=host)
    total = rt.stored_bytes()
    report = await engine.build_disk_report()
    assert report.rows["images"].size == total  # every blob and snapshot, each once
    unique = {row.id: row.unique_size for row in report.images}
    for image in images[:2]:
        before = rt.stored_bytes()
        await rt.cri.remove_image(image.id)
        assert before - rt.stored_bytes() == unique[image.id]
