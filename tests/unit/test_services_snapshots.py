"""Snapshots and Leases services over gRPC (native snapshotter: no root needed)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from containerd_py.api.services.leases.v1 import leases_pb2, leases_pb2_grpc
from containerd_py.api.services.snapshots.v1 import snapshots_pb2 as pb
from containerd_py.api.services.snapshots.v1 import snapshots_pb2_grpc
from containerd_py.services.snapshots import Snapshotters
from tests.unit.services_stack import Stack, code, md


@pytest.fixture
def sn(stack: Stack) -> snapshots_pb2_grpc.SnapshotsStub:
    return stack.stub(snapshots_pb2_grpc.SnapshotsStub)


def names(sn: snapshots_pb2_grpc.SnapshotsStub, ns: str = "default", *filters: str) -> list:
    return sorted(
        (i.name, i.parent, pb.Kind.Name(i.kind))
        for r in sn.List(pb.ListRequest(filters=filters), metadata=md(ns))
        for i in r.info
    )


def test_lifecycle_and_events(sn: snapshots_pb2_grpc.SnapshotsStub, stack: Stack) -> None:
    with stack.exchange.subscribe(['topic~="^/snapshot/"']) as sub:
        mounts = sn.Prepare(pb.PrepareRequest(key="base-active"), metadata=md()).mounts
        assert [(m.type, list(m.options)) for m in mounts] == [("bind", ["rw", "rbind"])]
        (Path(mounts[0].source) / "hello").write_text("hi")
        sn.Commit(
            pb.CommitRequest(name="base", key="base-active", labels={"l": "1"}), metadata=md()
        )
        sn.Prepare(pb.PrepareRequest(key="work", parent="base"), metadata=md())
        view = sn.View(pb.ViewRequest(key="look", parent="base"), metadata=md()).mounts
        assert "ro" in view[0].options
        topics = [sub.get(timeout=5).topic for _ in range(3)]
        assert topics == ["/snapshot/prepare", "/snapshot/commit", "/snapshot/prepare"]

    assert names(sn) == [
        ("base", "", "KIND_COMMITTED"),
        ("look", "base", "KIND_VIEW"),
        ("work", "base", "KIND_ACTIVE"),
    ]
    assert names(sn, "default", "kind==Committed") == [("base", "", "KIND_COMMITTED")]
    info = sn.Stat(pb.StatRequest(key="base"), metadata=md()).info
    assert dict(info.labels) == {"l": "1"} and info.kind == pb.KIND_COMMITTED
    usage = sn.Usage(pb.UsageRequest(key="base"), metadata=md())
    assert usage.size > 0 and usage.inodes >= 2
    mounts = sn.Mounts(pb.MountsRequest(key="work"), metadata=md()).mounts
    assert (Path(mounts[0].source) / "hello").read_text() == "hi"

    updated = sn.Update(
        pb.UpdateRequest(
            info=pb.Info(name="base", labels={"m": "2"}), update_mask={"paths": ["labels.m"]}
        ),
        metadata=md(),
    ).info
    assert dict(updated.labels) == {"l": "1", "m": "2"}

    assert code(sn.Remove, pb.RemoveRequest(key="base"), metadata=md()) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    for key in ("work", "look", "base"):
        sn.Remove(pb.RemoveRequest(key=key), metadata=md())
    assert names(sn) == []
    sn.Cleanup(pb.CleanupRequest(), metadata=md())


def test_namespaces_partition_snapshots(sn: snapshots_pb2_grpc.SnapshotsStub) -> None:
    sn.Prepare(pb.PrepareRequest(key="same"), metadata=md("a"))
    sn.Prepare(pb.PrepareRequest(key="same"), metadata=md("b"))
    assert names(sn, "a") == [("same", "", "KIND_ACTIVE")]
    sn.Remove(pb.RemoveRequest(key="same"), metadata=md("a"))
    assert names(sn, "a") == [] and names(sn, "b") == [("same", "", "KIND_ACTIVE")]
    assert code(sn.Stat, pb.StatRequest(key="same"), metadata=md("a")) == grpc.StatusCode.NOT_FOUND


def test_bad_requests(sn: snapshots_pb2_grpc.SnapshotsStub) -> None:
    bad = pb.PrepareRequest(key="k", snapshotter="zfs")
    assert code(sn.Prepare, bad, metadata=md()) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(sn.Prepare, pb.PrepareRequest(key=""), metadata=md()) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code(sn.Prepare, pb.PrepareRequest(key="k", parent="nope"), metadata=md()) == (
        grpc.StatusCode.NOT_FOUND
    )
    sn.Prepare(pb.PrepareRequest(key="k"), metadata=md())
    assert code(sn.Prepare, pb.PrepareRequest(key="k"), metadata=md()) == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    assert code(sn.Prepare, pb.PrepareRequest(key="x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(sn.List, pb.ListRequest(filters=["kind=="]), metadata=md()) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code(sn.Commit, pb.CommitRequest(name="c", key="nope"), metadata=md()) == (
        grpc.StatusCode.NOT_FOUND
    )
    # Still serving; "overlayfs" is an alias of overlay, which this stack has not loaded.
    assert code(sn.Stat, pb.StatRequest(key="k", snapshotter="overlayfs"), metadata=md()) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert sn.Stat(pb.StatRequest(key="k", snapshotter="native"), metadata=md()).info.name == "k"


def test_snapshotter_names(stack: Stack) -> None:
    s = Snapshotters(stack.db, {"native": object(), "overlay": object()}, "overlay")  # type: ignore[dict-item]
    assert (s.name(""), s.name("overlayfs"), s.name("native")) == ("overlay", "overlay", "native")
    with pytest.raises(ValueError):
        Snapshotters(stack.db, {}, "overlay")


def test_lease_holds_snapshots(sn: snapshots_pb2_grpc.SnapshotsStub, stack: Stack) -> None:
    leases = stack.stub(leases_pb2_grpc.LeasesStub)
    leases.Create(leases_pb2.CreateRequest(id="l1", labels={"k": "v"}), metadata=md())
    sn.Prepare(pb.PrepareRequest(key="a"), metadata=md(lease="l1"))
    sn.Commit(pb.CommitRequest(name="a-done", key="a"), metadata=md(lease="l1"))
    sn.Prepare(pb.PrepareRequest(key="loose"), metadata=md())
    res = leases.ListResources(leases_pb2.ListResourcesRequest(id="l1"), metadata=md())
    assert [(r.type, r.id) for r in res.resources] == [("snapshots/native", "a-done")]
    stack.gc.collect_now()
    assert names(sn) == [("a-done", "", "KIND_COMMITTED")]
    listed = leases.List(leases_pb2.ListRequest(filters=["labels.k==v"]), metadata=md()).leases
    assert [lease.id for lease in listed] == ["l1"]
    leases.Delete(leases_pb2.DeleteRequest(id="l1"), metadata=md())
    assert stack.gc.wait_idle() and names(sn) == []


def test_leases_service(stack: Stack) -> None:
    leases = stack.stub(leases_pb2_grpc.LeasesStub)
    made = leases.Create(leases_pb2.CreateRequest(), metadata=md()).lease
    assert made.id.startswith("lease-") and made.created_at.seconds > 0
    r = leases_pb2.Resource(id="sha256:" + "a" * 64, type="content")
    leases.AddResource(leases_pb2.AddResourceRequest(id=made.id, resource=r), metadata=md())
    leases.DeleteResource(leases_pb2.DeleteResourceRequest(id=made.id, resource=r), metadata=md())
    out = leases.ListResources(leases_pb2.ListResourcesRequest(id=made.id), metadata=md())
    assert list(out.resources) == []
    assert code(leases.Create, leases_pb2.CreateRequest(id=made.id), metadata=md()) == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    bad = leases_pb2.Resource(id="x", type="weird")
    assert (
        code(
            leases.AddResource,
            leases_pb2.AddResourceRequest(id=made.id, resource=bad),
            metadata=md(),
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code(leases.Delete, leases_pb2.DeleteRequest(id="nope"), metadata=md()) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert [x.id for x in leases.List(leases_pb2.ListRequest(), metadata=md("other")).leases] == []
