"""The shim template (shim/template.py): shims forked from a warm parent instead of exec'd.

A shim forked by the template must be indistinguishable, to the daemon and to the
container, from one `start` exec'd: detached (not the template's child, not in its
session), cwd the bundle, stdin /dev/null, `serve` in its command line, the full Task API
with logs and exit codes. `start --template` falls back to exec when no template answers;
the template survives bad requests and the shims it forked, and leaves when its socket is
taken from it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from shim import bootstrap
from shim.template import TemplateError, pidfile_of, request_shim, socket_of
from tests.integration import test_shim_server as base
from tests.integration.test_shim_server import (
    Shim,
    alive,
    log_lines,
    run_shim,
    wait_gone,
)
from tests.runtimes import Runtime

pytestmark = [pytest.mark.root]

# The shim tests' fixtures: runtimes (pyrunc and runc), bundles, shims cleaned up.
rt, shims, make = base.rt, base.shims, base.make


class Template:
    def __init__(self, socket_dir: Path) -> None:
        self.socket_dir = socket_dir
        self.pid = bootstrap.start_template(str(socket_dir))

    @property
    def socket(self) -> str:
        return socket_of(str(self.socket_dir))

    @property
    def log(self) -> str:
        try:
            return (self.socket_dir / "template.log").read_text()
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            wait_gone(self.pid)
        for path in (self.socket, pidfile_of(str(self.socket_dir))):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


@pytest.fixture
def template(short_tmp: Path) -> Iterator[Template]:
    t = Template(short_tmp / "s")
    try:
        yield t
    finally:
        t.stop()


def start_with(s: Shim, template_socket: str) -> dict[str, Any]:
    p = run_shim(
        "start",
        s.bundle,
        s.params,
        "--idle-timeout",
        str(s.idle_timeout),
        "--template",
        template_socket,
    )
    assert p.returncode == 0, p.stderr.decode()
    result = json.loads(p.stdout)
    s.address, s.pid = result["address"], int(result["shim_pid"])
    return result


def test_forked_shim_runs_a_task_detached(
    rt: Runtime, shims: Any, make: Any, template: Template
) -> None:
    bundle = make(["sh", "-c", "for i in 1 2 3; do echo line $i; done; exit 7"])
    s = shims(bundle)
    start_with(s, template.socket)
    assert f"pid {s.pid}" in template.log, template.log
    proc = psutil.Process(s.pid)
    assert proc.ppid() != template.pid
    assert os.getsid(s.pid) == os.getpgid(s.pid) == s.pid, "the shim leads its own session"
    assert "serve" in proc.cmdline() and s.id in proc.cmdline()
    assert proc.cwd() == str(bundle)
    assert os.readlink(f"/proc/{s.pid}/fd/0") == "/dev/null"
    # stdout and stderr are the bundle's shim.log, as for a shim started by exec.
    assert os.readlink(f"/proc/{s.pid}/fd/2") == str(bundle / "shim.log")
    assert (bundle / "address").read_text() == s.address
    pid = s.create()
    assert s.start_task() == pid
    assert s.wait().exit_status == 7
    assert log_lines(s.log_path, "stdout") == [f"line {i}\n" for i in (1, 2, 3)]
    assert s.delete().exit_status == 7
    s.shutdown()
    assert wait_gone(s.pid)
    assert alive(template.pid), "the template outlives the shims it forked"


def test_two_shims_from_one_template(shims: Any, make: Any, template: Template) -> None:
    a, b = shims(make(["sleep", "300"])), shims(make(["sleep", "300"]))
    start_with(a, template.socket)
    start_with(b, template.socket)
    assert a.pid != b.pid and a.socket != b.socket
    for s in (a, b):
        s.create()
        s.start_task()
    a.kill(signal.SIGKILL)
    assert a.wait().exit_status == 137
    assert b.state().status == 2  # RUNNING: one shim's task is not the other's
    b.kill(signal.SIGKILL)
    assert b.wait().exit_status == 137


def test_start_execs_a_shim_when_no_template_answers(
    shims: Any, make: Any, short_tmp: Path
) -> None:
    s = shims(make(["true"]))
    start_with(s, str(short_tmp / "s" / "template"))
    cmd = psutil.Process(s.pid).cmdline()
    assert "serve" in cmd and "--socket-dir" in cmd  # the exec'd command line, in full
    s.create()
    s.start_task()
    assert s.wait().exit_status == 0


def test_in_process_start_without_template_refuses_to_fork(make: Any, short_tmp: Path) -> None:
    p = bootstrap.Params(
        id="x",
        namespace="default",
        bundle=str(make(["true"])),
        socket_dir=str(short_tmp / "s"),
        template=str(short_tmp / "s" / "template"),
    )
    with pytest.raises(TemplateError, match="no shim template"):
        bootstrap.start(p, exec_fallback=False)
    assert not (Path(p.bundle) / "address").exists()


def test_bad_requests_get_an_error_and_the_template_goes_on(
    shims: Any, make: Any, template: Template
) -> None:
    for payload in (b"", b"not json", json.dumps({"id": "x"}).encode()):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as c:
            c.settimeout(10)
            c.connect(template.socket)
            c.send(payload)
            answer = json.loads(c.recv(65536))
        assert "bad request" in answer["error"]
    r, w = os.pipe()
    try:
        with pytest.raises(TemplateError, match="no bundle"):
            request_shim(template.socket, {"namespace": "n", "id": "x", "socket": "/s"}, w, w)
    finally:
        os.close(r)
        os.close(w)
    assert alive(template.pid)
    s = shims(make(["true"]))
    start_with(s, template.socket)
    assert f"pid {s.pid}" in template.log


def test_template_leaves_when_its_socket_is_taken(template: Template) -> None:
    os.unlink(template.socket)
    assert wait_gone(template.pid, timeout=20), "the template kept running without its socket"
    assert "no longer" in template.log


def test_forked_shims_share_the_template_pages(shims: Any, make: Any, template: Template) -> None:
    """What the template is for: most of a forked shim's memory is shared, where one
    started by exec holds its interpreter and imports privately."""
    forked = shims(make(["true"]))
    start_with(forked, template.socket)
    execd = shims(make(["true"]))
    execd.start()
    time.sleep(0.5)  # let both settle after start
    f = psutil.Process(forked.pid).memory_full_info()
    e = psutil.Process(execd.pid).memory_full_info()
    print(f"\nforked shim USS {f.uss / 2**20:.1f} MB, exec'd {e.uss / 2**20:.1f} MB")
    assert f.uss < e.uss / 2


def test_a_killed_template_leaves_no_listener_in_its_shims(
    shims: Any, make: Any, template: Template
) -> None:
    """The socket file outlives a template killed with -9; the shims it forked must not
    keep its listening socket open, or a start would connect, then wait for an answer
    nobody gives instead of hearing at once that no template is there."""
    s = shims(make(["true"]))
    start_with(s, template.socket)
    os.kill(template.pid, signal.SIGKILL)
    assert wait_gone(template.pid)
    assert os.path.exists(template.socket)
    params = {"namespace": "n", "id": "x", "bundle": str(s.bundle), "socket": "/s"}
    r, w = os.pipe()
    try:
        with pytest.raises(TemplateError, match="no shim template"):
            request_shim(template.socket, params, w, w)
    finally:
        os.close(r)
        os.close(w)
    assert alive(s.pid)
