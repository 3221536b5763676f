"""Containers service over gRPC: records, filters, field masks, events, codes."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import any_pb2

from containerd_py import errdefs, namespaces
from containerd_py.api.services.containers.v1 import containers_pb2 as pb
from containerd_py.api.services.containers.v1 import containers_pb2_grpc
from containerd_py.metadata.containers import ContainerStore
from containerd_py.oci_spec import SPEC_TYPE_URL
from containerd_py.services.containers import ContainersService
from tests.unit.services_stack import Stack, code, md

SPEC = json.dumps({"ociVersion": "1.1.0", "process": {"args": ["sh"]}}).encode()


@pytest.fixture
def ctr(stack: Stack) -> containers_pb2_grpc.ContainersStub:
    return stack.stub(containers_pb2_grpc.ContainersStub)


def container(cid: str = "c1", **kw) -> pb.Container:
    c = pb.Container(
        id=cid,
        image=kw.pop("image", "docker.io/library/busybox:latest"),
        runtime=pb.Container.Runtime(name="pyrunc"),
        spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=SPEC),
        snapshotter="native",
        snapshot_key=cid,
        **kw,
    )
    return c


def test_create_get_list_update_delete(
    ctr: containers_pb2_grpc.ContainersStub, stack: Stack
) -> None:
    opts = any_pb2.Any(type_url="example/Options", value=b"\x01")
    c = container(labels={"app": "web"}, extensions={"ext": any_pb2.Any(type_url="e", value=b"2")})
    c.runtime.options.CopyFrom(opts)
    with stack.exchange.subscribe(['topic~="^/containers/"']) as sub:
        made = ctr.Create(pb.CreateRequest(container=c), metadata=md()).container
        assert made.created_at.seconds > 0 and made.spec.value == SPEC
        assert made.spec.type_url == SPEC_TYPE_URL and made.runtime.options == opts
        assert made.extensions["ext"].value == b"2"
        ctr.Create(pb.CreateRequest(container=container("c2", image="alpine")), metadata=md())

        got = ctr.Get(pb.GetRequest(id="c1"), metadata=md()).container
        assert got.labels == {"app": "web"} and got.snapshot_key == "c1"
        all_ids = [x.id for x in ctr.List(pb.ListRequest(), metadata=md()).containers]
        assert all_ids == ["c1", "c2"]
        web = ctr.List(pb.ListRequest(filters=["labels.app==web"]), metadata=md()).containers
        assert [x.id for x in web] == ["c1"]
        streamed = [r.container.id for r in ctr.ListStream(pb.ListStreamRequest(), metadata=md())]
        assert streamed == ["c1", "c2"]

        change = pb.Container(id="c1", labels={"tier": "front"}, image="other")
        up = ctr.Update(
            pb.UpdateRequest(container=change, update_mask={"paths": ["labels.tier"]}),
            metadata=md(),
        ).container
        assert up.labels == {"app": "web", "tier": "front"} and up.image == got.image
        up = ctr.Update(
            pb.UpdateRequest(container=change, update_mask={"paths": ["image", "snapshotter"]}),
            metadata=md(),
        ).container
        assert up.image == "other" and up.snapshotter == "native"

        ctr.Delete(pb.DeleteRequest(id="c1"), metadata=md())
        topics = [sub.get(timeout=5).topic for _ in range(5)]
        assert topics == [
            "/containers/create",
            "/containers/create",
            "/containers/update",
            "/containers/update",
            "/containers/delete",
        ]
    assert code(ctr.Get, pb.GetRequest(id="c1"), metadata=md()) == grpc.StatusCode.NOT_FOUND
    assert stack.gc.wait_idle() and stack.gc.runs >= 1


def test_namespaces_partition_containers(ctr: containers_pb2_grpc.ContainersStub) -> None:
    ctr.Create(pb.CreateRequest(container=container()), metadata=md("a"))
    ctr.Create(pb.CreateRequest(container=container()), metadata=md("b"))
    ctr.Delete(pb.DeleteRequest(id="c1"), metadata=md("a"))
    assert [c.id for c in ctr.List(pb.ListRequest(), metadata=md("b")).containers] == ["c1"]


def test_bad_requests(ctr: containers_pb2_grpc.ContainersStub) -> None:
    ctr.Create(pb.CreateRequest(container=container()), metadata=md())
    cases = [
        (ctr.Create, pb.CreateRequest(container=container()), grpc.StatusCode.ALREADY_EXISTS),
        (
            ctr.Create,
            pb.CreateRequest(container=container("bad/id")),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            ctr.Create,
            pb.CreateRequest(container=pb.Container(id="nospec", runtime={"name": "pyrunc"})),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (ctr.Get, pb.GetRequest(id=""), grpc.StatusCode.INVALID_ARGUMENT),
        (ctr.Delete, pb.DeleteRequest(id="nope"), grpc.StatusCode.NOT_FOUND),
        (
            ctr.Update,
            pb.UpdateRequest(
                container=pb.Container(id="c1", runtime={"name": "runc"}),
                update_mask={"paths": ["runtime"]},
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            ctr.Update,
            pb.UpdateRequest(container=pb.Container(id="c1"), update_mask={"paths": ["bogus"]}),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (ctr.List, pb.ListRequest(filters=["labels.=="]), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for call, req, want in cases:
        assert code(call, req, metadata=md()) == want, req
    assert code(ctr.List, pb.ListRequest()) == grpc.StatusCode.INVALID_ARGUMENT  # no namespace
    assert [c.id for c in ctr.List(pb.ListRequest(), metadata=md()).containers] == ["c1"]


def test_delete_refused_while_a_task_exists(stack: Stack) -> None:
    service = ContainersService(
        ContainerStore(stack.db), stack.exchange, has_task=lambda ns, cid: True
    )
    with namespaces.using("default"):
        service.Create(pb.CreateRequest(container=container()), None)  # type: ignore[arg-type]
        with pytest.raises(errdefs.FailedPrecondition):
            service.Delete(pb.DeleteRequest(id="c1"), None)  # type: ignore[arg-type]
