"""pycontainerd and its shim template: started with the daemon, used for every task,
adopted by a daemon restarted after kill -9, replaced when it dies, stopped with the daemon.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.daemon import Daemon
from tests.integration.test_daemon_tasks import IMAGE, import_busybox, task_daemon
from tests.integration.test_shim_server import wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs /bin/busybox"),
]


WAIT = 30.0


def templates_of(d: Daemon) -> list[int]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "template" in cmd and str(d.state / "s" / "template") in cmd:
            out.append(p.pid)
    return out


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (not our child)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def template_log(d: Daemon) -> str:
    try:
        return (d.state / "s" / "template.log").read_text()
    except FileNotFoundError:
        return ""


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with task_daemon(short_tmp) as d:
        with d.client() as c:
            import_busybox(c, short_tmp)
        yield d


def run_task(d: Daemon, cid: str) -> int:
    """Create and start `sleep 300`; the shim's pid."""
    with d.client() as c:
        c.new_container(cid, IMAGE, args=["sleep", "300"])
        tasks = c.tasks()
        tasks.create(cid)
        tasks.start(cid)
    return int((d.state / "tasks" / "default" / cid / "shim.pid").read_text())


def end_task(d: Daemon, cid: str) -> None:
    with d.client() as c:
        tasks = c.tasks()
        tasks.kill(cid, signal.SIGKILL)
        assert tasks.wait(cid, timeout=30).status == 137
        tasks.delete(cid)
        c.delete_container(cid)


def test_tasks_get_shims_forked_by_the_template(daemon: Daemon) -> None:
    template = wait_for(daemon.shim_template_pid, WAIT, what="the shim template")
    shim = run_task(daemon, "t1")
    assert f"pid {shim}" in template_log(daemon), template_log(daemon)
    proc = psutil.Process(shim)
    assert proc.ppid() not in (daemon.pid, template)
    assert "serve" in proc.cmdline()
    end_task(daemon, "t1")
    wait_for(lambda: gone(shim), WAIT, what="the shim to exit after delete")
    assert not gone(template)


def test_template_outlives_kill9_and_is_adopted(daemon: Daemon) -> None:
    template = wait_for(daemon.shim_template_pid, WAIT, what="the shim template")
    run_task(daemon, "t1")
    daemon.kill9()
    assert not gone(template)
    daemon.start()
    shim = run_task(daemon, "t2")
    assert f"pid {shim}" in template_log(daemon)
    assert templates_of(daemon) == [template], "the restarted daemon started a second template"
    end_task(daemon, "t1")
    end_task(daemon, "t2")
    daemon.stop()
    assert gone(template)
    assert not (daemon.state / "s" / "template").exists()


def test_a_dead_template_is_replaced_and_tasks_still_start(daemon: Daemon) -> None:
    template = wait_for(daemon.shim_template_pid, WAIT, what="the shim template")
    os.kill(template, signal.SIGKILL)
    wait_for(lambda: gone(template), WAIT, what="the template to die")
    # The socket is still there but nobody answers: the shim is started by exec.
    shim = run_task(daemon, "t1")
    assert "--socket-dir" in psutil.Process(shim).cmdline()
    fresh = wait_for(daemon.shim_template_pid, WAIT, what="a new template")
    assert fresh != template
    shim2 = run_task(daemon, "t2")
    assert f"pid {shim2}" in template_log(daemon)
    end_task(daemon, "t1")
    end_task(daemon, "t2")


def test_a_template_of_other_code_is_replaced_on_restart(daemon: Daemon) -> None:
    """A daemon restarted after an upgrade must not adopt a template that still runs the
    old code: the template records what it runs, and the daemon compares."""
    old = wait_for(daemon.shim_template_pid, what="the shim template")
    run_task(daemon, "t1")
    daemon.kill9()
    (daemon.state / "s" / "template.code").write_text("code of another version")
    daemon.start()
    fresh = wait_for(
        lambda: (p := daemon.shim_template_pid()) not in (None, old) and p, what="a new template"
    )
    wait_for(lambda: gone(old), what="the old template to exit")
    assert templates_of(daemon) == [fresh]
    shim = run_task(daemon, "t2")
    assert f"pid {shim}" in template_log(daemon)
    end_task(daemon, "t1")  # the old template's shim still serves its task
    end_task(daemon, "t2")
