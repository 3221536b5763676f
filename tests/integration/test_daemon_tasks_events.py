"""The order of a task's events as a subscriber of the daemon sees them.

A process that exits at once (`true`) races its own start: the shim learns of the exit
while `Start` is still on its way back. containerd's shim holds such an exit until the
start event is out; ours must too, so that every subscriber sees, per task,

    /tasks/create, /tasks/start, /tasks/exit, /tasks/delete

and per exec process `/tasks/exec-added`, `/tasks/exec-started`, `/tasks/exit`,
`/tasks/delete`. Many short tasks and execs make the race likely to show when it is there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containerd_py.client import Client, Event
from tests.daemon import Daemon
from tests.integration.test_daemon_tasks import IMAGE, _bundles, import_busybox, task_daemon
from tests.task_runtime import runtimes_under_test

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs /bin/busybox"),
]

ROUNDS = 12  # tasks of `true`, and execs of `true`, per runtime


class Recorder:
    """Every task event of the daemon, read by a thread from one subscription."""

    def __init__(self, client: Client) -> None:
        self.stream = client.events('topic~="^/tasks/"')
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for ev in self.stream:
                with self._lock:
                    self.events.append(ev)
        except Exception:
            pass  # the stream ends with close()

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(e.topic, e.payload_dict()) for e in self.events]

    def wait_for(self, cond: Any, timeout: float = 30.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.snapshot()
            if cond(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def close(self) -> None:
        self.stream.close()
        self._thread.join(5)


@pytest.fixture(params=runtimes_under_test())
def runtime_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with task_daemon(short_tmp) as d:
        with d.client() as c:
            import_busybox(c, short_tmp)
        yield d


def _per_process(
    events: list[tuple[str, dict[str, Any]]], container_id: str
) -> dict[str, list[str]]:
    """Topics of one container's events, per process (the init under its container id)."""
    out: dict[str, list[str]] = {}
    for topic, ev in events:
        if ev.get("container_id") != container_id:
            continue
        # exec-added/-started name the exec in exec_id; exit/delete in id; the rest is init.
        proc = ev.get("exec_id") or ev.get("id") or container_id
        out.setdefault(proc, []).append(topic)
    return out


def test_exit_never_comes_before_start(daemon: Daemon, runtime_name: str) -> None:
    ids = [f"t{i}" for i in range(ROUNDS)]
    with daemon.client() as client:
        rec = Recorder(client)
        try:
            tasks = client.tasks()
            for cid in ids:
                client.new_container(cid, IMAGE, runtime=runtime_name, args=["true"])
                tasks.create(cid)
                tasks.start(cid)
                assert tasks.wait(cid, timeout=30).status == 0
                tasks.delete(cid)
                client.delete_container(cid)
            got = rec.wait_for(lambda ev: sum(t == "/tasks/delete" for t, _ in ev) >= ROUNDS)
        finally:
            rec.close()
    for cid in ids:
        assert _per_process(got, cid) == {
            cid: ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
        }, cid
    assert _bundles(daemon.state) == []


def test_exec_exit_never_comes_before_exec_started(daemon: Daemon, runtime_name: str) -> None:
    execs = [f"e{i}" for i in range(ROUNDS)]
    with daemon.client() as client:
        tasks = client.tasks()
        client.new_container("x", IMAGE, runtime=runtime_name, args=["sleep", "1000"])
        tasks.create("x")
        tasks.start("x")
        spec = client.containers().get("x").spec_dict()
        assert spec is not None
        rec = Recorder(client)
        try:
            for eid in execs:
                tasks.exec("x", eid, dict(spec["process"], args=["true"]))
                tasks.start("x", eid)
                assert tasks.wait("x", eid, timeout=30).status == 0
                tasks.delete_process("x", eid)
            got = rec.wait_for(lambda ev: sum(t == "/tasks/delete" for t, _ in ev) >= ROUNDS)
        finally:
            rec.close()
        tasks.kill("x", 9, all=True)
        assert tasks.wait("x", timeout=30).status == 137
        tasks.delete("x")
        client.delete_container("x")
    per = _per_process(got, "x")
    for eid in execs:
        assert per[eid] == [
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/delete",
        ], eid
