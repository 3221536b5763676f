"""What survives what (DESIGN.md): pycontainerd killed with -9 while tasks run, and a shim
killed with -9.

- Ten tasks: nine print numbered lines, the tenth a few and then waits; the daemon is
  killed; the tenth is told to exit with 7 while the daemon is down, and the nine keep
  logging meanwhile; after the restart the nine are RUNNING, the tenth shows exit 7 (the
  shim kept it: level, not events), and every log holds every line exactly once (each
  counter is stopped with SIGTERM and says where it stopped, so the last line is known).
- A shim killed with -9: its task is reported exited (137, or the status it had recorded)
  with /tasks/exit and /tasks/delete, and its processes, rootfs mounts and cgroups are gone.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from containerd_py import errdefs
from containerd_py.client import Client
from tests.daemon import Daemon
from tests.integration.test_daemon_tasks import IMAGE, _bundles, import_busybox, task_daemon
from tests.integration.test_shim_server import cgroup_dirs, mounts_under
from tests.task_runtime import runtimes_under_test

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs /bin/busybox"),
]

COUNT = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"
# COUNT that stops on SIGTERM saying how far it got. A trap runs between commands, and
# `echo $((i+=1))` counts and prints in one, so "end N" means 1..N were all printed.
COUNT_TO_TERM = "i=0; trap 'echo end $i; exit 0' TERM; while :; do echo $((i+=1)); sleep 0.02; done"
# Prints 1..5, then waits for the test to create /go in its rootfs, then exits 7.
EXITS_WHEN_TOLD = (
    "i=0; while [ $i -lt 5 ]; do i=$((i+1)); echo $i; done; "
    "while [ ! -e /go ]; do sleep 0.05; done; exit 7"
)
COUNTERS = [f"c{i}" for i in range(9)]


def wait_for(cond, timeout: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def numbers(client: Client, cid: str) -> list[int]:
    return [int(d) for _, _, d in client.tasks().logs(cid)]


def bundle_of(d: Daemon, cid: str) -> Path:
    return d.state / "tasks" / "default" / cid


@pytest.fixture(params=runtimes_under_test())
def runtime_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with task_daemon(short_tmp) as d:
        with d.client() as c:
            import_busybox(c, short_tmp)
        yield d


def log_file_lines(d: Daemon, cid: str) -> list[str]:
    """The json-file log as the shim wrote it, read from disk (the daemon may be down)."""
    path = d.root / "logs" / "default" / f"{cid}.log"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line)["log"] for line in text.splitlines() if line.endswith("}")]


def test_daemon_kill9_tasks_survive_and_exits_are_kept(daemon: Daemon, runtime_name: str) -> None:
    with daemon.client() as client:
        tasks = client.tasks()
        for cid, script in [*((c, COUNT_TO_TERM) for c in COUNTERS), ("x7", EXITS_WHEN_TOLD)]:
            client.new_container(cid, IMAGE, runtime=runtime_name, args=["sh", "-c", script])
            tasks.create(cid)
            tasks.start(cid)
        pid7 = tasks.get("x7").pid
    wait_for(lambda: log_file_lines(daemon, "x7") == [f"{i}\n" for i in range(1, 6)], what="x7")
    wait_for(lambda: all(log_file_lines(daemon, c) for c in COUNTERS), what="counters")
    daemon.kill9()
    before = {c: len(log_file_lines(daemon, c)) for c in COUNTERS}
    # x7 exits while nobody is there to hear it.
    (bundle_of(daemon, "x7") / "rootfs" / "go").write_text("")
    wait_for(lambda: not psutil.pid_exists(pid7), what="x7 to exit")
    # The counters keep writing their logs meanwhile: the shims write them.
    wait_for(
        lambda: all(len(log_file_lines(daemon, c)) > before[c] + 2 for c in COUNTERS),
        what="the logs to grow while the daemon is down",
    )
    daemon.start()
    with daemon.client() as client:
        tasks = client.tasks()
        assert {t.container_id: t.status for t in tasks.list()} == {
            **dict.fromkeys(COUNTERS, "RUNNING"),
            "x7": "STOPPED",
        }
        assert tasks.get("x7").exit_status == 7
        assert tasks.wait("x7", timeout=10).status == 7
        assert numbers(client, "x7") == [1, 2, 3, 4, 5]
        for cid in COUNTERS:
            tasks.kill(cid, signal.SIGTERM)
        for cid in COUNTERS:
            assert tasks.wait(cid, timeout=30).status == 0, cid
            lines = [d.decode() for _, _, d in tasks.logs(cid)]
            assert lines[-1].startswith("end "), (cid, lines[-3:])
            last = int(lines[-1].split()[1])
            assert last > before[cid], cid
            # Every number once, in order, none missing, none doubled.
            assert lines[:-1] == [f"{i}\n" for i in range(1, last + 1)], cid
        for cid in [*COUNTERS, "x7"]:
            tasks.delete(cid)
            client.delete_container(cid)
    assert _bundles(daemon.state) == []


def test_shim_kill9_reports_exit_and_cleans_up(daemon: Daemon, runtime_name: str) -> None:
    with daemon.client() as client:
        tasks = client.tasks()
        client.new_container("s1", IMAGE, runtime=runtime_name, args=["sh", "-c", COUNT])
        tasks.create("s1")
        pid = tasks.start("s1")
        bundle = bundle_of(daemon, "s1")
        shim_pid = json.loads((bundle / "bootstrap.json").read_text())["shim_pid"]
        cgroups = cgroup_dirs(bundle)
        assert cgroups and mounts_under(bundle)
        wait_for(lambda: len(numbers(client, "s1")) >= 3, what="s1 to print")
        with client.events("topic~=/tasks/") as events:
            psutil.Process(shim_pid).kill()
            exits = []
            for ev in events:
                if ev.topic == "/tasks/exit":
                    exits.append(ev.payload_dict())
                if ev.topic == "/tasks/delete":
                    break
        assert exits and exits[0]["exit_status"] == 137
        assert exits[0]["container_id"] == "s1"
        wait_for(lambda: not psutil.pid_exists(pid), what="the container's processes to go")
        assert not bundle.exists() and mounts_under(bundle) == []
        assert [c for c in cgroups if c.exists()] == []
        with pytest.raises(errdefs.NotFound):
            tasks.get("s1")
        # Its log stays readable (the container is still there), and a new task can run.
        assert numbers(client, "s1")[:3] == [1, 2, 3]
        client.new_container("s2", IMAGE, args=["true"])
        tasks.create("s2")
        tasks.start("s2")
        assert tasks.wait("s2", timeout=20).status == 0
        tasks.delete("s2")
        client.delete_container("s2")
        client.delete_container("s1")


def test_shims_killed_while_the_daemon_is_down(daemon: Daemon) -> None:
    """Both gone at once: on restart a dead shim's task is cleaned up (processes, mounts,
    cgroups) and its exit reported from the exit file (7) or as 137; a bundle torn by a
    crash mid-create (no or garbled bootstrap.json) is removed; the daemon serves."""
    with daemon.client() as client:
        tasks = client.tasks()
        client.new_container("x1", IMAGE, args=["sh", "-c", COUNT])
        client.new_container("x2", IMAGE, args=["sh", "-c", "exit 7"])
        for cid in ("x1", "x2"):
            tasks.create(cid)
            tasks.start(cid)
        pid1 = tasks.get("x1").pid
        assert tasks.wait("x2", timeout=20).status == 7
    bundles = {cid: bundle_of(daemon, cid) for cid in ("x1", "x2")}
    cgroups = cgroup_dirs(bundles["x1"])
    daemon.kill9()
    for b in bundles.values():
        psutil.Process(json.loads((b / "bootstrap.json").read_text())["shim_pid"]).kill()
    torn = daemon.state / "tasks" / "default"
    (torn / "half").mkdir()
    (torn / "garbled").mkdir()
    (torn / "garbled" / "bootstrap.json").write_text("{not json")
    daemon.start()
    with daemon.client() as client:
        assert client.tasks().list() == []
        for cid in ("x1", "x2"):
            with pytest.raises(errdefs.NotFound):
                client.tasks().get(cid)
            client.delete_container(cid)
    wait_for(lambda: not psutil.pid_exists(pid1), what="x1's processes to go")
    assert _bundles(daemon.state) == []
    assert [c for c in cgroups if c.exists()] == []
    assert all(mounts_under(b) == [] for b in bundles.values())
    logs = daemon.logs()
    assert "task default/x2: shim gone, reported exit 7" in logs
    assert "task default/x1: shim gone, reported exit 137" in logs


def test_a_shim_left_without_a_task_is_stopped_on_restart(daemon: Daemon) -> None:
    """The daemon died between starting a shim and its Create (containerd#6860): the shim
    answers but has no task; on restart it is shut down and its bundle removed."""
    from containerd_py.runtime.bundle import Bundle
    from containerd_py.runtime.shim_manager import ShimManager

    daemon.kill9()
    bundle = Bundle.at(daemon.state, "default", "orphan")
    bundle.create({"ociVersion": "1.0.2"})
    conn = ShimManager(daemon.state, daemon.address).start(bundle)
    conn.close()
    shim = psutil.Process(conn.info.shim_pid)
    daemon.start()
    wait_for(lambda: not shim.is_running() or shim.status() == psutil.STATUS_ZOMBIE, what="exit")
    assert _bundles(daemon.state) == []
    with daemon.client() as client:
        assert client.tasks().list() == []
    assert "shim has no task" in daemon.logs()


def test_a_clean_stop_leaves_tasks_running(daemon: Daemon) -> None:
    with daemon.client() as client:
        client.new_container("g1", IMAGE, args=["sh", "-c", COUNT])
        client.tasks().create("g1")
        pid = client.tasks().start("g1")
    daemon.stop()
    assert psutil.pid_exists(pid)
    daemon.start()
    with daemon.client() as client:
        tasks = client.tasks()
        assert (tasks.get("g1").status, tasks.get("g1").pid) == ("RUNNING", pid)
        tasks.kill("g1", signal.SIGKILL)
        assert tasks.wait("g1", timeout=20).status == 137
        tasks.delete("g1")
        client.delete_container("g1")
