"""ContainerdClient against a real containerd (NJ_CONTAINERD: 2.3, or 1.6): every RPC it exposes, on the wire."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed, Layer, OciImage
from node_janitor.devbed.images import chain_ids
from node_janitor.runtime import (
    AlreadyExistsError,
    ContainerdClient,
    CriClient,
    Descriptor,
    LeaseResource,
    NotFoundError,
    RuntimeClientError,
    RuntimeUnavailableError,
)

pytestmark = pytest.mark.containerd

GC_ROOT = "containerd.io/gc.root"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _import(bed: ContainerdBed, name: str, size: int = 1 << 20) -> OciImage:
    b = bed.builder
    image = b.build(name, [b.busybox_layer(), Layer.random(size, name)])
    bed.import_images([image])
    return image


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


async def _exists(ctrd: ContainerdClient, digest: str) -> bool:
    try:
        await ctrd.content_info(digest)
    except NotFoundError:
        return False
    return True


async def test_version_and_namespaces(containerd_bed: ContainerdBed) -> None:
    async with ContainerdClient(containerd_bed.address) as ctrd:
        version = await ctrd.version()
        assert version.version.removeprefix("v").startswith(containerd_bed.binaries.version)
        # Debian's package stamps its commit; a build from the module proxy's zip has none to stamp.
        assert bool(version.revision) == (containerd_bed.binaries.bin_dir is None)
        assert "k8s.io" in {n.name for n in await ctrd.list_namespaces()}
    assert ctrd._rpc.closed  # the channel goes with the context


async def test_ttrpc_socket_is_not_mistaken_for_grpc(containerd_bed: ContainerdBed) -> None:
    # containerd's other socket speaks ttrpc (what shims use), not gRPC: a plausible wrong path.
    ttrpc = containerd_bed.address + ".ttrpc"
    with pytest.raises(RuntimeUnavailableError) as err:
        async with ContainerdClient(ttrpc, timeout=1) as ctrd:
            await ctrd.version()
    assert str(err.value) == (
        f"containerd socket {ttrpc} accepted the connection but no gRPC handshake completed within 1s "
        "(not a gRPC server, or it is hung)"
    )


async def test_image_records(containerd_bed: ContainerdBed) -> None:
    image = _import(containerd_bed, "example.com/ctrd/app:v1")
    async with ContainerdClient(containerd_bed.address) as ctrd:
        names = {i.name: i for i in await ctrd.list_images()}
        # The tag, and the ID record the CRI plugin adds (TESTBED.md), point at the same manifest.
        assert names["example.com/ctrd/app:v1"].target.digest == image.manifest_digest
        assert names[image.id].target.digest == image.manifest_digest
        record = await ctrd.get_image("example.com/ctrd/app:v1")
        assert record == names["example.com/ctrd/app:v1"]
        assert record.target.media_type == "application/vnd.oci.image.manifest.v1+json"
        assert record.target.size == len(image.blobs[image.manifest_digest])
        assert record.created_at <= record.updated_at <= datetime.now(UTC)
        assert [i.name for i in await ctrd.list_images(['name=="example.com/ctrd/app:v1"'])] == [record.name]
        assert {i.name for i in await ctrd.list_images(['name~="^example.com/"', f'name=="{image.id}"'])} == {
            record.name,
            image.id,
        }

        # Record CRUD in a namespace of our own: in k8s.io the CRI plugin reacts to image events (it labels
        # records and re-creates references), which races with what this part checks.
        own = ctrd.with_namespace("nj-images")
        extra = await own.create_image("example.com/ctrd/alias:v1", record.target, labels={"team": "a"})
        assert extra.target == record.target and extra.labels == {"team": "a"}
        with pytest.raises(AlreadyExistsError):
            await own.create_image("example.com/ctrd/alias:v1", record.target)
        updated = await own.update_image(
            "example.com/ctrd/alias:v1", labels={"owner": "b"}, fieldpaths=["labels.owner"]
        )
        assert updated.labels == {"team": "a", "owner": "b"}
        replaced = await own.update_image("example.com/ctrd/alias:v1", labels={"only": "this"})
        assert replaced.labels == {"only": "this"}
        config = Descriptor(
            media_type="application/vnd.oci.image.config.v1+json",
            digest=image.config_digest,
            size=len(image.blobs[image.config_digest]),
        )
        retargeted = await own.update_image("example.com/ctrd/alias:v1", target=config)
        assert retargeted.target == config and retargeted.labels == {"only": "this"}

        await own.delete_image("example.com/ctrd/alias:v1")
        with pytest.raises(NotFoundError):
            await own.get_image("example.com/ctrd/alias:v1")
        with pytest.raises(NotFoundError):
            await own.delete_image("example.com/ctrd/alias:v1")
        await own.delete_image("example.com/ctrd/alias:v1", missing_ok=True)

        # Removing only the tag frees nothing; removing the last record with sync frees the blobs at once.
        await ctrd.delete_image("example.com/ctrd/app:v1", sync=True)
        assert await _exists(ctrd, image.manifest_digest)
        await ctrd.delete_image(image.id, sync=True)
        for digest in image.blobs:
            if digest != containerd_bed.builder.busybox_layer().digest:  # the pause image shares it
                assert not await _exists(ctrd, digest), digest


async def test_content_read_write_labels_and_delete(containerd_bed: ContainerdBed) -> None:
    image = _import(containerd_bed, "example.com/ctrd/blobs:v1", size=3 << 20)
    layer = image.layers[-1]
    async with ContainerdClient(containerd_bed.address) as ctrd:
        blobs = {b.digest: b for b in await ctrd.list_content()}
        for digest, data in image.blobs.items():
            assert blobs[digest].size == len(data)
        info = await ctrd.content_info(layer.digest)
        assert (info.digest, info.size, info.created_at) == (
            layer.digest,
            len(layer.blob),
            blobs[layer.digest].created_at,
        )
        assert await ctrd.read_content(layer.digest) == layer.blob  # > 1 message: a real stream
        assert await ctrd.read_content(layer.digest, offset=1000, size=50) == layer.blob[1000:1050]
        assert await ctrd.read_content(layer.digest, offset=len(layer.blob) - 10) == layer.blob[-10:]
        filtered = await ctrd.list_content([f'digest=="{layer.digest}"'])
        assert [b.digest for b in filtered] == [layer.digest]

        # Labels: a named fieldpath changes only that label; an absent value removes it.
        before = blobs[image.manifest_digest].labels
        info = await ctrd.update_content_labels(image.manifest_digest, {"example.com/x": "1"}, ["labels.example.com/x"])
        assert info.labels == {**before, "example.com/x": "1"}
        info = await ctrd.update_content_labels(image.manifest_digest, {}, ["labels.example.com/x"])
        assert info.labels == before

        # An orphan blob, as an interrupted pull or a removed image can leave one.
        data = os.urandom((2 << 20) + 123)  # several Write messages
        async with ctrd.temporary_lease() as leased:
            blob = await leased.write_content("orphan-1", data, labels={"example.com/orphan": "yes"})
            assert blob is not None
            assert (blob.digest, blob.size, blob.labels) == (_digest(data), len(data), {"example.com/orphan": "yes"})
            assert await ctrd.read_content(blob.digest) == data
            assert LeaseResource(id=blob.digest, type="content") in await ctrd.list_lease_resources(leased.lease or "")
            # Writing it again writes nothing and answers with the blob that is there.
            assert await leased.write_content("orphan-2", data, labels={"other": "x"}) == blob
            with pytest.raises(RuntimeClientError) as err:
                await leased.write_content("bad", b"abc", expected_digest=_digest(b"abd"))
            assert err.value.code == "FAILED_PRECONDITION" and "unexpected commit digest" in str(err.value)
            await ctrd.delete_content(blob.digest)
            assert not await _exists(ctrd, blob.digest)
            with pytest.raises(NotFoundError):
                await ctrd.delete_content(blob.digest)
            await ctrd.delete_content(blob.digest, missing_ok=True)


async def test_ingests_list_and_abort(containerd_bed: ContainerdBed) -> None:
    async with ContainerdClient(containerd_bed.address) as ctrd:
        partial = os.urandom(5000)
        assert await ctrd.write_content("half-done", partial, commit=False) is None
        [ingest] = [i for i in await ctrd.list_ingests() if i.ref == "half-done"]
        assert ingest.offset == 5000 and ingest.total == 5000
        assert ingest.started_at <= ingest.updated_at
        assert [i.ref for i in await ctrd.list_ingests(['ref=="half-done"'])] == ["half-done"]
        await ctrd.abort_ingest("half-done")
        assert "half-done" not in {i.ref for i in await ctrd.list_ingests()}
        with pytest.raises(NotFoundError):
            await ctrd.abort_ingest("half-done")
        await ctrd.abort_ingest("half-done", missing_ok=True)


async def test_wait_for_gc_collects_at_once(containerd_bed: ContainerdBed) -> None:
    async with ContainerdClient(containerd_bed.address) as ctrd:
        await ctrd.wait_for_gc()  # settle the deletions the bed's set-up made (they schedule a collection)
        data = os.urandom(100_000)
        blob = await ctrd.write_content("rooted", data, labels={GC_ROOT: "2026-01-01T00:00:00Z"})
        assert blob is not None and blob.labels == {GC_ROOT: "2026-01-01T00:00:00Z"}
        # Dropping the root label is a mutation, not a deletion: containerd schedules no collection for it.
        await ctrd.update_content_labels(blob.digest, {}, [f"labels.{GC_ROOT}"])
        await asyncio.sleep(1.5)
        assert await _exists(ctrd, blob.digest)
        await ctrd.wait_for_gc()
        assert not await _exists(ctrd, blob.digest)


async def test_snapshots(containerd_bed: ContainerdBed) -> None:
    image = _import(containerd_bed, "example.com/ctrd/layers:v1", size=2 << 20)
    chain = chain_ids([layer.diff_id for layer in image.layers])
    async with ContainerdClient(containerd_bed.address) as ctrd:
        snapshots = {s.name: s for s in await ctrd.list_snapshots()}
        top = snapshots[chain[-1]]
        assert (top.kind, top.parent, top.snapshotter) == ("COMMITTED", chain[-2], "overlayfs")
        assert await ctrd.stat_snapshot(chain[-1]) == top
        usage = await ctrd.snapshot_usage(chain[-1])
        assert usage.size >= 2 << 20 and usage.inodes >= 1
        assert [s.name for s in await ctrd.list_snapshots(filters=[f'parent=="{chain[-2]}"'])] == [chain[-1]]

        async with ctrd.temporary_lease() as leased:
            mounts = await leased.prepare_snapshot("work-1", chain[-1], labels={"example.com/k": "v"})
            assert mounts and mounts[0].type == "overlay"
            upper = next(o.split("=", 1)[1] for o in mounts[0].options if o.startswith("upperdir="))
            assert any(o.startswith("lowerdir=") for o in mounts[0].options)
            assert await ctrd.snapshot_mounts("work-1") == mounts
            active = await ctrd.stat_snapshot("work-1")
            assert (active.kind, active.parent, active.labels) == ("ACTIVE", chain[-1], {"example.com/k": "v"})

            await asyncio.to_thread(_write, Path(upper) / "data.bin", os.urandom(1 << 20))
            assert (await ctrd.snapshot_usage("work-1")).size >= 1 << 20

            await leased.commit_snapshot("committed-1", "work-1", labels={"example.com/c": "1"})
            with pytest.raises(NotFoundError):
                await ctrd.stat_snapshot("work-1")
            committed = await ctrd.stat_snapshot("committed-1")
            assert (committed.kind, committed.parent) == ("COMMITTED", chain[-1])

            view = await leased.view_snapshot("view-1", "committed-1")
            assert view and (await ctrd.stat_snapshot("view-1")).kind == "VIEW"
            held = {
                r.id for r in await ctrd.list_lease_resources(leased.lease or "") if r.type == "snapshots/overlayfs"
            }
            assert held == {"committed-1", "view-1"}  # the commit moved the lease's hold from work-1

            with pytest.raises(RuntimeClientError) as err:
                await ctrd.remove_snapshot("committed-1")  # it has a child: the view
            assert err.value.code == "FAILED_PRECONDITION"
            await ctrd.remove_snapshot("view-1")
            await ctrd.remove_snapshot("committed-1")
            with pytest.raises(NotFoundError):
                await ctrd.remove_snapshot("committed-1")
            await ctrd.remove_snapshot("committed-1", missing_ok=True)


async def test_leases(containerd_bed: ContainerdBed) -> None:
    async with ContainerdClient(containerd_bed.address) as ctrd:
        lease = await ctrd.create_lease("nj-test-lease", {"purpose": "test"}, expire=timedelta(hours=1))
        assert lease.id == "nj-test-lease" and lease.labels["purpose"] == "test"
        expires = datetime.strptime(lease.labels["containerd.io/gc.expire"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert timedelta(minutes=59) < expires.replace(tzinfo=UTC) - datetime.now(UTC) <= timedelta(hours=1)
        assert abs(lease.created_at - datetime.now(UTC)) < timedelta(minutes=1)
        with pytest.raises(AlreadyExistsError):
            await ctrd.create_lease("nj-test-lease")
        assert [x.id for x in await ctrd.list_leases(['id=="nj-test-lease"'])] == ["nj-test-lease"]
        assert [x.id for x in await ctrd.list_leases(["labels.purpose==test"])] == ["nj-test-lease"]
        random = await ctrd.create_lease()
        assert random.id.startswith("node-janitor-")

        data = os.urandom(1000)
        blob = await ctrd.with_lease(random.id).write_content("held", data)
        assert blob is not None
        resource = LeaseResource(id=blob.digest, type="content")
        await ctrd.add_lease_resource("nj-test-lease", resource)
        assert await ctrd.list_lease_resources("nj-test-lease") == [resource]
        await ctrd.delete_lease(random.id, sync=True)
        assert await _exists(ctrd, blob.digest), "still held by the other lease"
        await ctrd.delete_lease_resource("nj-test-lease", resource)
        assert await ctrd.list_lease_resources("nj-test-lease") == []
        await ctrd.wait_for_gc()
        assert not await _exists(ctrd, blob.digest)

        await ctrd.delete_lease("nj-test-lease", sync=True)
        assert "nj-test-lease" not in {x.id for x in await ctrd.list_leases()}
        with pytest.raises(NotFoundError):
            await ctrd.delete_lease("nj-test-lease")
        await ctrd.delete_lease("nj-test-lease", missing_ok=True)
        with pytest.raises(NotFoundError):
            await ctrd.list_lease_resources("nj-test-lease")


async def test_container_records_hold_their_snapshot(containerd_bed: ContainerdBed) -> None:
    image = _import(containerd_bed, "example.com/ctrd/ctr:v1")
    top = chain_ids([layer.diff_id for layer in image.layers])[-1]
    async with ContainerdClient(containerd_bed.address) as ctrd:
        async with ctrd.temporary_lease() as leased:
            await leased.prepare_snapshot("nerdctl-like-rootfs", top)
            record = await leased.create_container(
                "nerdctl-like",
                "example.com/ctrd/ctr:v1",
                snapshot_key="nerdctl-like-rootfs",
                labels={"nerdctl/name": "web"},
            )
        assert (record.id, record.image, record.runtime_name) == (
            "nerdctl-like",
            "example.com/ctrd/ctr:v1",
            "io.containerd.runc.v2",
        )
        assert (record.snapshotter, record.snapshot_key) == ("overlayfs", "nerdctl-like-rootfs")
        assert await ctrd.get_container("nerdctl-like") == record
        assert [c.id for c in await ctrd.list_containers(['labels."nerdctl/name"==web'])] == ["nerdctl-like"]
        with pytest.raises(AlreadyExistsError):
            await ctrd.create_container("nerdctl-like", "example.com/ctrd/ctr:v1")
        async with CriClient(containerd_bed.address) as cri:
            assert await cri.list_containers() == []  # not a CRI container

        # The lease is gone: only the container record keeps the snapshot alive.
        await ctrd.wait_for_gc()
        assert (await ctrd.stat_snapshot("nerdctl-like-rootfs")).kind == "ACTIVE"
        await ctrd.delete_container("nerdctl-like")
        await ctrd.wait_for_gc()
        with pytest.raises(NotFoundError):
            await ctrd.stat_snapshot("nerdctl-like-rootfs")
        with pytest.raises(NotFoundError):
            await ctrd.get_container("nerdctl-like")
        with pytest.raises(NotFoundError):
            await ctrd.delete_container("nerdctl-like")
        await ctrd.delete_container("nerdctl-like", missing_ok=True)


async def test_namespace_header_scopes_everything(containerd_bed: ContainerdBed) -> None:
    image = _import(containerd_bed, "example.com/ctrd/scoped:v1")
    async with ContainerdClient(containerd_bed.address, namespace="k8s.io") as ctrd:
        other = ctrd.with_namespace("nj-other")
        assert "example.com/ctrd/scoped:v1" in {i.name for i in await ctrd.list_images()}
        assert await other.list_images() == []
        assert await other.list_content() == []
        assert await other.list_snapshots() == []
        with pytest.raises(NotFoundError):
            await other.get_image("example.com/ctrd/scoped:v1")
        with pytest.raises(NotFoundError):
            await other.content_info(image.manifest_digest)  # the blob is on disk, but not in this namespace

        lease = await other.create_lease("only-in-other")
        assert [x.id for x in await other.list_leases()] == [lease.id]
        assert lease.id not in {x.id for x in await ctrd.list_leases()}
        assert {"k8s.io", "nj-other"} <= {n.name for n in await ctrd.list_namespaces()}
        await other.delete_lease(lease.id)

    async with ContainerdClient(containerd_bed.address, namespace="nj-other") as direct:
        assert await direct.list_images() == []


async def test_list_larger_than_grpc_default_message_size(containerd_bed: ContainerdBed) -> None:
    """A node with thousands of images answers List with more than gRPC's default 4 MiB."""
    image = _import(containerd_bed, "example.com/ctrd/many:v1")
    async with ContainerdClient(containerd_bed.address) as ctrd:
        target = (await ctrd.get_image("example.com/ctrd/many:v1")).target
        note = "x" * 4000  # containerd takes up to 4096 bytes per label

        async def create(i: int) -> None:
            await ctrd.create_image(f"example.com/ctrd/many-{i:04d}:v1", target, labels={"note": note})

        for start in range(0, 1200, 100):
            await asyncio.gather(*(create(i) for i in range(start, start + 100)))
        names = {i.name for i in await ctrd.list_images()}
        assert len(names) >= 1202 and image.id in names

    async with ContainerdClient(containerd_bed.address, max_message_bytes=4 << 20) as small:
        with pytest.raises(RuntimeClientError) as err:
            await small.list_images()
        assert err.value.code == "RESOURCE_EXHAUSTED"


async def test_a_socket_that_is_not_grpc_fails_in_about_a_second(containerd_bed: ContainerdBed) -> None:
    """With the default 30 s call timeout, too: the handshake is awaited, not a call's deadline."""
    import time

    from node_janitor.cli import main

    ttrpc = containerd_bed.address + ".ttrpc"
    started = time.monotonic()
    with pytest.raises(RuntimeUnavailableError, match="no gRPC handshake completed within 2s"):
        async with ContainerdClient(ttrpc) as ctrd:
            await ctrd.version()
    assert time.monotonic() - started < 4
    started = time.monotonic()
    assert await asyncio.to_thread(main, ["df", "--containerd-socket", ttrpc]) == 3  # runtime unreachable
    assert time.monotonic() - started < 6
