"""Images through a real pycontainerd process: unpack into snapshots named by chain id (a
second image reuses the layers it shares), real overlay mounts of the result (root),
namespaces, restarts, and the codes bad requests get while the daemon keeps serving."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from containerd_py import errdefs
from containerd_py.api.services.images.v1 import images_pb2, images_pb2_grpc
from containerd_py.client import Client, Descriptor
from containerd_py.namespaces import METADATA_KEY
from containerd_py.snapshots.mount import mount_all, unmount_all
from containerd_py.unpack import chain_ids
from tests.daemon import Daemon, running_daemon
from tests.unit.services_stack import layer_tar, oci_layout_tar

BASE = layer_tar({"etc/base": b"base\n", "etc/gone": b"doomed\n", "bin/tool": b"#!x\n"})
TOP = layer_tar({"etc/top": b"top\n"}, whiteouts=("etc/gone",))


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with running_daemon(short_tmp) as d:
        yield d


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


def import_(client: Client, data: bytes, **kw) -> list:
    return client.images().import_archive(io.BytesIO(data), **kw)


def test_unpack_names_snapshots_by_chain_id_and_shares_layers(client: Client) -> None:
    one, d1 = oci_layout_tar("example.com/one:1", [BASE], gzip_layers=True)
    two, d2 = oci_layout_tar("example.com/two:1", [BASE, TOP])
    c0, c1 = chain_ids([sha(BASE), sha(TOP)])
    assert [i.target.digest for i in import_(client, one)] == [d1]
    snaps = {s.name: s for s in client.snapshots().list()}
    assert set(snaps) == {c0} and snaps[c0].kind == "Committed"
    created = snaps[c0].created_at
    assert [i.target.digest for i in import_(client, two)] == [d2]
    snaps = {s.name: s for s in client.snapshots().list()}
    assert set(snaps) == {c0, c1}
    assert snaps[c0].created_at == created  # reused, not extracted again
    assert snaps[c1].parent == c0 and snaps[c1].kind == "Committed"
    rootfs = client.image_rootfs(client.images().get("example.com/two:1"))
    assert rootfs.chain_id == c1
    labels = client.content().info(rootfs.config.digest).labels
    name = client.snapshotter_name()
    assert labels == {f"containerd.io/gc.ref.snapshot.{name}": c1}


@pytest.mark.root
def test_unpacked_layers_mount_as_the_image(client: Client, short_tmp: Path) -> None:
    two, _ = oci_layout_tar("example.com/two:1", [BASE, TOP])
    import_(client, two)
    c1 = chain_ids([sha(BASE), sha(TOP)])[-1]
    for snapshotter in ("overlay", "native"):
        sn = client.snapshots(snapshotter)
        if snapshotter != client.snapshotter_name():
            import_(client, two, snapshotter=snapshotter)
        mounts = sn.view(f"look-{snapshotter}", c1)
        target = tempfile.mkdtemp(dir=short_tmp)
        try:
            mount_all([_mount(m) for m in mounts], target)
            try:
                tree = Path(target)
                assert (tree / "etc/base").read_text() == "base\n"
                assert (tree / "etc/top").read_text() == "top\n"
                assert not (tree / "etc/gone").exists()
                assert (tree / "bin/tool").read_bytes() == b"#!x\n"
            finally:
                unmount_all(target)
        finally:
            os.rmdir(target)
            sn.remove(f"look-{snapshotter}")


def _mount(m):  # client Mount -> snapshots.mount.Mount
    from containerd_py.snapshots.mount import Mount

    return Mount(m.type, m.source, m.options, m.target)


def test_namespaces_isolate_images(client: Client) -> None:
    a, da = oci_layout_tar("example.com/same:1", [layer_tar({"who": b"a"})])
    b, db = oci_layout_tar("example.com/same:1", [layer_tar({"who": b"b"})])
    ca, cb = client.with_namespace("team-a"), client.with_namespace("team-b")
    import_(ca, a)
    import_(cb, b)
    assert ca.images().get("example.com/same:1").target.digest == da
    assert cb.images().get("example.com/same:1").target.digest == db
    assert client.images().list() == []
    assert {s.name for s in ca.snapshots().list()} == {sha(layer_tar({"who": b"a"}))}
    ca.images().delete("example.com/same:1", sync=True)
    assert ca.images().list() == [] and ca.snapshots().list() == [] and ca.content().list() == []
    assert cb.images().get("example.com/same:1").target.digest == db
    assert len(cb.content().list()) == 3 and len(cb.snapshots().list()) == 1


def test_images_survive_a_daemon_crash(daemon: Daemon) -> None:
    data, digest = oci_layout_tar("example.com/keep:1", [BASE])
    with daemon.client() as c:
        import_(c, data)
    daemon.kill9()
    daemon.start()
    with daemon.client() as c:
        assert c.images().get("example.com/keep:1").target.digest == digest
        assert [s.name for s in c.snapshots().list()] == [sha(BASE)]
        assert c.image_summary(c.images().get("example.com/keep:1")).size > len(BASE)


def test_bad_requests_get_the_right_codes(daemon: Daemon, client: Client) -> None:
    target = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "1" * 64, 3)
    client.images().create("example.com/x:1", target)
    cases = [
        (lambda: client.images().get("nope"), errdefs.NotFound),
        (lambda: client.images().create("example.com/x:1", target), errdefs.AlreadyExists),
        (lambda: client.images().create("y", Descriptor("x", "md5:1", 1)), errdefs.InvalidArgument),
        (
            lambda: client.images().delete("example.com/x:1", target_digest="sha256:" + "2" * 64),
            errdefs.FailedPrecondition,
        ),
        (lambda: client.images().export(["example.com/x:1"], io.BytesIO()), errdefs.NotFound),
        (lambda: import_(client, b"\x1f\x8b junk"), errdefs.InvalidArgument),
        (lambda: client.snapshots("zfs").list(), errdefs.InvalidArgument),
        (lambda: client.snapshots().prepare("k", "missing-parent"), errdefs.NotFound),
        (lambda: client.content().info("sha256:bad"), errdefs.InvalidArgument),
        (lambda: client.containers().get("nope"), errdefs.NotFound),
        (lambda: client.leases().delete("nope"), errdefs.NotFound),
        (lambda: client.with_namespace("").images().list(), errdefs.InvalidArgument),
    ]
    for call, exc in cases:
        with pytest.raises(exc):
            call()
    with pytest.raises(errdefs.PyContainerdError, match="distribution issue"):
        list(client.stream(client._images.Pull, images_pb2.PullRequest(ref="busybox")))
    # A request that is not even one the service knows: grpc's own UNIMPLEMENTED.
    stub = images_pb2_grpc.ImagesStub(client.channel)
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Push(images_pb2.PushRequest(ref="x"), metadata=((METADATA_KEY, "default"),)))
    assert e.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert daemon.running
    assert [i.name for i in client.images().list()] == ["example.com/x:1"]
    assert "Traceback" not in daemon.logs()
