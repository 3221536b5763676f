"""pycontainerd's first services through a real daemon process: Version, Introspection,
Namespaces, the namespace header, and requests that must never take the daemon down."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import grpc
import pytest

from containerd_py import errdefs
from containerd_py.api.events.v1 import task_pb2
from containerd_py.api.services.events.v1 import events_pb2, events_pb2_grpc
from containerd_py.api.services.namespaces.v1 import namespaces_pb2
from containerd_py.api.services.version.v1 import version_pb2
from containerd_py.metadata.containers import Container, ContainerStore, RuntimeInfo
from containerd_py.metadata.db import MetadataDB
from tests.daemon import ROOT, Daemon, running_daemon

NAMESPACES = "/pycontainerd.services.namespaces.v1.Namespaces"


@pytest.fixture
def daemon(short_tmp: Path):
    with running_daemon(short_tmp) as d:
        yield d


@pytest.fixture
def channel(daemon: Daemon):
    ch = grpc.insecure_channel("unix:" + daemon.address)
    yield ch
    ch.close()


def test_version_and_revision(daemon: Daemon) -> None:
    with daemon.client() as c:
        v = c.version()
    assert v.version == importlib.metadata.version("pydocker-stack")
    if (ROOT / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert v.revision == head


def test_introspection_server_and_plugins(daemon: Daemon) -> None:
    with daemon.client() as c:
        info = c.server()
        plugins = c.plugins()
        only_events = c.plugins("id==events")
        with pytest.raises(errdefs.InvalidArgument) as bad:
            c.plugins("id==")
    assert info.pid == daemon.pid
    assert info.pidns > 0
    assert (daemon.root / "introspection" / "uuid").read_text().strip() == info.uuid
    ids = {(p.type, p.id) for p in plugins}
    for service in ("version", "introspection", "namespaces", "events", "runtime-events"):
        assert ("io.pycontainerd.grpc.v1", service) in ids
    assert ("io.pycontainerd.event.v1", "exchange") in ids
    assert [p.id for p in only_events] == ["events"]
    assert "invalid filter" in str(bad.value)


def test_namespaces_create_list_get_labels_delete(daemon: Daemon) -> None:
    with daemon.client() as c:
        ns = c.namespaces()
        assert ns.list() == []
        created = ns.create("web", {"team": "a", "tier": "front"})
        assert (created.name, dict(created.labels)) == ("web", {"team": "a", "tier": "front"})
        ns.create("k8s.io")
        assert [n.name for n in ns.list()] == ["k8s.io", "web"]
        assert [n.name for n in ns.list("labels.team==a")] == ["web"]
        assert dict(ns.get("web").labels) == {"team": "a", "tier": "front"}

        # One label set, one removed (empty value), the rest kept.
        changed = ns.set_labels("web", {"team": "b", "tier": ""})
        assert dict(changed.labels) == {"team": "b"}
        # No update mask: the labels are replaced as a whole.
        assert dict(ns.update("web", {"only": "this"}).labels) == {"only": "this"}

        with pytest.raises(errdefs.AlreadyExists, match="already exists"):
            ns.create("web")
        with pytest.raises(errdefs.InvalidArgument, match="invalid namespace name"):
            ns.create("no/slashes")
        with pytest.raises(errdefs.InvalidArgument, match="only labels"):
            ns.update("web", {}, ["name"])
        with pytest.raises(errdefs.NotFound):
            ns.get("nope")

        ns.delete("web")
        with pytest.raises(errdefs.NotFound):
            ns.delete("web")
        assert [n.name for n in ns.list()] == ["k8s.io"]


def test_a_namespace_in_use_cannot_be_deleted(daemon: Daemon) -> None:
    # The containers service is not there yet: write the container record the way it will,
    # through the metadata store, into the daemon's database.
    db = MetadataDB(daemon.root / "metadata.db")
    try:
        ContainerStore(db).create(
            "busy", Container("c1", RuntimeInfo("io.containerd.runc.v2"), spec=b"{}")
        )
    finally:
        db.close()
    with daemon.client() as c:
        with pytest.raises(errdefs.FailedPrecondition, match=r"must be empty.*containers"):
            c.namespaces().delete("busy")
        assert [n.name for n in c.namespaces().list()] == ["busy"]


def test_namespace_changes_are_published(daemon: Daemon) -> None:
    with daemon.client() as c, c.events('topic~="^/namespaces/"') as events:
        ns = c.namespaces()
        ns.create("team-a", {"x": "1"})
        ns.set_labels("team-a", {"y": "2"})
        ns.delete("team-a")
        got = [next(events) for _ in range(3)]
    assert [(e.namespace, e.topic) for e in got] == [
        ("team-a", "/namespaces/create"),
        ("team-a", "/namespaces/update"),
        ("team-a", "/namespaces/delete"),
    ]
    assert got[0].payload_dict() == {"name": "team-a", "labels": {"x": "1"}}
    assert got[1].payload_dict() == {"name": "team-a", "labels": {"x": "1", "y": "2"}}


def test_missing_namespace_header_is_invalid_argument(channel: grpc.Channel) -> None:
    stub = events_pb2_grpc.EventsStub(channel)
    req = events_pb2.PublishRequest(topic="/test/x")
    req.event.Pack(task_pb2.TaskOOM(container_id="c"))
    with pytest.raises(grpc.RpcError) as err:
        stub.Publish(req, timeout=5)  # no containerd-namespace metadata
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "namespace is required" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.Publish(req, metadata=[("containerd-namespace", "a..b")], timeout=5)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid namespace name" in err.value.details()
    # Services that are not namespaced do not ask for it.
    version = channel.unary_unary(
        "/pycontainerd.services.version.v1.Version/Version",
        request_serializer=version_pb2.VersionRequest.SerializeToString,
        response_deserializer=version_pb2.VersionResponse.FromString,
    )
    assert version(version_pb2.VersionRequest(), timeout=5).version


def _raw(channel: grpc.Channel, method: str):
    """A unary call that sends and receives raw bytes, whatever the method expects."""
    return channel.unary_unary(method)


@pytest.mark.parametrize(
    ("method", "payload", "codes"),
    [
        # Bytes that are not a protobuf message at all.
        (f"{NAMESPACES}/Create", b"\xff\xff\xff\xff", {grpc.StatusCode.INTERNAL}),
        (f"{NAMESPACES}/List", b"\x0a\xff\xff\xff\x0f", {grpc.StatusCode.INTERNAL}),
        # Valid protobuf, wrong message: a VersionRequest (no bytes) where a CreateRequest
        # belongs parses as an empty request, refused for what it lacks.
        (
            f"{NAMESPACES}/Create",
            version_pb2.VersionRequest().SerializeToString(),
            {grpc.StatusCode.INVALID_ARGUMENT},
        ),
        # Field 1 with the wrong wire type: kept as an unknown field, so the name is empty.
        (f"{NAMESPACES}/Get", b"\x08\x01", {grpc.StatusCode.INVALID_ARGUMENT}),
        ("/pycontainerd.services.events.v1.Events/Forward", b"\x0a\x03\x12\x01", None),
        ("/pycontainerd.runtime.events.v1.Events/Forward", b"", {grpc.StatusCode.INVALID_ARGUMENT}),
        ("/no.such.Service/Method", b"", {grpc.StatusCode.UNIMPLEMENTED}),
    ],
)
def test_bad_requests_never_kill_the_daemon(
    daemon: Daemon, channel: grpc.Channel, method: str, payload: bytes, codes
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _raw(channel, method)(payload, metadata=[("containerd-namespace", "default")], timeout=5)
    if codes is not None:
        assert err.value.code() in codes, err.value.details()
    assert err.value.code() is not grpc.StatusCode.UNKNOWN, err.value.details()
    with daemon.client() as c:
        assert c.version().version  # still serving
    assert daemon.running


def test_garbage_to_a_stream_and_an_oversized_request(daemon: Daemon, channel) -> None:
    subscribe = channel.unary_stream("/pycontainerd.services.events.v1.Events/Subscribe")
    with pytest.raises(grpc.RpcError) as err:
        list(subscribe(b"\xff\xfe\xfd", timeout=5))
    assert err.value.code() is grpc.StatusCode.INTERNAL
    big = namespaces_pb2.CreateRequest(
        namespace=namespaces_pb2.Namespace(name="big", labels={"k": "v" * (17 << 20)})
    ).SerializeToString()
    with pytest.raises(grpc.RpcError) as err:
        _raw(channel, f"{NAMESPACES}/Create")(big, timeout=20)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    with daemon.client() as c:
        assert c.version().version
        assert c.namespaces().list() == []
    logs = daemon.logs()
    assert "Traceback" not in logs
    assert "rejected a request that does not decode" in logs


def test_many_clients_at_once(daemon: Daemon) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> str:
        with daemon.client() as c:
            c.namespaces().create(f"ns{i}")
            c.version()
            return c.namespaces().get(f"ns{i}").name

    with ThreadPoolExecutor(16) as pool:
        names = list(pool.map(work, range(64)))
    assert sorted(names) == sorted(f"ns{i}" for i in range(64))
