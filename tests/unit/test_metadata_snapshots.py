"""Snapshot ownership: namespaces over one backend, keys mapped, leases, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.leases import LeaseStore, Resource
from containerd_py.metadata.snapshots import NamespacedSnapshotter, records
from containerd_py.snapshots import Info, Kind
from containerd_py.snapshots.native import NativeSnapshotter


@pytest.fixture
def env(tmp_path: Path):
    db = MetadataDB(tmp_path / "meta.db")
    backend = NativeSnapshotter(tmp_path / "native")
    try:
        yield db, backend, NamespacedSnapshotter(db, "native", backend, "default")
    finally:
        backend.close()
        db.close()


def test_keys_are_per_namespace(env) -> None:
    _, backend, sn = env
    other = sn.with_namespace("other")
    sn.prepare("rootfs", labels={"who": "default"})
    other.prepare("rootfs", labels={"who": "other"})
    assert sn.stat("rootfs").labels == {"who": "default"}
    assert other.stat("rootfs").labels == {"who": "other"}
    assert sorted(i.name for i in backend.walk()) == ["default/1/rootfs", "other/2/rootfs"]
    assert [i.name for i in sn.walk()] == ["rootfs"]
    sn.remove("rootfs")
    with pytest.raises(NotFound):
        sn.stat("rootfs")
    assert other.stat("rootfs").kind is Kind.ACTIVE
    with pytest.raises(NotFound):
        sn.with_namespace("third").mounts("rootfs")


def test_chain_commit_and_names(env) -> None:
    _, backend, sn = env
    mounts = sn.prepare("extract-1")
    assert mounts[0].type == "bind"
    sn.commit("layer-1", "extract-1", labels={"containerd.io/snapshot/x": "1", "plain": "2"})
    info = sn.stat("layer-1")
    assert (info.kind, info.parent) == (Kind.COMMITTED, "")
    assert info.labels == {"containerd.io/snapshot/x": "1", "plain": "2"}
    [binfo] = [i for i in backend.walk() if i.kind is Kind.COMMITTED]
    assert binfo.labels == {"containerd.io/snapshot/x": "1"}  # only inherited labels go down
    sn.prepare("ctr", "layer-1")
    assert sn.stat("ctr").parent == "layer-1"
    assert sn.usage("ctr").inodes >= 1
    with pytest.raises(FailedPrecondition):
        sn.remove("layer-1")
    with pytest.raises(AlreadyExists):
        sn.prepare("ctr")
    with pytest.raises(AlreadyExists):
        sn.commit("layer-1", "ctr")
    with pytest.raises(NotFound):
        sn.prepare("x", "nope")
    with pytest.raises(InvalidArgument):
        sn.prepare("")


def test_update_and_filters(env) -> None:
    _, _, sn = env
    sn.prepare("a", labels={"x": "1"})
    sn.view("v")
    got = sn.update(Info("a", Kind.ACTIVE, labels={"y": "2"}), ["labels.y"])
    assert got.labels == {"x": "1", "y": "2"}
    assert [i.name for i in sn.walk("labels.y==2")] == ["a"]
    assert [i.name for i in sn.walk("kind==View")] == ["v"]
    with pytest.raises(InvalidArgument):
        sn.update(Info("a", Kind.ACTIVE), ["kind"])


def test_backend_failure_rolls_back_the_record(env) -> None:
    db, backend, sn = env
    sn.prepare("a")
    sn.commit("base", "a")

    class Broken:
        def __getattr__(self, name):
            return getattr(backend, name)

        def prepare(self, *a, **k):
            raise OSError("disk full")

    broken = NamespacedSnapshotter(db, "native", Broken(), "default")
    with pytest.raises(OSError):
        broken.prepare("b", "base")
    assert [r.key for r in records(db.conn())] == ["base"]


def test_leased_snapshots(env) -> None:
    db, _, sn = env
    leases = LeaseStore(db)
    leases.create("default", "unpack")
    leased = sn.with_namespace("default", lease="unpack")
    leased.prepare("extract")
    assert leases.list_resources("default", "unpack") == [Resource("extract", "snapshots/native")]
    leased.commit("layer", "extract")
    assert leases.list_resources("default", "unpack") == [Resource("layer", "snapshots/native")]
    sn.remove("layer")
    assert leases.list_resources("default", "unpack") == []


def test_namespaced_view_implements_the_protocol(env) -> None:
    from containerd_py.snapshots import Snapshotter

    assert isinstance(env[2], Snapshotter)
