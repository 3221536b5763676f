"""`shim start`'s handshake without a real shim: params, socket names, the ready pipe with
stand-in children that misbehave, idempotence against a fake shim, the command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from containerd_py.api.runtime.task.v1 import shim_pb2, shim_pb2_grpc
from shim import bootstrap
from shim.bootstrap import BootstrapError, Params

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; it is reaped by the spawn helper anyway.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def bundle(short_tmp: Path) -> Path:
    b = short_tmp / "bundle"
    b.mkdir()
    return b


def params(short_tmp: Path, bundle: Path, **kw: Any) -> Params:
    return Params(
        id=kw.get("id", "c1"),
        namespace=kw.get("namespace", "default"),
        bundle=str(bundle),
        socket_dir=str(short_tmp / "s"),
    )


# -- params and names ------------------------------------------------------------------------


def test_socket_path_is_a_short_hash_of_namespace_and_id() -> None:
    import hashlib

    p = bootstrap.socket_path("/run/pycontainerd/s", "k8s.io", "web")
    name = os.path.basename(p)
    assert name == hashlib.sha256(b"k8s.io/web").hexdigest()[:24]
    assert p == bootstrap.socket_path("/run/pycontainerd/s", "k8s.io", "web")
    assert p != bootstrap.socket_path("/run/pycontainerd/s", "default", "web")
    long_id = "x" * 500
    assert len(bootstrap.socket_path("/run/pycontainerd/s", "ns", long_id)) < 108


def test_socket_path_too_long_is_an_error() -> None:
    with pytest.raises(BootstrapError, match="longer than 107"):
        bootstrap.socket_path("/" + "d" * 90, "ns", "id")


def test_params_from_json_in_either_spelling() -> None:
    p = bootstrap.parse_params(
        b'{"id": "a", "namespace": "n", "socketDir": "/s", "daemon_address": "/d.sock",'
        b' "someFutureField": 1}'
    )
    assert (p.id, p.namespace, p.socket_dir, p.daemon_address) == ("a", "n", "/s", "/d.sock")
    assert bootstrap.parse_params(b"").id == ""
    with pytest.raises(BootstrapError, match="bad BootstrapParams"):
        bootstrap.parse_params(b'{"id": 3')


def test_flags_override_stdin() -> None:
    class Args:
        id = "flag-id"
        namespace = ""
        bundle = ""
        socket_dir = "/fs"
        log_level = ""
        address = "/flag.sock"
        debug = True
        idle_timeout = 1.5

    p = bootstrap.params_from(Args(), b'{"id": "json-id", "namespace": "n", "socket_dir": "/s"}')
    assert (p.id, p.namespace, p.socket_dir, p.daemon_address) == (
        "flag-id",
        "n",
        "/fs",
        "/flag.sock",
    )
    assert (p.log_level, p.idle_timeout) == ("debug", 1.5)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"id": ""}, "no task id"),
        ({"namespace": ""}, "no namespace"),
        ({"id": "../x"}, "invalid id"),
        ({"namespace": ".."}, "invalid namespace"),
    ],
)
def test_validate(kw: dict[str, str], message: str) -> None:
    p = Params(**{"id": "a", "namespace": "n", **kw})
    with pytest.raises(BootstrapError, match=message):
        p.validate()


def test_params_json_round_trips() -> None:
    p = Params(id="a", namespace="n", bundle="/b", socket_dir="/s", daemon_address="/d")
    back = bootstrap.parse_params(bootstrap.params_json(p))
    assert (back.id, back.namespace, back.bundle, back.socket_dir, back.daemon_address) == (
        "a",
        "n",
        "/b",
        "/s",
        "/d",
    )


def test_result_json_uses_the_proto_field_names() -> None:
    assert json.loads(bootstrap.result_json("unix:///s/x", 42)) == {
        "version": 1,
        "address": "unix:///s/x",
        "protocol": "grpc",
        "shim_pid": 42,
    }


def test_serve_env_and_path(bundle: Path) -> None:
    p = Params(id="a", namespace="n", bundle=str(bundle))
    env = bootstrap.serve_env(p, {"NOTIFY_SOCKET": "/x", "PATH": "/bin"})
    assert env["GRPC_ENABLE_FORK_SUPPORT"] == "false"
    assert "NOTIFY_SOCKET" not in env and env["PATH"] == "/bin"
    path = env["PYTHONPATH"].split(os.pathsep)
    assert path[0] == str(ROOT)
    assert str(bundle) not in path
    argv = bootstrap.serve_argv(p, "/s/x", 7)
    assert argv[:5] == [sys.executable, "-S", "-m", "shim", "serve"]
    assert argv[argv.index("--ready-fd") + 1] == "7"


# -- the ready pipe ----------------------------------------------------------------------------


def standin(code: str) -> list[str]:
    """A child that runs code with `fd` = the ready fd (the last argument)."""
    return [sys.executable, "-c", f"import os, sys, time\nfd = int(sys.argv[-1])\n{code}"]


def test_ready_returns_the_pid(short_tmp: Path, bundle: Path) -> None:
    p = params(short_tmp, bundle).validate()
    pid = bootstrap.spawn_shim(
        p, "/nonexistent", argv=standin("os.write(fd, b'ready 1\\n'); time.sleep(60)")
    )
    try:
        assert alive(pid)
        assert os.getsid(pid) == pid  # its own session
    finally:
        os.kill(pid, 9)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("os.write(fd, b'error the socket is taken\\n'); time.sleep(60)", "the socket is taken"),
        ("print('serve blew up', file=sys.stderr); sys.exit(3)", "exited with 3.*serve blew up"),
        ("time.sleep(60)", "did not become ready within 0.5s"),
    ],
)
def test_a_failed_start_leaves_nothing(
    short_tmp: Path, bundle: Path, code: str, message: str
) -> None:
    p = params(short_tmp, bundle).validate()
    sock = short_tmp / "sock"
    sock.write_text("")  # stands for a socket the child bound before it failed
    before = {int(d) for d in os.listdir("/proc") if d.isdigit()}
    with pytest.raises(BootstrapError, match=message):
        bootstrap.spawn_shim(p, str(sock), timeout=0.5, argv=standin(code))
    assert not sock.exists()
    time.sleep(0.1)
    new = {int(d) for d in os.listdir("/proc") if d.isdigit()} - before
    assert not [pid for pid in new if alive(pid) and _is_standin(pid)]


def _is_standin(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"fd = int(sys.argv[-1])" in f.read()
    except OSError:
        return False


# -- start ---------------------------------------------------------------------------------


class FakeShim(shim_pb2_grpc.TaskServicer):
    def Connect(self, request: Any, context: Any) -> Any:
        return shim_pb2.ConnectResponse(shim_pid=4242, version="fake")


@pytest.fixture
def fake_shim(short_tmp: Path) -> Iterator[Any]:
    servers = []

    def serve(path: str) -> None:
        s = grpc.server(ThreadPoolExecutor(2))
        shim_pb2_grpc.add_TaskServicer_to_server(FakeShim(), s)
        s.add_insecure_port(f"unix:{path}")
        s.start()
        servers.append(s)

    yield serve
    for s in servers:
        s.stop(0)


def test_start_reuses_a_live_shim(short_tmp: Path, bundle: Path, fake_shim: Any) -> None:
    p = params(short_tmp, bundle)
    sock = bootstrap.socket_path(str(short_tmp / "s"), "default", "c1")
    os.makedirs(os.path.dirname(sock))
    fake_shim(sock)
    # The argv would fail if it were run: a live shim must be reused, not replaced.
    address, pid = bootstrap.start(p, argv=standin("sys.exit(9)"))
    assert (address, pid) == (f"unix://{sock}", 4242)
    assert (bundle / "address").read_text() == address


def test_start_replaces_a_stale_socket_and_writes_its_files(short_tmp: Path, bundle: Path) -> None:
    p = params(short_tmp, bundle)
    sock = bootstrap.socket_path(str(short_tmp / "s"), "default", "c1")
    os.makedirs(os.path.dirname(sock))
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(sock)  # bound, never listening, then gone: a killed shim's leftover
    dead.close()
    code = (
        "import socket\n"
        f"s = socket.socket(socket.AF_UNIX); s.bind({sock!r}); s.listen()\n"
        "os.write(fd, b'ready\\n'); time.sleep(60)"
    )
    address, pid = bootstrap.start(p, argv=standin(code))
    try:
        assert address == f"unix://{sock}"
        assert (bundle / "address").read_text() == address
        assert int((bundle / "shim.pid").read_text()) == pid
        assert bootstrap.listening(sock)
        assert (bundle / "shim.log").exists()
    finally:
        os.kill(pid, 9)


def test_start_without_a_bundle_dir(short_tmp: Path) -> None:
    p = params(short_tmp, short_tmp / "missing")
    with pytest.raises(BootstrapError, match="not a directory"):
        bootstrap.start(p)


def test_the_command_line_fails_with_one_line(short_tmp: Path, bundle: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "shim", "start"],
        input=b'{"namespace": "n"}',
        cwd=bundle,
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 1
    assert r.stdout == b""
    assert r.stderr.decode().strip().splitlines() == [
        "pycontainerd-shim start: no task id (BootstrapParams.id or --id)"
    ]
