"""pycontainerd as a process: start, stop on signals, crash and restart, sockets that are
in the way, config files, and two stacks side by side."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerd_py import errdefs
from tests.daemon import ROOT, Daemon, running_daemon


@pytest.fixture
def daemon(short_tmp: Path):
    with running_daemon(short_tmp) as d:
        yield d


def test_ready_means_the_socket_answers_with_mode_0660(daemon: Daemon) -> None:
    st = os.stat(daemon.address)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    with daemon.client() as c:
        assert c.version().version
    assert "serving on unix:" + daemon.address in daemon.logs()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_removes_the_socket(daemon: Daemon, sig: int) -> None:
    assert daemon.proc is not None
    daemon.proc.send_signal(sig)
    assert daemon.proc.wait(15) == 0
    assert not os.path.exists(daemon.address)
    logs = daemon.logs()
    assert f"received {signal.Signals(sig).name}, shutting down" in logs
    assert "stopped in" in logs
    assert "Traceback" not in logs


def test_sigterm_ends_event_streams_instead_of_waiting_for_them(daemon: Daemon) -> None:
    with daemon.client() as c:
        stream = c.events()
        started = time.monotonic()
        assert daemon.stop() == 0
        # The stream was told why, and the daemon did not sit out its grace period.
        with pytest.raises(errdefs.Unavailable):
            next(stream)
        stream.close()
    assert time.monotonic() - started < 8


def test_kill9_then_start_on_the_same_socket(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.namespaces().create("survivor", {"k": "v"})
        uuid = c.server().uuid
    daemon.kill9()
    assert os.path.exists(daemon.address)  # left behind: nobody cleaned up
    daemon.start()
    assert "removing stale socket" in daemon.logs()
    with daemon.client() as c:
        assert [(n.name, dict(n.labels)) for n in c.namespaces().list()] == [
            ("survivor", {"k": "v"})
        ]
        assert c.server().uuid == uuid  # the same daemon identity, kept under root


def test_a_second_daemon_on_the_same_socket_is_refused(daemon: Daemon, short_tmp: Path) -> None:
    other = Daemon(short_tmp, name="other")
    other.address = daemon.address
    proc = other.spawn()
    try:
        assert proc.wait(20) == 1
    finally:
        other.close()
    assert "another pycontainerd is starting or running on" in other.logs()
    with daemon.client() as c:
        c.version()  # the first one is untouched


def test_a_socket_served_by_something_else_is_refused(short_tmp: Path) -> None:
    address = str(short_tmp / "d.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(1)
    d = Daemon(short_tmp)
    try:
        assert d.spawn().wait(20) == 1
        assert f"another server is already serving on {address}" in d.logs()
        assert os.path.exists(address)
    finally:
        d.close()
        listener.close()


def test_a_file_that_is_not_a_socket_is_left_alone(short_tmp: Path) -> None:
    d = Daemon(short_tmp)
    Path(d.address).write_text("precious")
    try:
        assert d.spawn().wait(20) == 1
    finally:
        d.close()
    assert "exists and is not a socket" in d.logs()
    assert Path(d.address).read_text() == "precious"


def test_two_stacks_side_by_side(short_tmp: Path) -> None:
    with running_daemon(short_tmp, name="a") as a, running_daemon(short_tmp, name="b") as b:
        with a.client() as ca, b.client() as cb:
            ca.namespaces().create("only-a")
            cb.namespaces().create("only-b")
            assert [n.name for n in ca.namespaces().list()] == ["only-a"]
            assert [n.name for n in cb.namespaces().list()] == ["only-b"]
            assert ca.server().uuid != cb.server().uuid
            assert ca.server().pid == a.pid and cb.server().pid == b.pid
        assert a.stop() == 0
        with b.client() as cb:
            cb.version()  # stopping one never touches the other
    assert (a.root / "metadata.db").exists() and (b.root / "metadata.db").exists()


def test_config_file_supplies_containerd_keys(short_tmp: Path) -> None:
    sock = short_tmp / "from-config.sock"
    cfg = short_tmp / "config.toml"
    cfg.write_text(
        f"""
version = 2
root = "{short_tmp / "cfg-root"}"
state = "{short_tmp / "cfg-state"}"

[grpc]
address = "{sock}"
max_workers = 8

[debug]
level = "debug"

[plugins."io.pycontainerd.future.v1".thing]
option = true
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "containerd_py", "--config", str(cfg)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        from containerd_py.client import Client

        deadline = time.monotonic() + 20
        while True:
            try:
                with Client(str(sock), timeout=2) as c:
                    c.namespaces().create("x")
                break
            except errdefs.PyContainerdError:
                assert time.monotonic() < deadline, "daemon from config did not start"
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.1)
        assert (short_tmp / "cfg-root" / "metadata.db").exists()
        assert (short_tmp / "cfg-state").is_dir()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert b"level=debug" in err  # [debug] level applied
    assert b"unknown key" not in err  # [plugins] is kept for plugins, not warned about


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("root = 3", "root has the wrong type"),
        ("[grpc]\naddress = true", "grpc.address has the wrong type"),
        ("[debug]\nlevel = 'loud'", "unknown log level 'loud'"),
        ("root = ", "config file"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(short_tmp: Path, text: str, message: str) -> None:
    cfg = short_tmp / "bad.toml"
    cfg.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "containerd_py", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert r.stderr.startswith("pycontainerd: ")
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_socket_path_too_long_is_refused_before_starting(short_tmp: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "containerd_py", "--address", "/tmp/" + "x" * 120 + ".sock"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "longer than 107 bytes" in r.stderr


def test_unknown_config_keys_are_logged_not_fatal(short_tmp: Path) -> None:
    cfg = short_tmp / "c.toml"
    cfg.write_text("oom_score = -999\n[grpc]\ntcp_address = 'x'\n")
    d = Daemon(short_tmp, args=["--config", str(cfg)])
    try:
        d.start()
    finally:
        d.close()
    logs = d.logs()
    assert "ignoring unknown key oom_score" in logs
    assert "ignoring unknown key grpc.tcp_address" in logs
