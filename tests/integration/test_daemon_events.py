"""The event exchange through a real daemon: Subscribe with filters, Publish, Forward
from clients and from shims, and subscriptions that end without starving the server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest

from containerd_py import errdefs
from containerd_py.api.events.v1 import task_pb2
from containerd_py.api.runtime.events.v1 import events_pb2 as runtime_pb
from containerd_py.api.runtime.events.v1 import events_pb2_grpc as runtime_grpc
from containerd_py.api.types.v1.event_pb2 import Envelope
from containerd_py.client import Event
from tests.daemon import ROOT, Daemon, running_daemon


@pytest.fixture
def daemon(short_tmp: Path):
    with running_daemon(short_tmp) as d:
        yield d


def next_or_fail(stream, timeout: float = 10.0) -> Event:
    """The next event, failing the test (not hanging) when none comes."""
    result: list[Event | BaseException] = []

    def read() -> None:
        try:
            result.append(next(stream))
        except BaseException as e:  # handed to the test thread
            result.append(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        stream.close()
        pytest.fail(f"no event within {timeout}s")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_subscribe_with_a_filter_then_publish(daemon: Daemon) -> None:
    with daemon.client(namespace="pydocker") as c, c.events('topic=="/tasks/exit"') as events:
        c.publish("/tasks/start", task_pb2.TaskStart(container_id="web", pid=10))
        c.publish("/tasks/exit", task_pb2.TaskExit(container_id="web", pid=10, exit_status=137))
        ev = next_or_fail(events)
    assert (ev.namespace, ev.topic) == ("pydocker", "/tasks/exit")
    assert ev.payload() == task_pb2.TaskExit(container_id="web", pid=10, exit_status=137)
    assert ev.timestamp.year >= 2024


def test_subscriptions_see_every_namespace_unless_filtered(daemon: Daemon) -> None:
    with (
        daemon.client() as c,
        c.events() as everything,
        c.events("namespace==b", "event.container_id==x1") as some,
    ):
        for ns, cid in [("a", "x1"), ("b", "x2"), ("a", "x3")]:
            c.with_namespace(ns).publish("/tasks/oom", task_pb2.TaskOOM(container_id=cid))
        assert [next_or_fail(everything).payload().container_id for _ in range(3)] == [
            "x1",
            "x2",
            "x3",
        ]
        assert [next_or_fail(some).payload().container_id for _ in range(2)] == ["x1", "x2"]


def test_forward_from_a_shim_keeps_namespace_and_time(daemon: Daemon) -> None:
    env = Envelope(namespace="k8s.io", topic="/tasks/exit")
    env.timestamp.FromSeconds(1_700_000_000)
    env.event.Pack(task_pb2.TaskExit(container_id="pod1", exit_status=1))
    with daemon.client() as c, c.events('topic~="^/tasks/"') as events:
        # The shim-facing service, as a shim calls it: no namespace header needed.
        with grpc.insecure_channel("unix:" + daemon.address) as ch:
            runtime_grpc.EventsStub(ch).Forward(runtime_pb.ForwardRequest(envelope=env), timeout=5)
        c.forward(env)  # and the clients' Forward
        got = [next_or_fail(events) for _ in range(2)]
    for ev in got:
        assert (ev.namespace, ev.topic) == ("k8s.io", "/tasks/exit")
        assert ev.timestamp.timestamp() == 1_700_000_000
        assert ev.payload_dict() == {"container_id": "pod1", "exit_status": 1}


@pytest.mark.parametrize(
    ("topic", "message"),
    [("tasks/exit", "must start with '/'"), ("/a//b", "component"), ("", "must not be empty")],
)
def test_publish_rejects_bad_topics(daemon: Daemon, topic: str, message: str) -> None:
    with daemon.client() as c, pytest.raises(errdefs.InvalidArgument, match=message):
        c.publish(topic, task_pb2.TaskOOM())


def test_a_bad_filter_fails_the_subscribe_call(daemon: Daemon) -> None:
    with daemon.client() as c, pytest.raises(errdefs.InvalidArgument, match="invalid filter"):
        c.events('topic~="("')


def test_closed_subscriptions_free_their_server_thread(short_tmp: Path) -> None:
    # 8 workers: at most 4 subscribers, the rest of the pool stays for other calls.
    cfg = short_tmp / "small.toml"
    cfg.write_text("[grpc]\nmax_workers = 8\n")
    with running_daemon(short_tmp, args=["--config", str(cfg)]) as d, d.client() as c:
        for _ in range(12):  # more than the limit: each close must give its slot back
            s = c.events()
            s.close()
        held = []
        for _ in range(20):
            try:
                held.append(c.events())
            except errdefs.Unavailable as e:
                assert "too many event subscribers" in str(e)
                break
            if len(held) > 4:
                break
        assert len(held) == 4
        assert c.version().version  # the server still has threads for everything else
        c.publish("/test/ping", task_pb2.TaskOOM(container_id="p"))
        for s in held:
            assert next_or_fail(s).topic == "/test/ping"
            s.close()


def test_a_client_that_dies_is_unsubscribed(short_tmp: Path) -> None:
    """Subscribers whose process dies (no cancel) give their slot back: four dead ones,
    then four live ones fit under a limit of four."""
    cfg = short_tmp / "small.toml"
    cfg.write_text("[grpc]\nmax_workers = 8\n")
    code = textwrap.dedent(
        """
        import os, sys
        from containerd_py.client import Client
        s = Client(sys.argv[1]).events()
        print("subscribed", flush=True)
        os._exit(0)
        """
    )
    with running_daemon(short_tmp, args=["--config", str(cfg)]) as d, d.client() as c:
        for _ in range(4):
            r = subprocess.run(
                [sys.executable, "-c", code, d.address],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert r.stdout.strip() == "subscribed", r.stderr
        held = []
        deadline = time.monotonic() + 15
        while len(held) < 4:
            try:
                held.append(c.events())
            except errdefs.Unavailable:
                assert time.monotonic() < deadline, "dead subscribers were never dropped"
                time.sleep(0.2)
        c.publish("/test/ping", task_pb2.TaskOOM())
        for s in held:
            assert next_or_fail(s).topic == "/test/ping"
            s.close()


def test_a_daemon_killed_under_a_stream_is_a_lost_connection(daemon: Daemon) -> None:
    from containerd_py.client import ConnectError

    with daemon.client() as c:
        stream = c.events()
        daemon.kill9()
        with pytest.raises(
            ConnectError, match=f"connection to pycontainerd at {daemon.address} lost"
        ):
            next_or_fail(stream)
        stream.close()
