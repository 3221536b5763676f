"""The shim's publisher against an in-process Events/Forward server on a unix socket (up,
down, late, refusing), and the OOM watch's cgroup lookup and v2 counter on fake trees."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from containerd_py.api.events.v1 import task_pb2 as events
from containerd_py.api.runtime.events.v1 import events_pb2, events_pb2_grpc
from shim import publisher
from shim.publisher import OOMWatcher, Publisher, memory_cgroup, oom_kill_count


class Sink(events_pb2_grpc.EventsServicer):
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.got: list[Any] = []
        self.refuse = refuse or set()
        self.cond = threading.Condition()

    def Forward(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.envelope.topic in self.refuse:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no")
        with self.cond:
            self.got.append(request.envelope)
            self.cond.notify_all()
        return events_pb2.ForwardResponse()

    def wait(self, n: int, timeout: float = 10.0) -> list[Any]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return list(self.got)


class Daemon:
    def __init__(self, path: str, sink: Sink) -> None:
        self.path = path
        self.sink = sink
        self.server: grpc.Server | None = None

    def start(self) -> Daemon:
        s = grpc.server(ThreadPoolExecutor(4))
        events_pb2_grpc.add_EventsServicer_to_server(self.sink, s)
        s.add_insecure_port(f"unix:{self.path}")
        s.start()
        self.server = s
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(0).wait()
            self.server = None


@pytest.fixture
def sock(short_tmp: Path) -> str:
    return str(short_tmp / "d.sock")


@pytest.fixture
def pubs() -> Iterator[list[Publisher]]:
    made: list[Publisher] = []
    yield made
    for p in made:
        p.close(0.5)


def test_envelope() -> None:
    env = publisher.envelope("k8s.io", "/tasks/exit", events.TaskExit(exit_status=3), 5 * 10**9)
    assert (env.namespace, env.topic, env.timestamp.seconds) == ("k8s.io", "/tasks/exit", 5)
    assert env.event.type_url.endswith("pycontainerd.events.v1.TaskExit")
    got = events.TaskExit()
    assert env.event.Unpack(got) and got.exit_status == 3


def test_events_arrive_in_order(sock: str, pubs: list[Publisher]) -> None:
    sink = Sink()
    d = Daemon(sock, sink).start()
    try:
        p = Publisher(sock, "default")
        pubs.append(p)
        for i in range(20):
            p.publish("/tasks/start", events.TaskStart(container_id="c", pid=i))
        got = sink.wait(20)
        pids = []
        for env in got:
            ev = events.TaskStart()
            env.event.Unpack(ev)
            pids.append(ev.pid)
        assert pids == list(range(20))
        assert all(e.namespace == "default" for e in got)
    finally:
        d.stop()


def test_a_daemon_that_is_down_never_blocks(sock: str, pubs: list[Publisher]) -> None:
    p = Publisher(sock, "default", max_queue=4, attempts=2, backoff=0.01, call_timeout=0.2)
    pubs.append(p)
    t0 = time.monotonic()
    for _ in range(50):
        p.publish("/tasks/oom", events.TaskOOM(container_id="c"))
    assert time.monotonic() - t0 < 0.5
    # Over the bound: dropped at once. The rest: dropped after their attempts.
    deadline = time.monotonic() + 10
    while p.dropped < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.dropped == 50 and p.sent == 0


def test_a_daemon_that_comes_back_gets_the_event(sock: str, pubs: list[Publisher]) -> None:
    sink = Sink()
    p = Publisher(sock, "default", attempts=20, backoff=0.05, max_backoff=0.2, call_timeout=0.5)
    pubs.append(p)
    p.publish("/tasks/exit", events.TaskExit(container_id="c", exit_status=137))
    time.sleep(0.5)
    d = Daemon(sock, sink).start()
    try:
        (env,) = sink.wait(1)
        assert env.topic == "/tasks/exit"
    finally:
        d.stop()


def test_a_refused_event_is_dropped_and_the_next_goes(sock: str, pubs: list[Publisher]) -> None:
    sink = Sink(refuse={"/tasks/paused"})
    d = Daemon(sock, sink).start()
    try:
        p = Publisher(sock, "default")
        pubs.append(p)
        p.publish("/tasks/paused", events.TaskPaused(container_id="c"))
        p.publish("/tasks/resumed", events.TaskResumed(container_id="c"))
        (env,) = sink.wait(1)
        assert env.topic == "/tasks/resumed"
        assert p.dropped == 1
    finally:
        d.stop()


def test_close_delivers_what_is_queued(sock: str) -> None:
    sink = Sink()
    d = Daemon(sock, sink).start()
    try:
        p = Publisher(sock, "default")
        for i in range(10):
            p.publish("/tasks/delete", events.TaskDelete(container_id=f"c{i}"))
        p.close(5.0)
        assert len(sink.got) == 10
    finally:
        d.stop()


def test_no_address_no_thread() -> None:
    p = Publisher("", "default")
    p.publish("/tasks/oom", events.TaskOOM(container_id="c"))
    assert p._thread is None
    p.close()


# -- OOM -------------------------------------------------------------------------------------


def _proc(tmp: Path, cgroup: str, mountinfo: str) -> Path:
    (tmp / "proc" / "42").mkdir(parents=True)
    (tmp / "proc" / "42" / "cgroup").write_text(cgroup)
    (tmp / "proc" / "self").mkdir()
    (tmp / "proc" / "self" / "mountinfo").write_text(mountinfo)
    return tmp / "proc"


def test_memory_cgroup_v1(tmp_path: Path) -> None:
    proc = _proc(
        tmp_path,
        "12:pids:/pytest/c1\n5:memory:/pytest/c1\n0::/pytest/c1\n",
        "35 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "36 25 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
    )
    assert memory_cgroup(42, proc=str(proc)) == ("v1", "/sys/fs/cgroup/memory/pytest/c1")


def test_memory_cgroup_v2(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "pytest" / "c1").mkdir(parents=True)
    (root / "pytest" / "c1" / "memory.events").write_text("oom 0\noom_kill 0\n")
    proc = _proc(
        tmp_path,
        "0::/pytest/c1\n",
        f"35 25 0:30 / {root} rw - cgroup2 cgroup2 rw\n",
    )
    assert memory_cgroup(42, proc=str(proc)) == ("v2", str(root / "pytest" / "c1"))


def test_memory_cgroup_none(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "1:name=systemd:/x\n", "")
    assert memory_cgroup(42, proc=str(proc)) is None
    assert memory_cgroup(43, proc=str(proc)) is None


def test_oom_kill_counts(tmp_path: Path) -> None:
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert oom_kill_count("v1", str(tmp_path)) == 3
    assert oom_kill_count("v2", str(tmp_path)) == 1
    assert oom_kill_count("v2", str(tmp_path / "gone")) == 0


def test_oom_watcher_v2_on_a_fake_tree(tmp_path: Path) -> None:
    events_file = tmp_path / "memory.events"
    events_file.write_text("oom 0\noom_kill 0\n")
    fired = threading.Event()
    w = OOMWatcher("v2", str(tmp_path), fired.set, interval=0.05)
    w.start()
    try:
        time.sleep(0.2)
        assert not fired.is_set()
        events_file.write_text("oom 1\noom_kill 1\n")
        assert fired.wait(5)
    finally:
        w.stop()
