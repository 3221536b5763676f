"""Namespaces, containers, images and leases: validation, updates by field path, namespace
partitioning, and loaders that skip corrupt rows instead of failing."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from containerd_py.content.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor
from containerd_py.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)
from containerd_py.metadata.common import from_datetime, to_datetime
from containerd_py.metadata.containers import Container, ContainerStore, RuntimeInfo, TypedValue
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.images import Image, ImageStore
from containerd_py.metadata.leases import LeaseStore, Resource
from containerd_py.metadata.namespaces import NamespaceStore

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
SPEC = b'{"ociVersion": "1.0.2"}'


@pytest.fixture
def db(tmp_path: Path):
    d = MetadataDB(tmp_path / "meta.db")
    try:
        yield d
    finally:
        d.close()


def ctr(cid: str = "c1", **kw) -> Container:
    kw.setdefault("runtime", RuntimeInfo("pycontainerd.shim.v1"))
    kw.setdefault("spec", SPEC)
    return Container(id=cid, **kw)


def img(name: str = "docker.io/library/busybox:latest", digest: str = D1, **kw) -> Image:
    return Image(name=name, target=Descriptor(OCI_INDEX, digest, 123), **kw)


# -- namespaces ---------------------------------------------------------------------


def test_namespaces_lifecycle(db: MetadataDB) -> None:
    ns = NamespaceStore(db)
    created = ns.create("pydocker", {"owner": "engine"})
    assert created.labels == {"owner": "engine"}
    with pytest.raises(AlreadyExists):
        ns.create("pydocker")
    assert [n.name for n in ns.list()] == ["pydocker"]
    assert ns.set_label("pydocker", "x", "1").labels == {"owner": "engine", "x": "1"}
    assert ns.set_label("pydocker", "x", "").labels == {"owner": "engine"}
    assert ns.update("pydocker", {"only": "this"}).labels == {"only": "this"}
    assert [n.name for n in ns.list("labels.only==this")] == ["pydocker"]
    ns.delete("pydocker")
    with pytest.raises(NotFound):
        ns.get("pydocker")
    with pytest.raises(NotFound):
        ns.delete("pydocker")


@pytest.mark.parametrize("bad", ["", "a/b", "-a", "a..b", "A" * 77, "a b", "k8s.io/x"])
def test_namespace_names_are_identifiers(db: MetadataDB, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        NamespaceStore(db).create(bad)


def test_first_object_creates_its_namespace(db: MetadataDB) -> None:
    ContainerStore(db).create("k8s.io", ctr())
    assert [n.name for n in NamespaceStore(db).list()] == ["k8s.io"]


def test_a_namespace_in_use_cannot_be_deleted(db: MetadataDB) -> None:
    ns = NamespaceStore(db)
    ContainerStore(db).create("busy", ctr())
    ImageStore(db).create("busy", img())
    LeaseStore(db).create("busy", "l1")
    with pytest.raises(FailedPrecondition, match="containers, images, leases"):
        ns.delete("busy")
    ContainerStore(db).delete("busy", "c1")
    ImageStore(db).delete("busy", img().name)
    LeaseStore(db).delete("busy", "l1")
    ns.delete("busy")


# -- containers ---------------------------------------------------------------------


def test_container_round_trip(db: MetadataDB) -> None:
    store = ContainerStore(db)
    c = ctr(
        labels={"a": "1"},
        image="docker.io/library/busybox:latest",
        runtime=RuntimeInfo("pycontainerd.shim.v1", TypedValue("types/RuntimeOptions", b"\x01")),
        snapshotter="overlay",
        snapshot_key="c1-rootfs",
        sandbox="pod-1",
        extensions={"engine": TypedValue("types/Config", b"\x00\xff")},
    )
    got = store.create("default", c)
    assert got.created_at is not None and got.created_at == got.updated_at
    assert got == replace(c, created_at=got.created_at, updated_at=got.updated_at)
    assert store.get("default", "c1") == got
    with pytest.raises(AlreadyExists):
        store.create("default", c)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"cid": "bad/id"}, "container id"),
        ({"runtime": RuntimeInfo("")}, "runtime"),
        ({"spec": None}, "spec"),
        ({"snapshot_key": "k"}, "snapshotter"),
        ({"labels": {"": "x"}}, "label"),
        ({"extensions": {"": TypedValue("t")}}, "extension"),
    ],
)
def test_container_validation(db: MetadataDB, kw: dict, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        ContainerStore(db).create("default", ctr(**kw))


def test_container_update_by_fieldpaths(db: MetadataDB) -> None:
    store = ContainerStore(db)
    store.create("default", ctr(labels={"a": "1", "b": "2"}, image="old"))
    new = ctr(labels={"a": "9", "c": "3"}, image="new", spec=b'{"new": 1}')
    got = store.update("default", new, ["labels.a", "labels.b"])
    assert got.labels == {"a": "9"} and got.image == "old"
    got = store.update("default", new, ["image", "spec"])
    assert got.image == "new" and got.spec == b'{"new": 1}'
    got = store.update(
        "default",
        ctr(extensions={"x": TypedValue("t", b"1")}),
        ["extensions.x"],
    )
    assert got.extensions == {"x": TypedValue("t", b"1")}
    got = store.update("default", ctr(labels={"z": "1"}, image="all", spec=SPEC))
    assert got.labels == {"z": "1"} and got.image == "all" and got.extensions == {}
    assert got.updated_at > got.created_at
    with pytest.raises(InvalidArgument, match="immutable"):
        store.update("default", ctr(runtime=RuntimeInfo("other")))
    with pytest.raises(InvalidArgument, match="immutable"):
        store.update("default", ctr(snapshotter="native"))
    with pytest.raises(InvalidArgument, match="cannot update"):
        store.update("default", ctr(), ["id"])
    with pytest.raises(NotFound):
        store.update("default", ctr("nope"))


def test_container_list_filters(db: MetadataDB) -> None:
    store = ContainerStore(db)
    store.create("default", ctr("web", labels={"app": "web"}, image="nginx"))
    store.create("default", ctr("db", labels={"app": "db"}, image="postgres"))
    assert [c.id for c in store.list("default")] == ["db", "web"]
    assert [c.id for c in store.list("default", "labels.app==web")] == ["web"]
    assert [c.id for c in store.list("default", "image~=^post")] == ["db"]
    assert [c.id for c in store.list("default", "runtime.name==pycontainerd.shim.v1")] == [
        "db",
        "web",
    ]


def test_objects_are_partitioned_by_namespace(db: MetadataDB) -> None:
    cs, ims, ls = ContainerStore(db), ImageStore(db), LeaseStore(db)
    cs.create("a", ctr("same", image="in-a"))
    cs.create("b", ctr("same", image="in-b"))
    assert cs.get("a", "same").image == "in-a" and cs.get("b", "same").image == "in-b"
    ims.create("a", img(digest=D1))
    ims.create("b", img(digest=D2))
    assert ims.get("a", img().name).target.digest == D1
    assert ims.get("b", img().name).target.digest == D2
    ls.create("a", "lease")
    ls.create("b", "lease")
    cs.delete("a", "same")
    assert [c.id for c in cs.list("a")] == [] and [c.id for c in cs.list("b")] == ["same"]
    with pytest.raises(NotFound):
        cs.get("a", "same")
    with pytest.raises(NotFound):
        cs.get("c", "same")
    assert ims.list("c") == [] and ls.list("c") == []


# -- images -------------------------------------------------------------------------


def test_image_lifecycle(db: MetadataDB) -> None:
    store = ImageStore(db)
    got = store.create("default", img(labels={"x": "1"}))
    assert got.target == Descriptor(OCI_INDEX, D1, 123) and got.labels == {"x": "1"}
    with pytest.raises(AlreadyExists):
        store.create("default", img())
    newt = Descriptor(OCI_MANIFEST, D2, 7, {"org.opencontainers.image.ref.name": "latest"})
    got = store.update("default", Image(img().name, newt), ["target"])
    assert got.target == newt and got.labels == {"x": "1"}
    got = store.update(
        "default", Image(img().name, Descriptor(OCI_MANIFEST, D2, 7, {})), ["annotations"]
    )
    assert got.target.annotations == {}
    got = store.update("default", Image(img().name, newt, {"y": "2"}), ["labels.y"])
    assert got.labels == {"x": "1", "y": "2"}
    assert [i.name for i in store.list("default", f"target.digest=={D2}")] == [img().name]
    assert store.list("default", "target.mediatype==" + OCI_INDEX) == []
    with pytest.raises(InvalidArgument):
        store.update("default", img(), ["name"])
    store.delete("default", img().name)
    with pytest.raises(NotFound):
        store.delete("default", img().name)


@pytest.mark.parametrize(
    "bad",
    [
        Image("", Descriptor(OCI_INDEX, D1, 1)),
        Image("x", Descriptor("", D1, 1)),
        Image("x", Descriptor(OCI_INDEX, "sha256:nothex", 1)),
        Image("x", Descriptor(OCI_INDEX, D1, -1)),
    ],
)
def test_image_validation(db: MetadataDB, bad: Image) -> None:
    with pytest.raises(InvalidArgument):
        ImageStore(db).create("default", bad)


# -- leases -------------------------------------------------------------------------


def test_lease_lifecycle_and_resources(db: MetadataDB) -> None:
    store = LeaseStore(db)
    lease = store.create("default", "pull-1", {"a": "b"})
    assert lease.id == "pull-1" and lease.expire_at is None
    with pytest.raises(AlreadyExists):
        store.create("default", "pull-1")
    generated = store.create("default")
    assert generated.id.startswith("lease-")
    store.add_resource("default", "pull-1", Resource(D1, "content"))
    store.add_resource("default", "pull-1", Resource(D1, "content"))  # idempotent
    store.add_resource("default", "pull-1", Resource("key", "snapshots/overlay"))
    store.add_resource("default", "pull-1", Resource("ref", "ingests"))
    assert store.list_resources("default", "pull-1") == [
        Resource(D1, "content"),
        Resource("ref", "ingests"),
        Resource("key", "snapshots/overlay"),
    ]
    store.delete_resource("default", "pull-1", Resource("ref", "ingests"))
    assert len(store.list_resources("default", "pull-1")) == 2
    for bad in (Resource("x", "content"), Resource("k", "snapshots/"), Resource("k", "bogus")):
        with pytest.raises(InvalidArgument):
            store.add_resource("default", "pull-1", bad)
    with pytest.raises(NotFound):
        store.add_resource("default", "nope", Resource(D1, "content"))
    assert [x.id for x in store.list("default", "labels.a==b")] == ["pull-1"]
    store.delete("default", "pull-1")
    # Resources go with their lease (ON DELETE CASCADE).
    assert db.conn().execute("SELECT COUNT(*) FROM lease_resources").fetchone()[0] == 0
    with pytest.raises(NotFound):
        store.list_resources("default", "pull-1")


def test_lease_expiry(db: MetadataDB) -> None:
    store = LeaseStore(db)
    now = datetime.now(UTC)
    soon = store.create("default", "soon", expire_at=now + timedelta(seconds=60))
    label = store.create(
        "default",
        "label",
        {"containerd.io/gc.expire": (now - timedelta(seconds=1)).isoformat()},
    )
    never = store.create("default", "never")
    assert not soon.expired(now) and soon.expired(now + timedelta(seconds=61))
    assert label.expired(now)
    assert not never.expired(now + timedelta(days=3650))
    assert store.get("default", "soon").expire_at == soon.expire_at


def test_timestamps_round_trip_to_the_microsecond() -> None:
    dt = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    assert to_datetime(from_datetime(dt)) == dt


# -- corrupt rows -------------------------------------------------------------------


def test_loaders_skip_corrupt_rows(db: MetadataDB, caplog: pytest.LogCaptureFixture) -> None:
    cs, ims, ls, ns = ContainerStore(db), ImageStore(db), LeaseStore(db), NamespaceStore(db)
    cs.create("default", ctr("good"))
    ims.create("default", img("good"))
    ls.create("default", "good")
    with db.transaction() as c:
        c.execute(
            "INSERT INTO containers(namespace, id, labels, runtime_name, extensions,"
            " created_at, updated_at) VALUES ('default', 'bad', 'not json', 'r', '{}', 1, 1)"
        )
        c.execute(
            "INSERT INTO containers(namespace, id, labels, runtime_name, runtime_options,"
            " extensions, created_at, updated_at)"
            " VALUES ('default', 'bad2', '{}', 'r', '{\"type_url\": 5}', '{}', 1, 1)"
        )
        c.execute(
            "INSERT INTO images VALUES ('default', 'bad', '{}', 'x', '../../etc', 1, '{}', 1, 1)"
        )
        c.execute("INSERT INTO leases VALUES ('default', 'bad', '[1, 2]', 1, NULL)")
        c.execute("INSERT INTO leases VALUES ('default', 'bad2', '{}', 'yesterday', NULL)")
        c.execute("INSERT INTO namespaces VALUES ('weird', '{\"a\": 1}', 1, 1)")
    with caplog.at_level(logging.WARNING):
        assert [x.id for x in cs.list("default")] == ["good"]
        assert [x.name for x in ims.list("default")] == ["good"]
        assert [x.id for x in ls.list("default")] == ["good"]
        assert [x.name for x in ns.list()] == ["default"]
    assert "corrupt" in caplog.text
    with pytest.raises(Internal, match="corrupt"):
        cs.get("default", "bad")
    with pytest.raises(Internal, match="corrupt"):
        ims.get("default", "bad")
    # A corrupt record can still be deleted, so an operator can repair by hand.
    cs.delete("default", "bad")
    ims.delete("default", "bad")
    assert ns.get("weird").labels == {}
