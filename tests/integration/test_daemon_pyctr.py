"""pyctr as a user runs it (a subprocess) against a real pycontainerd."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from containerd_py.api.events.v1 import task_pb2
from tests.daemon import ROOT, Daemon, running_daemon


@pytest.fixture
def daemon(short_tmp: Path):
    with running_daemon(short_tmp) as d:
        yield d


def pyctr_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.ctr", *args]


def pyctr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pyctr_command(*args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version(daemon: Daemon) -> None:
    r = pyctr("--address", daemon.address, "version")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Client:" and "Server:" in lines
    with daemon.client() as c:
        uuid = c.server().uuid
        version = c.version().version
    assert f"  UUID: {uuid}" in lines
    assert lines.count(f"  Version:  {version}") == 2


def test_namespaces_commands(daemon: Daemon) -> None:
    a = ("--address", daemon.address)
    assert pyctr(*a, "namespaces", "create", "web", "team=a", "tier=front").returncode == 0
    assert pyctr(*a, "ns", "create", "db").returncode == 0
    r = pyctr(*a, "ns", "ls")
    assert r.stdout.splitlines() == [
        "NAME    LABELS",
        "db",
        "web     team=a,tier=front",
    ]
    r = pyctr(*a, "ns", "label", "web", "tier=", "owner=me")
    assert (r.returncode, r.stdout) == (0, "owner=me\nteam=a\n")
    assert pyctr(*a, "ns", "ls", "-q", "labels.owner==me").stdout == "web\n"

    r = pyctr(*a, "ns", "create", "web")
    assert (r.returncode, r.stderr) == (1, "pyctr: namespace 'web' already exists\n")
    r = pyctr(*a, "ns", "create", "Bad/Name")
    assert r.returncode == 1 and r.stderr.startswith("pyctr: invalid namespace name")

    r = pyctr(*a, "ns", "rm", "web", "ghost", "db")
    assert r.returncode == 1
    assert r.stdout.split() == ["web", "db"]
    assert r.stderr == "pyctr: unable to delete ghost: namespace 'ghost' not found\n"
    assert pyctr(*a, "ns", "ls", "-q").stdout == ""


def test_events_prints_a_published_event_and_ends_on_ctrl_c(daemon: Daemon) -> None:
    proc = subprocess.Popen(
        pyctr_command("--address", daemon.address, "events", 'topic=="/tasks/exit"'),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        # pyctr gives no sign that it has subscribed: publish until a line shows up.
        with daemon.client(namespace="pydocker") as c:
            deadline = time.monotonic() + 30
            while not lines:
                assert time.monotonic() < deadline, "pyctr events printed nothing"
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                c.publish("/tasks/start", task_pb2.TaskStart(container_id="web", pid=1))
                c.publish("/tasks/exit", task_pb2.TaskExit(container_id="web", exit_status=3))
                time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert stderr == ""  # Ctrl-C is the normal way out: no traceback, no error line
    m = re.fullmatch(
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \+0000 UTC) (\S+) (\S+) (.*)\n", lines[0]
    )
    assert m, lines[0]
    assert m.group(2, 3) == ("pydocker", "/tasks/exit")
    assert json.loads(m.group(4)) == {"container_id": "web", "exit_status": 3}
    assert all("/tasks/start" not in line for line in lines)


def test_events_reports_a_daemon_that_stops(daemon: Daemon) -> None:
    proc = subprocess.Popen(
        pyctr_command("--address", daemon.address, "events"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # let it subscribe; a stop before that is reported the same way
        assert daemon.stop() == 0
        assert proc.wait(20) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert err.startswith("pyctr: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("args", [["version"], ["ns", "ls"], ["events"], ["ns", "rm", "x"]])
def test_daemon_not_running(short_tmp: Path, args: list[str]) -> None:
    address = str(short_tmp / "nobody.sock")
    r = pyctr("--address", address, *args)
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line]
    assert len(errors) == 1
    assert re.match(
        rf"pyctr: (unable to delete x: )?cannot connect to pycontainerd at {address}: ", errors[0]
    )
    assert "Traceback" not in r.stderr


def test_installed_console_scripts() -> None:
    for script in ("pyctr", "pycontainerd"):
        path = shutil.which(script)
        if path is None:
            pytest.skip(f"{script} is not installed (pip install -e .)")
        r = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"usage: {script}" in r.stdout.lower()
