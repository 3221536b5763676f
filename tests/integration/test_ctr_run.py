"""`pyctr run` and `pyctr tasks` against a real daemon, on pyrunc and runc: output through
Attach, the exit status as pyctr's own, --rm leaving nothing, -d plus the tasks commands
(ls, ps, exec, kill, pause/resume, metrics, rm)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import ROOT, Daemon
from tests.integration.test_daemon_tasks import (
    IMAGE,
    _bundles,
    mkimage_archive,
    task_daemon,
)
from tests.task_runtime import runtimes_under_test

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs /bin/busybox"),
]


def pyctr(d: Daemon, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", d.address, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(d: Daemon, *args: str) -> str:
    r = pyctr(d, *args)
    assert r.returncode == 0, f"pyctr {' '.join(args)}: {r.stderr}\n{d.logs_tail()}"
    return r.stdout


@pytest.fixture(params=runtimes_under_test())
def runtime_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with task_daemon(short_tmp) as d:
        ok(d, "images", "import", str(mkimage_archive(short_tmp)))
        yield d


def test_run_rm_prints_output_and_exits_with_status(daemon: Daemon, runtime_name: str) -> None:
    r = pyctr(
        daemon, "run", "--rm", "--runtime", runtime_name, IMAGE, "r1", "sh", "-c",
        "echo hi; exit 7",
    )  # fmt: skip
    assert (r.stdout, r.returncode) == ("hi\n", 7), r.stderr
    assert ok(daemon, "containers", "ls", "-q") == ""
    assert ok(daemon, "tasks", "ls", "-q") == ""
    assert _bundles(daemon.state) == []


def test_run_env_and_stdin(daemon: Daemon) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", daemon.address, "run", "--rm",
         "--env", "GREETING=hello", IMAGE, "r2", "sh", "-c", 'read x; echo "$GREETING $x"'],
        cwd=ROOT, input="world\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (r.stdout, r.returncode) == ("hello world\n", 0), r.stderr


def test_detached_task_commands(daemon: Daemon, runtime_name: str) -> None:
    ok(daemon, "run", "-d", "--runtime", runtime_name, "--memory-limit", "64m", IMAGE, "d1",
       "sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done")  # fmt: skip
    rows = [line.split() for line in ok(daemon, "tasks", "ls").splitlines()]
    assert rows[0] == ["TASK", "PID", "STATUS"] and rows[1][0::2] == ["d1", "RUNNING"]
    pid = rows[1][1]
    ps = ok(daemon, "tasks", "ps", "d1")
    assert pid in ps.split()

    r = pyctr(daemon, "tasks", "exec", "--exec-id", "e1", "d1", "sh", "-c", "echo in; exit 4")
    assert (r.stdout, r.returncode) == ("in\n", 4), r.stderr

    ok(daemon, "tasks", "pause", "d1")
    assert "PAUSED" in ok(daemon, "tasks", "ls")
    ok(daemon, "tasks", "resume", "d1")
    assert "RUNNING" in ok(daemon, "tasks", "ls")

    metrics = ok(daemon, "tasks", "metrics", "d1")
    assert "memory" in metrics

    r = pyctr(daemon, "tasks", "rm", "d1")
    assert r.returncode == 1 and r.stderr.startswith("pyctr: ")
    ok(daemon, "tasks", "kill", "-s", "TERM", "d1")
    deadline = time.monotonic() + 20
    while "STOPPED" not in ok(daemon, "tasks", "ls") and time.monotonic() < deadline:
        time.sleep(0.1)
    ok(daemon, "tasks", "rm", "d1")
    ok(daemon, "containers", "rm", "d1")
    assert _bundles(daemon.state) == []


def test_run_tty(daemon: Daemon) -> None:
    r = pyctr(daemon, "run", "--rm", "-t", IMAGE, "tt", "sh", "-c", "tty; echo err >&2; exit 3")
    # A pty: both streams arrive as stdout.
    assert r.returncode == 3, r.stderr
    assert r.stdout.replace("\r\n", "\n").splitlines() == ["/dev/pts/0", "err"]
    assert r.stderr == ""


def test_run_failures_leave_nothing(daemon: Daemon) -> None:
    r = pyctr(daemon, "run", "--rm", "example.com/none:1", "f1", "true")
    assert r.returncode == 1 and r.stderr.startswith("pyctr: "), r.stderr
    r = pyctr(daemon, "run", "--runtime", "/nonexistent/runtime", IMAGE, "f2", "true")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ok(daemon, "containers", "ls", "-q") == ""
    assert _bundles(daemon.state) == []


def test_containers_create_then_tasks_start_and_attach(daemon: Daemon) -> None:
    ok(daemon, "containers", "create", IMAGE, "a1", "--", "sh", "-c",
       "i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo $i; sleep 0.05; done; exit 2")  # fmt: skip
    ok(daemon, "tasks", "start", "-d", "a1")
    r = pyctr(daemon, "tasks", "attach", "a1")
    # Attached late: the tail of the output, up to the last line, then the status.
    assert r.returncode == 2, r.stderr
    assert r.stdout.splitlines()[-1] == "60"
    ok(daemon, "tasks", "rm", "a1")
    ok(daemon, "containers", "rm", "a1")
    r = subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", daemon.address, "containers", "create",
         IMAGE, "a2", "--", "sh", "-c", "read x; echo got $x"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", daemon.address, "tasks", "start", "a2"],
        cwd=ROOT, input="hello\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (r.stdout, r.returncode) == ("got hello\n", 0), r.stderr
    ok(daemon, "tasks", "rm", "a2")
    ok(daemon, "containers", "rm", "a2")


def test_tasks_rm_force_kills_a_running_task(daemon: Daemon) -> None:
    ok(daemon, "run", "-d", IMAGE, "k1", "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")
    r = pyctr(daemon, "tasks", "rm", "k1")
    assert r.returncode == 1 and r.stderr.startswith("pyctr: "), r.stderr
    assert ok(daemon, "tasks", "rm", "-f", "k1") == ""
    assert ok(daemon, "tasks", "ls", "-q") == ""
    ok(daemon, "containers", "rm", "k1")
    assert _bundles(daemon.state) == []
