"""Tasks through a real daemon, on pyrunc and runc: Create (a shim per task, the rootfs
from the container's snapshot), Attach before Start (no output lost), Wait, Kill, Get,
List, Delete, the task events, and the container record refusing Delete while its task
exists.

`task_daemon` starts a daemon whose task cgroups live under this session's /pytest-<pid>,
and in `finally` kills every shim it left (its process group), runs `shim delete` in each
bundle (runtime delete --force, unmount) and removes the cgroups: nothing stays behind when
a test fails halfway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from containerd_py import errdefs
from containerd_py.client import Client
from containerd_py.runtime.task_manager import CGROUP_PARENT_ENV
from tests.daemon import ROOT, Daemon
from tests.runtimes import CGROUP_PARENT, remove_cgroup
from tests.task_runtime import daemon_args, default_runtime, runtimes_under_test

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not Path("/bin/busybox").exists() or not os.path.exists("/usr/bin/env"),
        reason="needs /bin/busybox (busybox-static)",
    ),
]

IMAGE = "docker.io/library/busybox:latest"


# -- the stack and its cleanup ---------------------------------------------------------------


def _bundles(state: Path) -> list[Path]:
    base = state / "tasks"
    return sorted(p for p in base.glob("*/*") if p.is_dir()) if base.is_dir() else []


def _kill_group(pid: int) -> None:
    """A shim leads its own session: its group holds it (never a container: those are
    in namespaces of their own and go with the runtime's delete --force)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def cleanup_tasks(state: Path) -> None:
    """Whatever tasks a daemon left under `state`: shims, containers, mounts, cgroups."""
    for bundle in _bundles(state):
        try:
            pid = int((bundle / "shim.pid").read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and psutil.pid_exists(pid):
            _kill_group(pid)
        params = {
            "id": bundle.name,
            "namespace": bundle.parent.name,
            "socket_dir": str(state / "s"),
        }
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run(
            [sys.executable, "-m", "shim", "delete"],
            input=json.dumps(params).encode(),
            cwd=bundle,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        try:
            cfg = json.loads((bundle / "config.json").read_text())
            remove_cgroup(cfg.get("linux", {}).get("cgroupsPath", ""))
        except (OSError, ValueError):
            pass


@contextmanager
def task_daemon(tmp: Path, name: str = "d") -> Iterator[Daemon]:
    parent = f"{CGROUP_PARENT}/{tmp.name}"
    d = Daemon(
        tmp,
        name=name,
        env=dict(os.environ, **{CGROUP_PARENT_ENV: parent}),
        args=daemon_args(tmp),
    )
    try:
        yield d.start()
    finally:
        d.close()
        cleanup_tasks(d.state)
        remove_cgroup(parent)


def mkimage_archive(tmp: Path) -> Path:
    oci = tmp / "bb.tar"
    r = subprocess.run(
        ["pymkimage", "oci-layout", "--tar", str(oci)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return oci


def import_busybox(client: Client, tmp: Path) -> str:
    with open(mkimage_archive(tmp), "rb") as f:
        client.images().import_archive(f)
    return IMAGE


def run_attached(client: Client, cid: str) -> tuple[list[tuple[str, bytes]], int]:
    """Attach, Start, collect the output, Wait: what `pyctr run` does."""
    tasks = client.tasks()
    att = tasks.attach(cid)
    out: list[tuple[str, bytes]] = []
    reader = threading.Thread(target=lambda: out.extend(att))
    reader.start()
    try:
        tasks.start(cid)
        status = tasks.wait(cid, timeout=60).status
        reader.join(30)
    finally:
        att.close()
    return out, status


@pytest.fixture(params=runtimes_under_test())
def runtime_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with task_daemon(short_tmp) as d:
        yield d


@pytest.fixture
def client(daemon: Daemon, short_tmp: Path) -> Iterator[Client]:
    with daemon.client() as c:
        import_busybox(c, short_tmp)
        yield c


# -- tests -----------------------------------------------------------------------------------


def test_create_attach_start_wait_delete(client: Client, daemon: Daemon, runtime_name: str) -> None:
    c = client.new_container(
        "t1", IMAGE, runtime=runtime_name, args=["sh", "-c", "echo hi; echo oops >&2; exit 7"]
    )
    tasks = client.tasks()
    with client.events("topic~=/tasks/") as events:
        pid = tasks.create("t1")
        assert pid > 0
        assert tasks.get("t1").status == "CREATED"
        with pytest.raises(errdefs.AlreadyExists):
            tasks.create("t1")
        # The record cannot go while a task uses it.
        with pytest.raises(errdefs.FailedPrecondition):
            client.containers().delete("t1")
        out, status = run_attached(client, "t1")
        assert status == 7
        assert b"".join(d for s, d in out if s == "stdout") == b"hi\n"
        assert b"".join(d for s, d in out if s == "stderr") == b"oops\n"
        got = tasks.get("t1")
        assert (got.status, got.exit_status, got.pid) == ("STOPPED", 7, pid)
        assert [(t.container_id, t.status) for t in tasks.list()] == [("t1", "STOPPED")]
        assert tasks.list("status==RUNNING") == []
        gone = tasks.delete("t1")
        assert (gone.status, gone.pid) == (7, pid)
        topics = []
        for ev in events:
            topics.append(ev.topic)
            if ev.topic == "/tasks/delete":
                break
    # Even for a process that exits at once, its exit is told after its start.
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    with pytest.raises(errdefs.NotFound):
        tasks.get("t1")
    assert _bundles(daemon.state) == []
    client.delete_container(c.id)


def test_a_container_that_names_no_runtime_runs_on_the_default(
    client: Client, daemon: Daemon
) -> None:
    """pyrunc, or the runtime PYCONTAINERD_TEST_RUNTIME names (tests/task_runtime.py): the
    daemon's runtimes table maps the default name to it, and the shim drives that one."""
    c = client.new_container("dflt", IMAGE, args=["sleep", "1000"])
    assert c.runtime == "pyrunc"
    tasks = client.tasks()
    tasks.create("dflt")
    bundle = daemon.state / "tasks" / "default" / "dflt"
    want = default_runtime()
    assert json.loads((bundle / "options.json").read_text())["binary_name"] == want
    # The runtime's own state for the container is under its root, named after it.
    assert (daemon.state / want / "default" / "dflt").is_dir()
    tasks.kill("dflt", signal.SIGKILL)
    tasks.wait("dflt", timeout=30)
    tasks.delete("dflt")
    client.delete_container("dflt")


def test_kill_running_task(client: Client, daemon: Daemon, runtime_name: str) -> None:
    client.new_container("k1", IMAGE, runtime=runtime_name, args=["sleep", "1000"])
    tasks = client.tasks()
    tasks.create("k1")
    tasks.start("k1")
    assert tasks.get("k1").status == "RUNNING"
    with pytest.raises(errdefs.FailedPrecondition):
        tasks.delete("k1")
    with client.events("topic~=/tasks/") as events:
        tasks.kill("k1", signal.SIGKILL)
        assert tasks.wait("k1", timeout=30).status == 128 + signal.SIGKILL
        tasks.delete("k1")
        # Longer than the watcher's poll: a shim shut down by Delete is not a death.
        threading.Timer(2.5, events.close).start()
        seen = [ev.topic for ev in events]
    assert seen == ["/tasks/exit", "/tasks/delete"]
    client.delete_container("k1")
    assert _bundles(daemon.state) == []


def test_errors(client: Client) -> None:
    tasks = client.tasks()
    with pytest.raises(errdefs.NotFound):
        tasks.create("nope")
    with pytest.raises(errdefs.NotFound):
        tasks.start("nope")
    with pytest.raises(errdefs.NotFound):
        tasks.get("nope")
    with pytest.raises(errdefs.InvalidArgument):
        tasks.get("")


def test_logs_from_the_shims_log_file(client: Client, daemon: Daemon) -> None:
    client.new_container(
        "l1", IMAGE, args=["sh", "-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; done"]
    )
    tasks = client.tasks()
    tasks.create("l1")
    # Nobody attached: the shim writes the log all the same.
    tasks.start("l1")
    assert tasks.wait("l1", timeout=30).status == 0
    lines = [(s, d) for s, _, d in tasks.logs("l1")]
    assert [d for s, d in lines if s == "stdout"] == [b"out1\n", b"out2\n", b"out3\n"]
    assert [d for s, d in lines if s == "stderr"] == [b"err1\n", b"err2\n", b"err3\n"]
    assert [d for _, _, d in tasks.logs("l1", stderr=True, tail=1)] == [b"err3\n"]
    tasks.delete("l1")
    # Readable after the task is gone, until the container is.
    assert len(list(tasks.logs("l1"))) == 6
    log_file = daemon.root / "logs" / "default" / "l1.log"
    assert log_file.exists()
    client.delete_container("l1")
    with pytest.raises(errdefs.NotFound):
        list(tasks.logs("l1"))
    # The file goes with the record, and another container's log stays.
    assert not log_file.exists()
    client.new_container("l3", IMAGE, args=["true"])
    tasks.create("l3")
    assert (log_file.parent / "l3.log").exists()
    tasks.delete("l3")
    assert (log_file.parent / "l3.log").exists()
    client.delete_container("l3")
    assert not (log_file.parent / "l3.log").exists()


def test_logs_follow_ends_with_the_task(client: Client) -> None:
    client.new_container("l2", IMAGE, args=["sh", "-c", "echo a; sleep 0.5; echo b"])
    tasks = client.tasks()
    tasks.create("l2")
    tasks.start("l2")
    got = [d for _, _, d in tasks.logs("l2", follow=True)]
    assert got == [b"a\n", b"b\n"]
    tasks.delete("l2")
    client.delete_container("l2")


def test_exec_pids_pause_resume_metrics(client: Client, runtime_name: str) -> None:
    client.new_container("p1", IMAGE, runtime=runtime_name, args=["sleep", "1000"])
    tasks = client.tasks()
    tasks.create("p1")
    init = tasks.start("p1")
    spec = client.containers().get("p1").spec_dict()
    assert spec is not None
    proc = dict(spec["process"], args=["sh", "-c", "echo from-exec; exit 5"])
    tasks.exec("p1", "e1", proc)
    att = tasks.attach("p1", "e1")
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.extend(d for _, d in att))
    reader.start()
    tasks.start("p1", "e1")
    assert tasks.wait("p1", "e1", timeout=30).status == 5
    reader.join(10)
    att.close()
    assert b"".join(out) == b"from-exec\n"
    assert tasks.get("p1", "e1").status == "STOPPED"
    tasks.delete_process("p1", "e1")
    with pytest.raises(errdefs.NotFound):
        tasks.get("p1", "e1")
    assert init in [pid for pid, _ in tasks.pids("p1")]
    tasks.pause("p1")
    assert tasks.get("p1").status == "PAUSED"
    tasks.resume("p1")
    assert tasks.get("p1").status == "RUNNING"
    stats = tasks.metrics()
    assert "p1" in stats
    tasks.update("p1", {"memory": {"limit": 96 << 20}})
    assert tasks.metrics("id==p1")["p1"].memory.limit == 96 << 20
    # sleep as pid 1 of its namespace ignores SIGTERM: KILL, to every process.
    tasks.kill("p1", signal.SIGKILL, all=True)
    assert tasks.wait("p1", timeout=30).status == 128 + signal.SIGKILL
    assert tasks.metrics() == {}  # a stopped task has no stats
    tasks.delete("p1")
    client.delete_container("p1")


def test_checkpoint_is_unimplemented(client: Client) -> None:
    import grpc

    from containerd_py.api.services.tasks.v1 import tasks_pb2

    client.new_container("cp", IMAGE, args=["true"])
    with pytest.raises(grpc.RpcError) as err:
        client._tasks.Checkpoint(
            tasks_pb2.CheckpointRequest(container_id="cp"), metadata=client.metadata, timeout=10
        )
    assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "checkpoint" in (err.value.details() or "")
    client.delete_container("cp")
