"""Differential: the lifecycle commands (create/start/state/kill/delete, ps, list, exec) and
the terminal, as pyrunc, runc and crun show them.

`state` and `list` JSON are compared field by field on what the runtime-spec fixes; each
runtime's own extras (crun's "systemd-scope") and version strings are not compared.
"""

from __future__ import annotations

import array
import json
import os
import select
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests import probes
from tests.probes import host_ns, sh, wait_status

pytestmark = [pytest.mark.root]
reference = probes.reference  # the fixture


def test_state_through_the_lifecycle(runtime, bundle, rootfs_template):
    b = bundle(["sleep", "100"])
    cid = runtime.create(b)
    st = runtime.state(cid)
    assert st["ociVersion"]
    assert st["id"] == cid
    assert st["status"] == "created"
    assert st["pid"] > 0
    assert Path(f"/proc/{st['pid']}").is_dir()
    assert st["bundle"] == str(b)
    assert st["rootfs"] == str(rootfs_template)
    assert st["created"].endswith("Z")

    runtime.cmd("start", cid)
    st2 = runtime.state(cid)
    assert (st2["status"], st2["pid"]) == ("running", st["pid"])
    assert runtime.cmd("start", cid, check=False).returncode != 0
    assert runtime.cmd("delete", cid, check=False).returncode != 0  # running: refused

    runtime.cmd("kill", cid, "KILL")
    st3 = wait_status(runtime, cid, "stopped")
    assert st3["pid"] == 0
    assert st3["created"] == st["created"]
    assert runtime.cmd("kill", cid, "KILL", check=False).returncode != 0

    runtime.cmd("delete", cid)
    p = runtime.cmd("state", cid, check=False)
    assert p.returncode != 0
    if runtime.name != "crun":  # crun: "error opening file .../status"
        assert b"does not exist" in p.stderr, p.stderr


def test_rootfs_path_relative_to_bundle(runtime, bundle):
    # "rootfs" is runc's addition to the spec's state; crun shows root.path as written.
    b = bundle(["true"], writable=True)
    cid = runtime.create(b)
    want = "rootfs" if runtime.name == "crun" else str(b / "rootfs")
    assert runtime.state(cid)["rootfs"] == want


def test_annotations_in_state(runtime, bundle):
    def edit(cfg):
        cfg["annotations"] = {"org.example.key": "value"}

    cid = runtime.create(bundle(["true"], edit=edit))
    assert runtime.state(cid)["annotations"] == {"org.example.key": "value"}


def test_created_container_runs_nothing_until_start(runtime, bundle, short_tmp):
    marker = short_tmp / "m"
    marker.mkdir()

    def edit(cfg):
        cfg["mounts"].append(
            {"destination": "/var", "type": "bind", "source": str(marker), "options": ["rbind"]}
        )

    cid = runtime.create(bundle(sh("touch /var/started"), edit=edit))
    time.sleep(0.2)
    assert not (marker / "started").exists()
    runtime.cmd("start", cid)
    deadline = time.monotonic() + 5
    while not (marker / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (marker / "started").exists()


def test_kill_created_container(runtime, bundle):
    cid = runtime.create(bundle(sh("sleep 100")))
    runtime.cmd("kill", cid, "KILL")
    wait_status(runtime, cid, "stopped")
    runtime.cmd("delete", cid)


def test_delete_force_running(runtime, bundle):
    b = bundle(sh("sleep 100"))
    cid = runtime.create(b)
    runtime.cmd("start", cid)
    pid = runtime.state(cid)["pid"]
    runtime.cmd("delete", "--force", cid)
    assert runtime.cmd("state", cid, check=False).returncode != 0
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_ps_and_list(runtime, bundle):
    b = bundle(sh("sleep 100 & sleep 100; true"))
    cid = runtime.create(b)
    runtime.cmd("start", cid)
    st = runtime.state(cid)
    deadline = time.monotonic() + 5
    while True:
        pids = json.loads(runtime.cmd("ps", "--format", "json", cid).stdout)
        if len(pids) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert st["pid"] in pids
    assert len(pids) == 3, pids  # sh and its two sleeps
    table = runtime.cmd("ps", cid).stdout.decode().splitlines()
    assert "PID" in table[0].split()
    assert len(table) == 4, table

    listed = json.loads(runtime.cmd("list", "--format", "json").stdout)
    mine = [c for c in listed if c["id"] == cid]
    assert len(mine) == 1, listed
    assert (mine[0]["status"], mine[0]["pid"], mine[0]["bundle"]) == (
        "running",
        st["pid"],
        str(b),
    )
    assert cid in runtime.cmd("list", "-q").stdout.decode().split()
    table = runtime.cmd("list").stdout.decode().splitlines()
    assert {"PID", "STATUS"} <= set(table[0].split())  # crun's first column is NAME, runc's ID
    assert any(line.split()[0] == cid for line in table[1:])


def test_list_empty_root(runtime):
    p = runtime.cmd("list", "--format", "json")
    assert json.loads(p.stdout or b"null") in (None, [])


# -- exec -------------------------------------------------------------------------------------


@pytest.fixture
def running(runtime, bundle):
    """A started container whose init sleeps; exec tests enter it."""

    def edit(cfg):
        cfg["process"]["env"].append("FROM_CONFIG=yes")

    cid = runtime.create(bundle(["sleep", "1000"], edit=edit))
    runtime.cmd("start", cid)
    return cid, runtime.state(cid)["pid"]


NS = ("pid", "net", "ipc", "uts", "mnt", "cgroup")


def test_exec_enters_the_namespaces(runtime, running):
    cid, pid = running
    script = "for n in " + " ".join(NS) + "; do readlink /proc/self/ns/$n; done; echo $$"
    p = runtime.cmd("exec", cid, "sh", "-c", script)
    lines = p.stdout.decode().splitlines()
    assert lines[:-1] == [os.readlink(f"/proc/{pid}/ns/{n}") for n in NS]
    for n, inside in zip(NS, lines, strict=False):
        assert inside != host_ns(n)
    assert int(lines[-1]) > 1  # a new process in the container's pid namespace


def test_exec_sees_the_container(runtime, running):
    cid, _ = running
    p = runtime.cmd("exec", cid, "sh", "-c", "hostname; echo $(tr '\\0' ' ' < /proc/1/cmdline); id")
    assert p.stdout.decode().splitlines() == ["pyrunc", "sleep 1000", "uid=0(root) gid=0(root)"]


def test_exec_env_cwd_user(runtime, running):
    cid, _ = running
    args = ["--env", "EXTRA=1", "--cwd", "/etc", "--user", "1000:1000", cid]
    script = 'echo "$EXTRA ${FROM_CONFIG:-unset}"; pwd; id -u; id -g'
    p = runtime.cmd("exec", *args, "/bin/sh", "-c", script)
    # runc adds --env to the config's environment; crun 1.8 replaces it (no PATH either).
    merged = "unset" if runtime.name == "crun" else "yes"
    assert p.stdout.decode().splitlines() == [f"1 {merged}", "/etc", "1000", "1000"]


def test_exec_process_json(runtime, running, short_tmp):
    cid, _ = running
    proc = {
        "args": ["sh", "-c", 'echo "$ONLY"; pwd; id -u; cat /proc/self/status'],
        "env": ["ONLY=this", "PATH=/bin:/usr/bin"],
        "cwd": "/tmp",
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
        "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": []},
        "noNewPrivileges": True,
    }
    path = short_tmp / "process.json"
    path.write_text(json.dumps(proc))
    p = runtime.cmd("exec", "--process", str(path), cid)
    lines = p.stdout.decode().splitlines()
    assert lines[:3] == ["this", "/tmp", "1000"]
    status = dict(line.split(":", 1) for line in lines[3:] if ":" in line)
    assert status["CapBnd"].strip() == f"{1 << 5:016x}"
    assert status["CapEff"].strip() == "0" * 16
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Groups"].split() == ["10"]


def test_exec_joins_the_cgroup_and_identity(runtime, bundle, short_tmp):
    # The exec'd process lands in the init's cgroups and gets the config's process
    # settings (capabilities, no_new_privs, rlimits) unless the command line says otherwise.
    def edit(cfg):
        cfg["process"]["capabilities"]["bounding"].append("CAP_CHOWN")
        cfg["process"]["rlimits"].append({"type": "RLIMIT_NPROC", "soft": 77, "hard": 88})

    cid = runtime.create(bundle(["sleep", "1000"], edit=edit))
    runtime.cmd("start", cid)
    init = runtime.state(cid)["pid"]
    pid_file = short_tmp / "exec.pid"
    detached(runtime, "exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "100")
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()

    def status(p: int) -> dict[str, str]:
        wanted = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
        lines = Path(f"/proc/{p}/status").read_text().splitlines()
        return {k: v.strip() for k, _, v in (x.partition(":") for x in lines) if k in wanted}

    got, want = status(pid), status(init)
    if runtime.name == "crun":
        # crun 1.8's exec takes neither noNewPrivileges, the capability sets (only the
        # bounding set) nor the rlimits from the config; runc's and pyrunc's take them all.
        got = {k: v for k, v in got.items() if k in ("CapBnd", "Seccomp")}
        want = {k: v for k, v in want.items() if k in ("CapBnd", "Seccomp")}
    assert got == want
    if runtime.name == "crun":
        return  # nor the rlimits
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert Path(f"/proc/{init}/limits").read_text() == limits
    assert "77" in limits and "88" in limits


def test_exec_exit_code(runtime, running):
    cid, _ = running
    assert runtime.cmd("exec", cid, "sh", "-c", "exit 3", check=False).returncode == 3
    assert runtime.cmd("exec", cid, "sh", "-c", "kill -KILL $$", check=False).returncode == 137


def test_exec_stdio(runtime, running):
    cid, _ = running
    p = runtime.cmd("exec", cid, "sh", "-c", "cat; echo err >&2", input=b"piped in\n")
    assert p.stdout == b"piped in\n"
    assert b"err" in p.stderr


def test_exec_missing_binary_fails(runtime, running):
    cid, _ = running
    p = runtime.cmd("exec", cid, "/no/such/thing", check=False)
    assert p.returncode != 0
    # The container is untouched.
    assert runtime.state(cid)["status"] == "running"


def detached(runtime, *args: str) -> None:
    """A command whose process outlives it (exec -d): no pipes it could keep open."""
    p = subprocess.run(
        [*runtime.argv, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=20,
        check=False,
    )
    assert p.returncode == 0, f"{runtime.name} {' '.join(args)} exited {p.returncode}"


def test_exec_detached(runtime, running, short_tmp):
    cid, _ = running
    pid_file = short_tmp / "exec.pid"
    detached(runtime, "exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "100")
    pid = int(pid_file.read_text())
    assert pid in json.loads(runtime.cmd("ps", "--format", "json", cid).stdout)


def test_exec_in_stopped_container_fails(runtime, bundle):
    cid = runtime.create(bundle(["true"]))
    runtime.cmd("start", cid)
    wait_status(runtime, cid, "stopped")
    assert runtime.cmd("exec", cid, "true", check=False).returncode != 0


def test_kill_all(runtime, running):
    cid, _ = running
    detached(runtime, "exec", "-d", cid, "sleep", "100")
    runtime.cmd("kill", "--all", cid, "KILL")
    wait_status(runtime, cid, "stopped")


def test_pid_file(runtime, bundle, short_tmp):
    pid_file = short_tmp / "init.pid"
    cid = runtime.create(bundle(["sleep", "100"]), None, "--pid-file", str(pid_file))
    assert int(pid_file.read_text()) == runtime.state(cid)["pid"]


# -- terminal ---------------------------------------------------------------------------------


class ConsoleSocket:
    """The receiving end of --console-socket: accepts one connection, takes the pty master
    from its SCM_RIGHTS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(10)

    def receive(self) -> int:
        conn, _ = self.server.accept()
        with conn:
            fds = array.array("i")
            _, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        assert len(fds) == 1, "no pty master on the console socket"
        return fds[0]

    def close(self) -> None:
        self.server.close()


def read_all(fd: int, timeout: float = 10) -> bytes:
    """Read a pty master until the other side is closed (EIO) or the timeout."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.fixture
def console(short_tmp):
    c = ConsoleSocket(short_tmp / "console.sock")
    yield c
    c.close()


def with_terminal(cfg):
    cfg["process"]["terminal"] = True
    cfg["process"]["consoleSize"] = {"height": 30, "width": 100}


def test_terminal_through_console_socket(runtime, bundle, console):
    script = (
        "tty; stty size; test -t 0 && echo stdin-tty; "
        '[ "$(stat -c %t:%T /dev/console)" = "$(stat -c %t:%T $(tty))" ] && echo console; '
        "echo done"
    )
    b = bundle(sh(script), edit=with_terminal)
    cid = runtime.create(b, None, "--console-socket", str(console.path))
    master = console.receive()
    try:
        runtime.cmd("start", cid)
        out = read_all(master).decode().replace("\r\n", "\n")
    finally:
        os.close(master)
    lines = out.splitlines()
    assert lines[0] == "/dev/pts/0", out
    assert lines[1] == "30 100", out
    assert lines[2:] == ["stdin-tty", "console", "done"], out
    wait_status(runtime, cid, "stopped")


def test_terminal_input(runtime, bundle, console):
    b = bundle(sh("read -r line; echo got:$line"), edit=with_terminal)
    cid = runtime.create(b, None, "--console-socket", str(console.path))
    master = console.receive()
    try:
        runtime.cmd("start", cid)
        os.write(master, b"hello\n")
        out = read_all(master).decode()
    finally:
        os.close(master)
    assert "got:hello" in out, out
    wait_status(runtime, cid, "stopped")


def test_exec_with_terminal(runtime, running, console):
    cid, _ = running
    args = ["exec", "-t", "--console-socket", str(console.path), "-d", cid]
    proc = subprocess.Popen(
        [*runtime.argv, *args, "sh", "-c", "tty; echo exec-done"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    master = console.receive()
    try:
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
        out = read_all(master).decode().replace("\r\n", "\n")
    finally:
        os.close(master)
        proc.communicate()
    lines = out.splitlines()
    assert lines[0].startswith("/dev/pts/"), out
    assert lines[1] == "exec-done", out


def test_terminal_without_console_socket_refused(runtime, bundle):
    b = bundle(["true"], edit=with_terminal)
    with pytest.raises(AssertionError, match="create exited"):
        runtime.create(b)


def _listed(rt, cid: str) -> dict:
    rows = json.loads(rt.cmd("list", "--format", "json").stdout or b"[]")
    return next(r for r in rows if r["id"] == cid)


def test_list_fields_match_runc(runtime, bundle, reference):
    """`list --format json` has runc's keys, annotations only when there are some, and the
    same ociVersion as `state` (crun 1.8 prints fewer keys: not compared)."""
    if runtime.name == "crun":
        pytest.skip("crun's list JSON has no ociVersion or rootfs")
    cid = runtime.create(bundle(["sleep", "100"]))
    row = _listed(runtime, cid)
    assert row["ociVersion"] == runtime.state(cid)["ociVersion"]
    if reference.rt is None:
        pytest.skip(reference.why)
    ref_cid = reference.rt.create(bundle(["sleep", "100"]))
    assert sorted(row) == sorted(_listed(reference.rt, ref_cid))


def test_list_shows_annotations(runtime, bundle):
    def edit(cfg):
        cfg["annotations"] = {"org.example.key": "value"}

    cid = runtime.create(bundle(["sleep", "100"], edit=edit))
    row = _listed(runtime, cid)
    if runtime.name != "crun":  # crun 1.8 leaves annotations out of list
        assert row["annotations"] == {"org.example.key": "value"}
    assert row["status"] == "created"


def test_run_detached(runtime, bundle):
    b = bundle(["sleep", "100"])
    cid = runtime.new_id()
    runtime.bundles.add(b)
    detached(runtime, "run", "-d", "--bundle", str(b), cid)
    assert runtime.state(cid)["status"] == "running"


@pytest.mark.parametrize("sig", ["9", "KILL", "SIGKILL"])
def test_kill_signal_spellings(runtime, bundle, sig):
    cid = runtime.create(bundle(["sleep", "100"]))
    runtime.cmd("start", cid)
    runtime.cmd("kill", cid, sig)
    wait_status(runtime, cid, "stopped")


def test_delete_created_container(runtime, bundle):
    b = bundle(["sleep", "100"])
    cid = runtime.create(b)
    pid = runtime.state(cid)["pid"]
    runtime.cmd("delete", cid)
    assert runtime.cmd("state", cid, check=False).returncode != 0
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)
