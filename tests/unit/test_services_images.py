"""Images service over gRPC: records, Import (stream and daemon path, OCI layout and
docker-save), unpack into chain-id snapshots, Export round trips, GC after Delete, and the
codes bad requests get. The native snapshotter keeps these tests free of root and mounts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import grpc
import pytest

from containerd_py.api.services.content.v1 import content_pb2, content_pb2_grpc
from containerd_py.api.services.images.v1 import images_pb2 as pb
from containerd_py.api.services.images.v1 import images_pb2_grpc
from containerd_py.api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from containerd_py.api.types.v1 import descriptor_pb2
from containerd_py.unpack import chain_ids, gc_label
from mkimage import build_image, write_docker_archive, write_oci_archive
from mkimage.busybox import DEFAULT_BUSYBOX
from tests.unit.services_stack import (
    Stack,
    code,
    layer_tar,
    md,
    oci_layout_tar,
)

needs_busybox = pytest.mark.skipif(
    not DEFAULT_BUSYBOX.exists(), reason="needs /bin/busybox (Debian package busybox-static)"
)
BUSYBOX = "docker.io/library/busybox:latest"


@pytest.fixture
def images(stack: Stack) -> images_pb2_grpc.ImagesStub:
    return stack.stub(images_pb2_grpc.ImagesStub)


def import_bytes(
    stub: images_pb2_grpc.ImagesStub, data: bytes, ns: str = "default", **options
) -> list[pb.Image]:
    def requests():
        yield pb.ImportRequest(options=pb.ImportOptions(**options))
        for i in range(0, len(data), 64 << 10):
            yield pb.ImportRequest(data=data[i : i + 64 << 10])

    return list(stub.Import(requests(), metadata=md(ns)).images)


def export_bytes(stub: images_pb2_grpc.ImagesStub, *names: str, ns: str = "default", **kw) -> bytes:
    out = list(stub.Export(pb.ExportRequest(names=names, **kw), metadata=md(ns)))
    data = b"".join(r.data for r in out)
    assert out[-1].size == len(data)
    return data


def snapshots(stack: Stack, ns: str = "default") -> dict[str, tuple[str, int]]:
    sn = stack.stub(snapshots_pb2_grpc.SnapshotsStub)
    return {
        i.name: (i.parent, i.kind)
        for r in sn.List(snapshots_pb2.ListRequest(), metadata=md(ns))
        for i in r.info
    }


def blobs(stack: Stack, ns: str = "default") -> set[str]:
    content = stack.stub(content_pb2_grpc.ContentStub)
    return {
        i.digest for r in content.List(content_pb2.ListRequest(), metadata=md(ns)) for i in r.info
    }


def config_labels(stack: Stack, digest: str, ns: str = "default") -> dict[str, str]:
    content = stack.stub(content_pb2_grpc.ContentStub)
    return dict(content.Info(content_pb2.InfoRequest(digest=digest), metadata=md(ns)).info.labels)


def test_chain_ids() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    import hashlib

    assert chain_ids([a]) == [a]
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]
    assert chain_ids([]) == []


@needs_busybox
def test_import_oci_layout_stream_unpacks(
    images: images_pb2_grpc.ImagesStub, stack: Stack, tmp_path: Path
) -> None:
    digest = write_oci_archive(tmp_path / "bb.tar")
    image = build_image()
    with stack.exchange.subscribe(['topic~="^/images/"']) as sub:
        got = import_bytes(
            images, (tmp_path / "bb.tar").read_bytes(), unpack=True, labels={"k": "v"}
        )
        assert sub.get(timeout=5).topic == "/images/create"
    assert [(i.name, i.target.digest, dict(i.labels)) for i in got] == [
        (BUSYBOX, digest, {"k": "v"})
    ]
    chain = _diff_id(image)  # one layer: its chain id is its diff id
    assert snapshots(stack) == {chain: ("", snapshots_pb2.KIND_COMMITTED)}
    assert config_labels(stack, image.config.digest) == {gc_label("native"): chain}
    listed = images.List(pb.ListRequest(), metadata=md()).images
    assert [i.name for i in listed] == [BUSYBOX]
    # The unpacked tree is the image's.
    root = stack.snapshotters.view("native", "default").mounts(chain)
    assert Path(root[0].source, "bin", "busybox").is_file()
    # Nothing leased is left over.
    assert stack.leases.list("default") == []


def _diff_id(image) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(image.layer_tar).hexdigest()


@needs_busybox
def test_import_docker_archive_from_daemon_path(
    images: images_pb2_grpc.ImagesStub, stack: Stack, tmp_path: Path
) -> None:
    write_docker_archive(tmp_path / "d.tar", "example.com/team/bb:1")
    got = images.Import(
        iter([pb.ImportRequest(options=pb.ImportOptions(path=str(tmp_path / "d.tar")))]),
        metadata=md(),
    ).images
    assert [i.name for i in got] == ["example.com/team/bb:1"]
    assert snapshots(stack) == {}  # not asked to unpack
    # Importing again updates the record (the newer import wins), no error.
    again = images.Import(
        iter(
            [pb.ImportRequest(options=pb.ImportOptions(path=str(tmp_path / "d.tar"), unpack=True))]
        ),
        metadata=md(),
    ).images
    assert [i.target.digest for i in again] == [got[0].target.digest]
    assert len(snapshots(stack)) == 1


def test_shared_layers_reuse_snapshots(images: images_pb2_grpc.ImagesStub, stack: Stack) -> None:
    base = layer_tar({"etc/base": b"base\n", "etc/gone": b"x"})
    top = layer_tar({"etc/top": b"top\n"}, whiteouts=("etc/gone",))
    one, _ = oci_layout_tar("example.com/one:1", [base], gzip_layers=True)
    two, _ = oci_layout_tar("example.com/two:1", [base, top], config={"Cmd": ["/two"]})
    import_bytes(images, one, unpack=True)
    before = snapshots(stack)
    import_bytes(images, two, unpack=True)
    after = snapshots(stack)
    c0, c1 = chain_ids([_sha(base), _sha(top)])
    assert before == {c0: ("", snapshots_pb2.KIND_COMMITTED)}
    assert after == {
        c0: ("", snapshots_pb2.KIND_COMMITTED),
        c1: (c0, snapshots_pb2.KIND_COMMITTED),
    }
    tree = Path(stack.snapshotters.view("native", "default").mounts(c1)[0].source)
    assert (tree / "etc/base").read_text() == "base\n" and (tree / "etc/top").exists()
    assert not (tree / "etc/gone").exists()

    # Deleting "two" frees its own top snapshot, keeps the base "one" still uses.
    images.Delete(pb.DeleteRequest(name="example.com/two:1", sync=True), metadata=md())
    assert snapshots(stack) == {c0: ("", snapshots_pb2.KIND_COMMITTED)}
    images.Delete(pb.DeleteRequest(name="example.com/one:1", sync=True), metadata=md())
    assert snapshots(stack) == {} and blobs(stack) == set()
    assert list(stack.content.blobs.digests()) == []


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_bad_layer_leaves_nothing(images: images_pb2_grpc.ImagesStub, stack: Stack) -> None:
    data, _ = oci_layout_tar("example.com/bad:1", [b"not a tar at all" * 100])
    assert code(import_bytes, images, data, unpack=True) == grpc.StatusCode.INVALID_ARGUMENT
    assert images.List(pb.ListRequest(), metadata=md()).images == []
    assert snapshots(stack) == {}
    assert stack.gc.wait_idle()
    assert blobs(stack) == set() and stack.leases.list("default") == []


def test_export_round_trip_keeps_digest(images: images_pb2_grpc.ImagesStub, stack: Stack) -> None:
    data, digest = oci_layout_tar("example.com/app:2", [layer_tar({"a": b"1"})])
    import_bytes(images, data)
    for fmt in ("oci", "docker"):
        out = export_bytes(images, "example.com/app:2", format=fmt)
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            names = tar.getnames()
        assert ("index.json" in names) == (fmt == "oci")
        assert ("manifest.json" in names) == (fmt == "docker")
        again = import_bytes(images, out, ns=f"ns-{fmt}")
        assert [i.name for i in again] == ["example.com/app:2"]
        if fmt == "oci":
            assert again[0].target.digest == digest


def test_export_to_daemon_path(images: images_pb2_grpc.ImagesStub, tmp_path: Path) -> None:
    data, digest = oci_layout_tar("example.com/app:2", [layer_tar({"a": b"1"})])
    import_bytes(images, data)
    dest = tmp_path / "out.tar"
    out = list(
        images.Export(pb.ExportRequest(names=["example.com/app:2"], path=str(dest)), metadata=md())
    )
    assert [r.data for r in out] == [b""] and out[0].size == dest.stat().st_size
    with tarfile.open(dest) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["digest"] == digest


def test_records_and_events(images: images_pb2_grpc.ImagesStub, stack: Stack) -> None:
    target = descriptor_pb2.Descriptor(
        media_type="application/vnd.oci.image.manifest.v1+json", digest="sha256:" + "1" * 64, size=3
    )
    with stack.exchange.subscribe(['topic~="^/images/"']) as sub:
        images.Create(pb.CreateRequest(image=pb.Image(name="a", target=target)), metadata=md())
        up = images.Update(
            pb.UpdateRequest(
                image=pb.Image(name="a", labels={"x": "1"}), update_mask={"paths": ["labels"]}
            ),
            metadata=md(),
        ).image
        assert dict(up.labels) == {"x": "1"} and up.target.digest == target.digest
        assert (
            code(
                images.Delete,
                pb.DeleteRequest(name="a", target_digest="sha256:" + "2" * 64),
                metadata=md(),
            )
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        images.Delete(pb.DeleteRequest(name="a", target_digest=target.digest), metadata=md())
        assert [sub.get(timeout=5).topic for _ in range(3)] == [
            "/images/create",
            "/images/update",
            "/images/delete",
        ]


def test_bad_requests(images: images_pb2_grpc.ImagesStub, tmp_path: Path) -> None:
    target = descriptor_pb2.Descriptor(media_type="x", digest="sha256:" + "1" * 64, size=3)
    images.Create(pb.CreateRequest(image=pb.Image(name="a", target=target)), metadata=md())
    bad_target = descriptor_pb2.Descriptor(media_type="x", digest="md5:1", size=3)
    cases = [
        (images.Get, pb.GetRequest(name="nope"), grpc.StatusCode.NOT_FOUND),
        (images.Get, pb.GetRequest(name=""), grpc.StatusCode.INVALID_ARGUMENT),
        (
            images.Create,
            pb.CreateRequest(image=pb.Image(name="a", target=target)),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        (
            images.Create,
            pb.CreateRequest(image=pb.Image(name="b", target=bad_target)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (images.Delete, pb.DeleteRequest(name="nope"), grpc.StatusCode.NOT_FOUND),
        (images.Pull, pb.PullRequest(ref="busybox"), grpc.StatusCode.UNIMPLEMENTED),
        (images.Push, pb.PushRequest(ref="a"), grpc.StatusCode.UNIMPLEMENTED),
        (images.Export, pb.ExportRequest(names=[]), grpc.StatusCode.INVALID_ARGUMENT),
        (images.Export, pb.ExportRequest(names=["nope"]), grpc.StatusCode.NOT_FOUND),
        (
            images.Export,
            pb.ExportRequest(names=["a"], format="zip"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            images.Export,
            pb.ExportRequest(names=["a"], path="rel.tar"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (images.Export, pb.ExportRequest(names=["a"]), grpc.StatusCode.NOT_FOUND),  # blobs missing
    ]
    for call, req, want in cases:
        assert code(call, req, metadata=md()) == want, req
    with pytest.raises(grpc.RpcError) as e:
        list(images.Pull(pb.PullRequest(ref="busybox"), metadata=md()))
    assert "distribution issue" in e.value.details()

    def imp(*reqs: pb.ImportRequest) -> grpc.StatusCode:
        return code(images.Import, iter(reqs), metadata=md())

    assert imp(pb.ImportRequest(data=b"x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert imp(pb.ImportRequest(options=pb.ImportOptions())) == grpc.StatusCode.INVALID_ARGUMENT
    assert imp(
        pb.ImportRequest(options=pb.ImportOptions()), pb.ImportRequest(data=b"junk" * 300)
    ) == (grpc.StatusCode.INVALID_ARGUMENT)
    assert imp(pb.ImportRequest(options=pb.ImportOptions(path=str(tmp_path / "none.tar")))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        imp(pb.ImportRequest(options=pb.ImportOptions(path="x.tar")))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert imp(pb.ImportRequest(options=pb.ImportOptions(unpack=True, snapshotter="zfs"))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    # Still serving.
    assert [i.name for i in images.List(pb.ListRequest(), metadata=md()).images] == ["a"]


def test_namespaces_isolate_images(images: images_pb2_grpc.ImagesStub, stack: Stack) -> None:
    a, _ = oci_layout_tar("example.com/same:1", [layer_tar({"who": b"a"})])
    b, _ = oci_layout_tar("example.com/same:1", [layer_tar({"who": b"b"})])
    da = import_bytes(images, a, ns="a", unpack=True)[0].target.digest
    db = import_bytes(images, b, ns="b", unpack=True)[0].target.digest
    assert da != db
    assert (
        images.Get(pb.GetRequest(name="example.com/same:1"), metadata=md("a")).image.target.digest
        == da
    )
    assert (
        images.Get(pb.GetRequest(name="example.com/same:1"), metadata=md("b")).image.target.digest
        == db
    )
    images.Delete(pb.DeleteRequest(name="example.com/same:1", sync=True), metadata=md("a"))
    assert snapshots(stack, "a") == {} and len(snapshots(stack, "b")) == 1
    assert blobs(stack, "a") == set() and len(blobs(stack, "b")) == 3


def test_unpack_without_the_layer_blob_leaves_no_snapshot(
    images: images_pb2_grpc.ImagesStub, stack: Stack
) -> None:
    from containerd_py.images.errors import BlobNotFoundError
    from containerd_py.images.manifest import Descriptor
    from containerd_py.unpack import Unpacker

    layer = layer_tar({"etc/f": b"f\n"})
    data, _ = oci_layout_tar("example.com/nolayer:1", [layer])
    (img,) = import_bytes(images, data)
    content = stack.content.with_namespace("default")
    content.delete(_sha(layer))
    target = Descriptor(img.target.media_type, img.target.digest, img.target.size)
    unpacker = Unpacker(content, stack.snapshotters.view("native", "default"))
    with pytest.raises(BlobNotFoundError, match=f"content {_sha(layer)} .* not found"):
        unpacker.unpack(target)
    assert snapshots(stack) == {}
