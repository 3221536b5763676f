"""Content service over gRPC: the Write stream (stat, write, commit, resume), reads,
labels, listings, ingests, namespaces, leases, and the codes bad requests get."""

from __future__ import annotations

import hashlib
import time

import grpc
import pytest

from containerd_py.api.services.content.v1 import content_pb2 as pb
from containerd_py.api.services.content.v1 import content_pb2_grpc
from containerd_py.api.services.leases.v1 import leases_pb2, leases_pb2_grpc
from tests.unit.services_stack import Stack, code, md

DATA = b"hello content\n" * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def content(stack: Stack) -> content_pb2_grpc.ContentStub:
    return stack.stub(content_pb2_grpc.ContentStub)


def write(
    stub: content_pb2_grpc.ContentStub,
    data: bytes = DATA,
    *,
    ref: str = "ref-1",
    expected: str = DIGEST,
    ns: str = "default",
    lease: str | None = None,
    labels: dict[str, str] | None = None,
) -> list[pb.WriteResponse]:
    reqs = [
        pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref=ref, total=len(data), expected=expected),
        pb.WriteRequest(action=pb.WRITE_ACTION_WRITE, ref=ref, offset=0, data=data[:5000]),
        pb.WriteRequest(
            action=pb.WRITE_ACTION_COMMIT,
            ref=ref,
            offset=5000,
            data=data[5000:],
            total=len(data),
            expected=expected,
            labels=labels or {},
        ),
    ]
    return list(stub.Write(iter(reqs), metadata=md(ns, lease)))


def test_write_read_info_list_delete(content: content_pb2_grpc.ContentStub, stack: Stack) -> None:
    with stack.exchange.subscribe(['topic~="^/content/"']) as sub:
        responses = write(content, labels={"a": "b"})
        assert [r.action for r in responses] == [
            pb.WRITE_ACTION_STAT,
            pb.WRITE_ACTION_WRITE,
            pb.WRITE_ACTION_COMMIT,
        ]
        assert responses[0].offset == 0 and responses[0].total == len(DATA)
        assert responses[1].offset == 5000
        assert responses[2].digest == DIGEST and responses[2].offset == len(DATA)
        ev = sub.get(timeout=5)
        assert ev is not None and ev.topic == "/content/create"

    info = content.Info(pb.InfoRequest(digest=DIGEST), metadata=md()).info
    assert (info.digest, info.size, dict(info.labels)) == (DIGEST, len(DATA), {"a": "b"})
    chunks = list(content.Read(pb.ReadRequest(digest=DIGEST), metadata=md()))
    assert b"".join(c.data for c in chunks) == DATA
    part = list(content.Read(pb.ReadRequest(digest=DIGEST, offset=10, size=5), metadata=md()))
    assert [(c.offset, c.data) for c in part] == [(10, DATA[10:15])]

    listed = [i.digest for r in content.List(pb.ListRequest(), metadata=md()) for i in r.info]
    assert listed == [DIGEST]
    assert not [
        i
        for r in content.List(pb.ListRequest(filters=["labels.a==c"]), metadata=md())
        for i in r.info
    ]

    updated = content.Update(
        pb.UpdateRequest(
            info=pb.Info(digest=DIGEST, labels={"x": "y"}),
            update_mask={"paths": ["labels.x"]},
        ),
        metadata=md(),
    ).info
    assert dict(updated.labels) == {"a": "b", "x": "y"}

    content.Delete(pb.DeleteRequest(digest=DIGEST), metadata=md())
    assert (
        code(content.Info, pb.InfoRequest(digest=DIGEST), metadata=md())
        == grpc.StatusCode.NOT_FOUND
    )
    assert not stack.content.blobs.exists(DIGEST)


def test_namespaces_do_not_see_each_other(content: content_pb2_grpc.ContentStub) -> None:
    write(content, ns="a")
    assert code(content.Info, pb.InfoRequest(digest=DIGEST), metadata=md("b")) == (
        grpc.StatusCode.NOT_FOUND
    )
    # Writing the same blob in b needs no bytes: it is adopted, ALREADY_EXISTS at once.
    reqs = iter([pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref="r", expected=DIGEST)])
    assert code(content.Write, reqs, metadata=md("b")) == grpc.StatusCode.ALREADY_EXISTS
    assert content.Info(pb.InfoRequest(digest=DIGEST), metadata=md("b")).info.size == len(DATA)


def test_interrupted_write_resumes(content: content_pb2_grpc.ContentStub) -> None:
    first = [
        pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref="r", total=len(DATA), expected=DIGEST),
        pb.WriteRequest(action=pb.WRITE_ACTION_WRITE, ref="r", offset=0, data=DATA[:100]),
    ]
    list(content.Write(iter(first), metadata=md()))
    st = content.Status(pb.StatusRequest(ref="r"), metadata=md()).status
    assert (st.offset, st.total, st.expected) == (100, len(DATA), DIGEST)
    statuses = content.ListStatuses(pb.ListStatusesRequest(), metadata=md()).statuses
    assert [s.ref for s in statuses] == ["r"]
    second = [
        pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref="r"),
        pb.WriteRequest(action=pb.WRITE_ACTION_COMMIT, ref="r", offset=100, data=DATA[100:]),
    ]
    out = list(content.Write(iter(second), metadata=md()))
    assert out[0].offset == 100 and out[1].digest == DIGEST
    assert code(content.Status, pb.StatusRequest(ref="r"), metadata=md()) == (
        grpc.StatusCode.NOT_FOUND
    )


def test_abort(content: content_pb2_grpc.ContentStub) -> None:
    reqs = [pb.WriteRequest(action=pb.WRITE_ACTION_WRITE, ref="r", offset=0, data=b"abc")]
    list(content.Write(iter(reqs), metadata=md()))
    content.Abort(pb.AbortRequest(ref="r"), metadata=md())
    assert code(content.Abort, pb.AbortRequest(ref="r"), metadata=md()) == grpc.StatusCode.NOT_FOUND


def test_bad_requests(content: content_pb2_grpc.ContentStub) -> None:
    assert code(content.Info, pb.InfoRequest(digest="sha256:nope"), metadata=md()) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code(content.Info, pb.InfoRequest(digest=DIGEST)) == grpc.StatusCode.INVALID_ARGUMENT
    wrong = "sha256:" + "0" * 64
    assert code(write, content, expected=wrong) == grpc.StatusCode.INVALID_ARGUMENT
    gap = [pb.WriteRequest(action=pb.WRITE_ACTION_WRITE, ref="g", offset=7, data=b"x")]
    assert code(content.Write, iter(gap), metadata=md()) == grpc.StatusCode.INVALID_ARGUMENT
    mixed = [
        pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref="m"),
        pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref="other"),
    ]
    assert code(content.Write, iter(mixed), metadata=md()) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(content.Read, pb.ReadRequest(digest=DIGEST), metadata=md()) == (
        grpc.StatusCode.NOT_FOUND
    )
    # Still serving.
    assert write(content)[-1].digest == DIGEST


def test_second_writer_is_refused(content: content_pb2_grpc.ContentStub) -> None:
    import queue

    q: queue.Queue = queue.Queue()

    def requests():
        yield pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref="busy")
        q.get()  # hold the stream open

    call = content.Write(requests(), metadata=md())
    next(call)
    try:
        other = iter([pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref="busy")])
        assert code(content.Write, other, metadata=md()) == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        q.put(None)
        call.cancel()
    # The cancelled stream lets go of the ingest: the next writer gets it.
    deadline = time.monotonic() + 5
    while True:
        try:
            again = iter([pb.WriteRequest(action=pb.WRITE_ACTION_STAT, ref="busy")])
            (answer,) = list(content.Write(again, metadata=md()))
            assert answer.offset == 0
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline, "the ingest stayed locked"
            time.sleep(0.05)


def test_lease_keeps_written_content(content: content_pb2_grpc.ContentStub, stack: Stack) -> None:
    leases = stack.stub(leases_pb2_grpc.LeasesStub)
    lease = leases.Create(leases_pb2.CreateRequest(id="hold"), metadata=md()).lease
    write(content, lease=lease.id)
    other = b"unleased"
    write(content, other, ref="u", expected="sha256:" + hashlib.sha256(other).hexdigest())
    stack.gc.collect_now()
    listed = [i.digest for r in content.List(pb.ListRequest(), metadata=md()) for i in r.info]
    assert listed == [DIGEST]
    resources = leases.ListResources(leases_pb2.ListResourcesRequest(id="hold"), metadata=md())
    assert [(r.type, r.id) for r in resources.resources] == [("content", DIGEST)]
    leases.Delete(leases_pb2.DeleteRequest(id="hold", sync=True), metadata=md())
    assert not [i for r in content.List(pb.ListRequest(), metadata=md()) for i in r.info]
    assert not stack.content.blobs.exists(DIGEST)


def test_unknown_lease_is_not_found(content: content_pb2_grpc.ContentStub) -> None:
    assert code(write, content, lease="nope") == grpc.StatusCode.NOT_FOUND
