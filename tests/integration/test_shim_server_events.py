"""The shim's events reach a real pycontainerd (tests/daemon.py) through Events/Forward, in
order and with their payloads; a daemon that is down never slows the shim or its container,
and a restarted one gets the next events; an OOM kill is reported as /tasks/oom."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containerd_py.client import Event
from tests.daemon import Daemon
from tests.integration.test_shim_server import (  # the shim helpers and fixtures
    COUNTER,
    Shim,
    log_lines,
    make,
    rt,
    shims,
    wait_for,
)
from tests.runtimes import Runtime

pytestmark = [pytest.mark.root]
__all__ = ["make", "rt", "shims"]  # fixtures, imported to be used here


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    d = Daemon(short_tmp)
    try:
        yield d.start()
    finally:
        d.close()


class Collector:
    """Events of one namespace, read in a thread from a subscription."""

    def __init__(self, d: Daemon, namespace: str) -> None:
        self.client = d.client()
        self.stream = self.client.events(f'namespace=="{namespace}",topic~="^/tasks/"')
        self.events: list[Event] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for ev in self.stream:
                self.events.append(ev)
        except Exception:
            pass

    def topics(self) -> list[str]:
        return [e.topic for e in self.events]

    def wait_topic(self, topic: str, count: int = 1, timeout: float = 15.0) -> list[Event]:
        wait_for(lambda: self.topics().count(topic) >= count, timeout, f"{count} x {topic}")
        return [e for e in self.events if e.topic == topic]

    def close(self) -> None:
        self.stream.close()
        self.client.close()


def test_events_are_forwarded_in_order(rt: Runtime, shims: Any, make: Any, daemon: Daemon) -> None:
    ns = f"ns-{rt.name}"
    col = Collector(daemon, ns)
    try:
        s = shims(make(["sleep", "300"]), namespace=ns, daemon_address=daemon.address)
        s.start()
        pid = s.create()
        s.start_task()
        s.exec("e1", ["sh", "-c", "exit 4"])
        epid = s.start_task("e1")
        assert s.wait("e1").exit_status == 4
        s.delete("e1")
        s.call("Pause", _pb().PauseRequest(id=s.id))
        s.call("Resume", _pb().ResumeRequest(id=s.id))
        s.kill(signal.SIGKILL)
        assert s.wait().exit_status == 137
        s.delete()
        col.wait_topic("/tasks/delete", 2)
        assert col.topics() == [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/delete",
            "/tasks/paused",
            "/tasks/resumed",
            "/tasks/exit",
            "/tasks/delete",
        ]
        by = col.events
        assert all(e.namespace == ns for e in by)
        assert by[0].payload_dict()["pid"] == pid
        assert by[0].payload_dict()["container_id"] == s.id
        assert by[3].payload_dict() == {"container_id": s.id, "exec_id": "e1", "pid": epid}
        exec_exit = by[4].payload_dict()
        assert (exec_exit["id"], exec_exit["exit_status"], exec_exit["pid"]) == ("e1", 4, epid)
        init_exit = by[8].payload_dict()
        assert (init_exit["id"], init_exit["exit_status"], init_exit["pid"]) == (s.id, 137, pid)
        # The exit's envelope carries when it happened, not when it was delivered.
        assert abs(by[8].timestamp.timestamp() - time.time()) < 30
        assert by[9].payload_dict()["exit_status"] == 137
    finally:
        col.close()


def _pb() -> Any:
    from containerd_py.api.runtime.task.v1 import shim_pb2

    return shim_pb2


def test_a_daemon_that_is_down_blocks_nothing(
    rt: Runtime, shims: Any, make: Any, daemon: Daemon
) -> None:
    ns = f"down-{rt.name}"
    s = shims(make(COUNTER), namespace=ns, daemon_address=daemon.address)
    s.start()
    daemon.kill9()
    t0 = time.monotonic()
    s.create()
    s.start_task()
    assert time.monotonic() - t0 < 10  # the runtime's time, no event delivery in the way
    n = len(log_lines(s.log_path))
    wait_for(lambda: len(log_lines(s.log_path)) > n + 5, 10, "output while the daemon is down")
    for name, req in [
        ("Pause", _pb().PauseRequest(id=s.id)),
        ("Resume", _pb().ResumeRequest(id=s.id)),
        ("Kill", _pb().KillRequest(id=s.id, signal=9)),
    ]:
        t = time.monotonic()
        s.call(name, req)
        assert time.monotonic() - t < 2.5, f"{name} waited for the daemon"
    assert s.wait().exit_status == 137
    s.delete()
    # The daemon comes back: the shim's next events reach it.
    daemon.start()
    col = Collector(daemon, ns)
    try:
        s2 = Shim(s.rt, s.bundle, s.socket_dir, namespace=ns, cid=s.rt.new_id())
        s2.address, s2.pid = s.address, s.pid
        s2.create()
        # Events from the outage may arrive too (late, while their retries last): fine.
        wait_for(
            lambda: any(
                e.topic == "/tasks/create" and e.payload_dict()["container_id"] == s2.id
                for e in list(col.events)
            ),
            20,
            "the create event of the task made after the restart",
        )
        s2.kill(signal.SIGKILL)
        s2.wait()
        s2.delete()
        s2.close_channel()
    finally:
        col.close()


def test_oom_kill_is_an_event(rt: Runtime, shims: Any, make: Any, daemon: Daemon) -> None:
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/memory.stat").parent.joinpath("cgroup.controllers").exists()
    ):
        pytest.skip("no memory cgroup")

    def edit(cfg: dict[str, Any]) -> None:
        cfg["linux"].setdefault("resources", {})["memory"] = {"limit": 32 * 2**20}

    ns = f"oom-{rt.name}"
    col = Collector(daemon, ns)
    try:
        # dd's 256 MiB buffer, filled from /dev/zero, cannot fit in 32 MiB.
        bundle = make(["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"], edit=edit)
        s = shims(bundle, namespace=ns, daemon_address=daemon.address)
        s.start()
        s.create()
        s.start_task()
        assert s.wait().exit_status == 137
        ev = col.wait_topic("/tasks/oom")[0]
        assert ev.payload_dict() == {"container_id": s.id}
        s.delete()
    finally:
        col.close()
