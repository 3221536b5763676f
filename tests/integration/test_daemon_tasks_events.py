"""The order of a task's events as a subscriber of the daemon sees them.

A process that exits at once (`true`) races its own start: the shim learns of the exit
while `Start` is still on its way back. containerd's shim holds such an exit until the
start event is out; ours must too, so that every subscriber sees, per task,

    /tasks/create, /tasks/start, /tasks/exit, /tasks/delete

and per exec process `/tasks/exec-added`, `/tasks/exec-started`, `/tasks/exit`,
`/tasks/delete`. Many short tasks and execs make the race likely to show when it is there.

And the OOM event end to end: a task over its memory limit is reported by the shim's OOM
watch through the daemon as /tasks/oom, and exits 137.
"""

from __future__ import annotations

import dataclasses
import json
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


def test_oom_kill_is_published_and_the_exit_is_137(daemon: Daemon, runtime_name: str) -> None:
    """A task over its memory limit: the daemon's subscribers get /tasks/oom for it, and
    the task exits 137 (SIGKILL by the OOM killer)."""
    if not (Path("/sys/fs/cgroup/memory").is_dir() or Path("/sys/fs/cgroup/memory.max").exists()):
        pytest.skip("no memory cgroup")
    with daemon.client() as client:
        # dd's 256 MiB buffer, filled from /dev/zero, cannot fit in 32 MiB (nor in swap).
        c = client.new_container(
            "oom",
            IMAGE,
            runtime=runtime_name,
            args=["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
        )
        spec = json.loads(c.spec or b"{}")
        spec["linux"].setdefault("resources", {})["memory"] = {"limit": 32 << 20, "swap": 32 << 20}
        client.containers().update(dataclasses.replace(c, spec=json.dumps(spec).encode()), ["spec"])
        rec = Recorder(client)
        try:
            tasks = client.tasks()
            tasks.create("oom")
            tasks.start("oom")
            assert tasks.wait("oom", timeout=60).status == 137
            got = rec.wait_for(
                lambda ev: (
                    ("/tasks/oom", {"container_id": "oom"}) in ev
                    and any(t == "/tasks/exit" for t, _ in ev)
                )
            )
        finally:
            rec.close()
        assert ("/tasks/oom", {"container_id": "oom"}) in got
        exits = [e for t, e in got if t == "/tasks/exit"]
        assert [(e["container_id"], e["exit_status"]) for e in exits] == [("oom", 137)]
        assert tasks.metrics("id==oom") == {}  # stopped: no stats
        tasks.delete("oom")
        client.delete_container("oom")
