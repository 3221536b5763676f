"""`pycontainerd-shim` as a real process: start (detached, idempotent), the Task API over its
socket against pyrunc and runc, Shutdown and the idle exit, `shim delete` after a kill -9.

Each test starts its shims with `python -m shim start` (cwd = the bundle, BootstrapParams on
stdin, as the daemon does), talks to them with the generated stub, and in `finally` kills
whatever shim, container, mount and socket is left (the `Shim` helper and the runtime
fixture, which deletes the containers and their cgroups).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from containerd_py.api.runtime.task.v1 import shim_pb2 as pb
from containerd_py.api.runtime.task.v1 import shim_pb2_grpc
from containerd_py.api.types.v1 import io_pb2, mount_pb2, runtime_pb2
from containerd_py.api.types.v1 import task_pb2 as types
from tests.runtimes import CGROUP_ROOT, Runtime, make_bundle
from tests.task_runtime import runtimes_under_test

pytestmark = [pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


# -- helpers ---------------------------------------------------------------------------------


def shim_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_shim(
    action: str, bundle: Path, params: dict[str, Any], *extra: str, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """`python -m shim ACTION` as the daemon runs it: cwd the bundle, params on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "shim", action, *extra],
        input=json.dumps(params).encode(),
        cwd=bundle,
        env=shim_env(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def wait_for(cond: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cgroup_dirs(bundle: Path) -> list[Path]:
    """The container's cgroup dirs that exist, in every hierarchy."""
    cfg = json.loads((bundle / "config.json").read_text())
    rel = cfg["linux"]["cgroupsPath"].strip("/")
    return [h / rel for h in CGROUP_ROOT.iterdir() if (h / rel).is_dir()]


def mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == real or p.startswith(real + "/")]


def log_lines(path: Path, stream: str | None = None) -> list[str]:
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [e["log"] for e in entries if stream is None or e["stream"] == stream]


class Shim:
    """One shim process for one bundle, and everything it may leave behind."""

    def __init__(
        self,
        rt: Runtime,
        bundle: Path,
        socket_dir: Path,
        *,
        namespace: str = "default",
        cid: str | None = None,
        daemon_address: str = "",
        idle_timeout: float = 60.0,
    ) -> None:
        self.rt = rt
        self.bundle = bundle
        self.socket_dir = socket_dir
        self.namespace = namespace
        self.id = cid or rt.new_id()
        rt.ids.add(self.id)
        rt.bundles.add(bundle)
        self.daemon_address = daemon_address
        self.idle_timeout = idle_timeout
        self.address = ""
        self.pid = 0
        self._channel: grpc.Channel | None = None
        self._stub: shim_pb2_grpc.TaskStub | None = None

    @property
    def params(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "socket_dir": str(self.socket_dir),
            "daemon_address": self.daemon_address,
            "log_level": "debug",
        }

    @property
    def socket(self) -> str:
        return self.address.removeprefix("unix://")

    def start(self) -> dict[str, Any]:
        p = run_shim("start", self.bundle, self.params, "--idle-timeout", str(self.idle_timeout))
        assert p.returncode == 0, p.stderr.decode()
        result = json.loads(p.stdout)
        self.address = result["address"]
        self.pid = int(result["shim_pid"])
        return result

    @property
    def stub(self) -> shim_pb2_grpc.TaskStub:
        if self._stub is None:
            self._channel = grpc.insecure_channel("unix:" + self.socket)
            self._stub = shim_pb2_grpc.TaskStub(self._channel)
        return self._stub

    def call(self, name: str, request: Any, timeout: float = TIMEOUT) -> Any:
        return getattr(self.stub, name)(request, timeout=timeout)

    def create(self, *, log: bool = True, **kw: Any) -> int:
        req = pb.CreateRequest(
            id=self.id,
            bundle=str(self.bundle),
            runtime=runtime_pb2.RuntimeOptions(binary_name=self.rt.name, root=str(self.rt.root)),
            **kw,
        )
        if log:
            req.log.CopyFrom(io_pb2.LogConfig(path=str(self.log_path)))
        return self.call("Create", req).pid

    @property
    def log_path(self) -> Path:
        return self.bundle / "ctr.log"

    def start_task(self, exec_id: str = "") -> int:
        return self.call("Start", pb.StartRequest(id=self.id, exec_id=exec_id)).pid

    def wait(self, exec_id: str = "", timeout: float = TIMEOUT) -> pb.WaitResponse:
        return self.call("Wait", pb.WaitRequest(id=self.id, exec_id=exec_id), timeout)

    def state(self, exec_id: str = "") -> pb.StateResponse:
        return self.call("State", pb.StateRequest(id=self.id, exec_id=exec_id))

    def kill(self, sig: int, exec_id: str = "", all: bool = False) -> None:
        self.call("Kill", pb.KillRequest(id=self.id, exec_id=exec_id, signal=sig, all=all))

    def delete(self, exec_id: str = "") -> pb.DeleteResponse:
        return self.call("Delete", pb.DeleteRequest(id=self.id, exec_id=exec_id))

    def shutdown(self, now: bool = False) -> None:
        self.call("Shutdown", pb.ShutdownRequest(id=self.id, now=now))

    def exec(self, exec_id: str, args: list[str], **kw: Any) -> None:
        cfg = json.loads((self.bundle / "config.json").read_text())
        spec = dict(cfg["process"], args=args, terminal=False)
        req = pb.ExecRequest(id=self.id, exec_id=exec_id, **kw)
        req.spec.value = json.dumps(spec).encode()
        self.call("Exec", req)

    def attach(self, exec_id: str = "", *, stdin: bool = False) -> Attached:
        return Attached(self.stub, self.id, exec_id, stdin)

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    def kill9(self) -> None:
        if self.pid and alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            assert wait_gone(self.pid)

    def cleanup(self) -> None:
        """Kill the shim, then the rest goes: runtime state and cgroups (the runtime
        fixture), mounts, the socket."""
        self.close_channel()
        pid = self.pid or _read_int(self.bundle / "shim.pid")
        if pid and alive(pid):
            try:
                cmd = psutil.Process(pid).cmdline()
            except psutil.NoSuchProcess:
                cmd = []
            if "serve" in cmd:
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid)
        self.rt.cmd("delete", "--force", self.id, check=False, timeout=30)
        for point in reversed(mounts_under(self.bundle / "rootfs")):
            subprocess.run(["umount", "-l", point], check=False)
        if self.socket:
            try:
                os.unlink(self.socket)
            except FileNotFoundError:
                pass


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


class Attached:
    """An Attach call: send() stdin, close_stdin(), resize(); output() collects stdout."""

    def __init__(self, stub: shim_pb2_grpc.TaskStub, id: str, exec_id: str, stdin: bool) -> None:
        import queue

        self._q: queue.Queue[pb.AttachRequest | None] = queue.Queue()
        self._q.put(
            pb.AttachRequest(
                start=pb.AttachStart(id=id, exec_id=exec_id, stdin=stdin, stdout=True, stderr=True)
            )
        )
        self.call = stub.Attach(self._requests(), timeout=TIMEOUT)
        # The shim confirms once its output subscription is live: nothing is missed after.
        md = dict(self.call.initial_metadata())
        assert md.get("pycontainerd-attached") == "1", md
        self.chunks: list[tuple[int, bytes]] = []
        self.done = threading.Event()
        self.error: grpc.RpcError | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self) -> Iterator[pb.AttachRequest]:
        while (item := self._q.get()) is not None:
            yield item

    def _read(self) -> None:
        try:
            for r in self.call:
                self.chunks.append((r.stream, r.data))
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.done.set()

    def send(self, data: bytes) -> None:
        self._q.put(pb.AttachRequest(stdin=data))

    def close_stdin(self) -> None:
        self._q.put(pb.AttachRequest(close_stdin=True))

    def resize(self, width: int, height: int) -> None:
        self._q.put(pb.AttachRequest(resize=io_pb2.ConsoleSize(width=width, height=height)))

    def end(self) -> None:
        self._q.put(None)

    def output(self, stream: int | None = None) -> bytes:
        return b"".join(d for s, d in list(self.chunks) if stream is None or s == stream)

    def wait_output(self, needle: bytes, timeout: float = 15.0) -> bytes:
        wait_for(lambda: needle in self.output(), timeout, f"{needle!r} in attach output")
        return self.output()


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(params=runtimes_under_test())
def rt(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[Runtime]:
    r = Runtime(request.param, short_tmp)
    try:
        yield r
    finally:
        r.cleanup()


@pytest.fixture
def shims(rt: Runtime, short_tmp: Path) -> Iterator[Any]:
    """shims(bundle, **kw) -> a Shim (not started); all of them cleaned up at the end."""
    made: list[Shim] = []

    def factory(bundle: Path, **kw: Any) -> Shim:
        s = Shim(rt, bundle, short_tmp / "s", **kw)
        made.append(s)
        return s

    try:
        yield factory
    finally:
        for s in made:
            s.cleanup()


@pytest.fixture
def make(rootfs_template: Path, tmp_path: Path) -> Any:
    def factory(args: list[str], **kw: Any) -> Path:
        return make_bundle(tmp_path, rootfs_template, args, **kw)

    return factory


COUNTER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.1; done"]


# -- tests -----------------------------------------------------------------------------------


def test_lifecycle_log_exit_and_shutdown(rt: Runtime, shims: Any, make: Any) -> None:
    bundle = make(["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; exit 7"])
    s = shims(bundle)
    result = s.start()
    assert result["version"] == 1 and result["protocol"] == "grpc"
    assert (bundle / "address").read_text() == result["address"]
    assert int((bundle / "shim.pid").read_text()) == s.pid
    assert len(s.socket.encode()) < 108
    pid = s.create()
    assert s.state().status == types.CREATED
    assert s.start_task() == pid
    w = s.wait()
    assert w.exit_status == 7
    st = s.state()
    assert (st.status, st.exit_status, st.pid) == (types.STOPPED, 7, pid)
    assert st.exited_at.ToNanoseconds() == w.exited_at.ToNanoseconds()
    # On disk before Wait answered; the log has every line, in order within its stream
    # (two pipes, two copiers: no order across streams, as with docker).
    assert json.loads((bundle / "exit").read_text())["exit_status"] == 7
    assert log_lines(s.log_path, "stdout") == [f"line {i}\n" for i in range(1, 6)]
    assert log_lines(s.log_path, "stderr") == ["oops\n"]
    d = s.delete()
    assert (d.exit_status, d.pid) == (7, pid)
    assert not (bundle / "exit").exists()
    with pytest.raises(grpc.RpcError) as e:
        s.state()
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    s.shutdown()
    assert wait_gone(s.pid), "the shim did not exit after Delete + Shutdown"
    assert not os.path.exists(s.socket)
    assert not cgroup_dirs(bundle)
    assert not alive(pid)
    assert rt.cmd("state", s.id, check=False).returncode != 0


def test_shim_survives_its_parent(rt: Runtime, shims: Any, make: Any) -> None:
    """The "daemon" that ran `start` is killed with its whole process group: the shim, in
    its own session, keeps serving and the container keeps logging."""
    bundle = make(COUNTER)
    s = shims(bundle)
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.run([sys.executable, '-m', 'shim', 'start', '--idle-timeout', '60'],"
        f" input=sys.stdin.buffer.read(), cwd={str(bundle)!r}, capture_output=True)\n"
        "sys.stdout.buffer.write(p.stdout); sys.stdout.flush()\n"
        "time.sleep(300)\n"
    )
    standin = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=shim_env(),
        start_new_session=True,
    )
    try:
        assert standin.stdin is not None and standin.stdout is not None
        standin.stdin.write(json.dumps(s.params).encode())
        standin.stdin.close()
        result = json.loads(standin.stdout.readline())
        s.address, s.pid = result["address"], int(result["shim_pid"])
        s.create()
        s.start_task()
        proc = psutil.Process(s.pid)
        assert os.getsid(s.pid) == s.pid, "the shim leads its own session"
        assert proc.ppid() != standin.pid
        assert os.getpgid(s.pid) != os.getpgid(standin.pid)
        # Nothing of the parent's is held: its pipes (the daemon reads start's stdout to
        # EOF), the test's cwd; stdin is /dev/null.
        fds = {os.readlink(f"/proc/{s.pid}/fd/{n}") for n in os.listdir(f"/proc/{s.pid}/fd")}
        parent_pipe = f"pipe:[{os.fstat(standin.stdout.fileno()).st_ino}]"
        assert parent_pipe not in fds
        assert os.readlink(f"/proc/{s.pid}/fd/0") == "/dev/null"
        assert proc.cwd() == str(bundle)
        os.killpg(standin.pid, signal.SIGKILL)
        standin.wait(10)
        n = len(log_lines(s.log_path))
        wait_for(lambda: len(log_lines(s.log_path)) > n + 5, 10, "more log lines")
        assert alive(s.pid)
        assert s.state().status == types.RUNNING
        s.kill(signal.SIGKILL)
        assert s.wait().exit_status == 137
        s.delete()
    finally:
        if standin.poll() is None:
            os.killpg(standin.pid, signal.SIGKILL)
            standin.wait()


def test_second_start_returns_the_same_shim(shims: Any, make: Any) -> None:
    bundle = make(["true"])
    s = shims(bundle)
    first = s.start()
    again = run_shim("start", bundle, s.params)
    assert again.returncode == 0, again.stderr.decode()
    assert json.loads(again.stdout) == first
    assert [p for p in psutil.process_iter(["cmdline"]) if _serves(p, s.socket)] == [
        psutil.Process(s.pid)
    ]


def _serves(p: psutil.Process, socket: str) -> bool:
    cmd = p.info.get("cmdline") or []
    return "serve" in cmd and socket in cmd


def test_exec_output_exit_code_and_pids(shims: Any, make: Any) -> None:
    s = shims(make(["sleep", "300"]))
    s.start()
    init = s.create()
    s.start_task()
    s.exec("e1", ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
    st = s.state("e1")
    assert (st.status, st.exec_id) == (types.CREATED, "e1")
    att = s.attach("e1")
    epid = s.start_task("e1")
    assert epid > 0 and epid != init
    assert s.wait("e1").exit_status == 3
    assert att.done.wait(10)
    assert att.output(io_pb2.STDIO_STREAM_STDOUT) == b"to-out\n"
    assert att.output(io_pb2.STDIO_STREAM_STDERR) == b"to-err\n"
    assert s.delete("e1").exit_status == 3
    # A long one shows up in Pids with its exec id.
    s.exec("e2", ["sleep", "300"])
    e2 = s.start_task("e2")
    procs = s.call("Pids", pb.PidsRequest(id=s.id)).processes
    assert {p.pid for p in procs} >= {init, e2}
    details = {p.pid: p.info for p in procs if p.info.value}
    d = types.ProcessDetails()
    assert details[e2].Unpack(d) and d.exec_id == "e2"
    with pytest.raises(grpc.RpcError) as e:
        s.delete("e2")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    s.kill(signal.SIGKILL, "e2")
    assert s.wait("e2").exit_status == 137
    with pytest.raises(grpc.RpcError) as e:
        s.exec("e2", ["true"])
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    s.kill(signal.SIGKILL)
    assert s.wait().exit_status == 137
    s.delete()


def test_kill_signals(shims: Any, make: Any) -> None:
    s = shims(make(["sh", "-c", "trap 'exit 42' TERM; echo trapped; while :; do sleep 0.1; done"]))
    s.start()
    s.create()
    s.start_task()
    wait_for(lambda: log_lines(s.log_path) == ["trapped\n"], 10, "the trap")
    s.kill(signal.SIGTERM)
    assert s.wait().exit_status == 42
    with pytest.raises(grpc.RpcError) as e:
        s.kill(signal.SIGKILL)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND  # already finished
    s.delete()
    # The same shim runs another task under a new id: SIGKILL is 137.
    s2 = Shim(s.rt, s.bundle, s.socket_dir, cid=s.rt.new_id())
    s2.address, s2.pid = s.address, s.pid
    s2.create()
    s2.start_task()
    s2.kill(signal.SIGKILL, all=True)
    assert s2.wait().exit_status == 137
    s2.delete()
    s2.close_channel()


def test_pause_resume(shims: Any, make: Any) -> None:
    s = shims(make(COUNTER))
    s.start()
    s.create()
    s.start_task()
    wait_for(lambda: len(log_lines(s.log_path)) > 2, 10, "output")
    s.call("Pause", pb.PauseRequest(id=s.id))
    assert s.state().status == types.PAUSED
    time.sleep(0.3)
    n = len(log_lines(s.log_path))
    time.sleep(0.5)
    assert len(log_lines(s.log_path)) == n, "a paused container wrote output"
    s.call("Resume", pb.ResumeRequest(id=s.id))
    assert s.state().status == types.RUNNING
    wait_for(lambda: len(log_lines(s.log_path)) > n + 2, 10, "output after resume")
    s.kill(signal.SIGKILL)
    assert s.wait().exit_status == 137
    s.delete()


def test_attach_stdin_of_cat(shims: Any, make: Any) -> None:
    s = shims(make(["cat"]))
    s.start()
    s.create(open_stdin=True)
    att = s.attach(stdin=True)
    s.start_task()
    att.send(b"hello shim\n")
    assert att.wait_output(b"hello shim\n") == b"hello shim\n"
    att.send(b"second\n")
    att.wait_output(b"second\n")
    att.close_stdin()
    assert s.wait().exit_status == 0
    assert att.done.wait(10)
    att.end()
    assert log_lines(s.log_path) == ["hello shim\n", "second\n"]
    s.delete()


def test_terminal_task(shims: Any, make: Any) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["process"]["terminal"] = True

    s = shims(make(["sh", "-c", "read x; stty size; echo got $x; exit 5"], edit=edit))
    s.start()
    s.create(terminal=True, open_stdin=True)
    att = s.attach(stdin=True)
    s.start_task()
    # An exec with its own terminal, beside the init's.
    s.exec("t1", ["sh", "-c", "tty; stty size"], terminal=True)
    eatt = s.attach("t1")
    s.start_task("t1")
    assert s.wait("t1").exit_status == 0
    assert eatt.done.wait(10)
    assert b"/dev/pts/" in eatt.output(), eatt.output()
    assert s.state("t1").terminal
    s.delete("t1")
    s.call("ResizePty", pb.ResizePtyRequest(id=s.id, width=123, height=45))
    att.send(b"go\n")
    assert s.wait().exit_status == 5
    assert att.done.wait(10)
    out = att.output()
    assert b"45 123" in out and b"got go" in out, out
    assert {stream for stream, _ in att.chunks} == {io_pb2.STDIO_STREAM_STDOUT}
    assert s.state().terminal
    assert "got go\r\n" in log_lines(s.log_path)
    s.delete()


def test_stats_and_update(shims: Any, make: Any) -> None:
    s = shims(make(["sh", "-c", "i=0; while :; do i=$((i+1)); done"]))
    s.start()
    s.create()
    s.start_task()
    time.sleep(0.5)
    st = s.call("Stats", pb.StatsRequest(id=s.id)).stats
    assert st.cpu.usage_total_ns > 0
    assert st.memory.usage > 0
    assert st.pids.current >= 1
    s.call(
        "Update",
        pb.UpdateRequest(id=s.id, resources=_any_json({"pids": {"limit": 77}})),
    )
    assert s.call("Stats", pb.StatsRequest(id=s.id)).stats.pids.limit == 77
    s.kill(signal.SIGKILL)
    s.wait()
    s.delete()


def _any_json(obj: Any) -> Any:
    from google.protobuf import any_pb2

    return any_pb2.Any(value=json.dumps(obj).encode())


def test_rootfs_mounts_are_made_and_removed(shims: Any, make: Any, rootfs_template: Path) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["root"] = {"path": "rootfs", "readonly": False}

    bundle = make(["sh", "-c", "echo made > /new-file"], edit=edit)
    upper, work = bundle / "upper", bundle / "work"
    upper.mkdir()
    work.mkdir()
    s = shims(bundle)
    s.start()
    overlay = mount_pb2.Mount(
        type="overlay",
        source="overlay",
        options=[f"lowerdir={rootfs_template}", f"upperdir={upper}", f"workdir={work}"],
    )
    s.create(rootfs=[overlay])
    assert len(mounts_under(bundle / "rootfs")) == 1
    s.start_task()
    assert s.wait().exit_status == 0
    assert (upper / "new-file").read_text() == "made\n"
    s.delete()
    assert mounts_under(bundle / "rootfs") == []


def test_errors_are_statuses(shims: Any, make: Any) -> None:
    s = shims(make(["sleep", "300"]))
    s.start()
    with pytest.raises(grpc.RpcError) as e:
        s.state()
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    s.create()
    with pytest.raises(grpc.RpcError) as e:
        s.create()
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as e:
        s.start_task("nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    s.start_task()
    with pytest.raises(grpc.RpcError) as e:
        s.delete()
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        s.call("Exec", pb.ExecRequest(id=s.id, exec_id="x"))  # no spec
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Shutdown while the task is there: the shim stays.
    s.shutdown()
    time.sleep(0.5)
    assert alive(s.pid) and s.state().status == types.RUNNING
    c = s.call("Connect", pb.ConnectRequest(id=s.id))
    assert (c.shim_pid, c.task_pid) == (s.pid, s.state().pid)
    s.kill(signal.SIGKILL)
    s.wait()
    s.delete()
    s.shutdown()
    assert wait_gone(s.pid)


def test_wait_from_a_client_that_goes_does_not_hold_the_shim(shims: Any, make: Any) -> None:
    s = shims(make(["sleep", "300"]))
    s.start()
    s.create()
    s.start_task()
    for _ in range(5):
        with pytest.raises(grpc.RpcError) as e:
            s.wait(timeout=0.3)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(1.5)  # each abandoned Wait gives its thread back within a second
    threads = psutil.Process(s.pid).num_threads()
    s.kill(signal.SIGKILL)
    assert s.wait().exit_status == 137
    s.delete()
    assert threads < 40


def test_idle_shim_exits_by_itself(shims: Any, make: Any) -> None:
    s = shims(make(["true"]), idle_timeout=1.0)
    s.start()
    assert wait_gone(s.pid, 10), "an idle shim with no task did not exit"
    assert not os.path.exists(s.socket)


def test_idle_exit_after_a_lost_shutdown(shims: Any, make: Any) -> None:
    s = shims(make(["true"]), idle_timeout=1.0)
    s.start()
    s.create()
    s.start_task()
    assert s.wait().exit_status == 0
    time.sleep(1.5)
    assert alive(s.pid), "a shim with a task (even stopped) must stay"
    s.delete()  # ...and the daemon never sends Shutdown
    assert wait_gone(s.pid, 10)


def test_shim_delete_after_kill9(rt: Runtime, shims: Any, make: Any, rootfs_template: Path) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["root"] = {"path": "rootfs", "readonly": True}

    bundle = make(COUNTER, edit=edit)
    s = shims(bundle)
    s.start()
    bind = mount_pb2.Mount(type="bind", source=str(rootfs_template), options=["rbind", "ro"])
    init = s.create(rootfs=[bind])
    s.start_task()
    s.kill9()
    assert alive(init), "the container dies with its shim"
    p = run_shim("delete", bundle, s.params)
    assert p.returncode == 0, p.stderr.decode()
    d = json.loads(p.stdout)
    assert d["exit_status"] == 137 and d["pid"] == init
    assert "exited_at" in d
    assert wait_gone(init)
    assert not cgroup_dirs(bundle)
    assert mounts_under(bundle / "rootfs") == []
    assert not os.path.exists(s.socket)
    assert rt.cmd("state", s.id, check=False).returncode != 0


def test_shim_delete_reports_the_recorded_exit(shims: Any, make: Any) -> None:
    bundle = make(["sh", "-c", "exit 5"])
    s = shims(bundle)
    s.start()
    s.create()
    s.start_task()
    assert s.wait().exit_status == 5
    s.kill9()
    p = run_shim("delete", bundle, s.params)
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["exit_status"] == 5


def test_idle_shim_memory_and_ready_time(shims: Any, make: Any) -> None:
    """The figures to watch (printed with -s): PSS of idle shims and start → ready."""
    made = []
    times = []
    for _ in range(3):
        s = shims(make(["true"]))
        t0 = time.monotonic()
        s.start()
        times.append(time.monotonic() - t0)
        made.append(s)
    time.sleep(1.0)
    pss = [psutil.Process(s.pid).memory_full_info().pss for s in made]
    uss = [psutil.Process(s.pid).memory_full_info().uss for s in made]
    ready = [_ready_ms(s.bundle) for s in made]
    print(
        f"\nidle shim PSS (3 running) MB: {[round(x / 2**20, 1) for x in pss]}, "
        f"USS MB: {[round(x / 2**20, 1) for x in uss]}; `start` wall s: "
        f"{[round(t, 3) for t in times]}; serve ready ms: {ready}"
    )
    assert max(pss) < 60 * 2**20
    assert max(times) < 10


def _ready_ms(bundle: Path) -> float | None:
    import re

    m = re.search(r"ready in (\d+) ms", (bundle / "shim.log").read_text())
    return float(m.group(1)) if m else None


def test_shim_whose_bundle_is_removed_exits_once_nothing_runs(shims: Any, make: Any) -> None:
    """A task's state removed without a Delete (a crashed daemon's clean-up): the shim keeps
    serving while the container runs, and leaves once nothing of it runs any more, instead
    of waiting forever for a Delete that will not come."""
    bundle = make(["sleep", "300"])
    s = shims(bundle, idle_timeout=1.0)
    s.start()
    pid = s.create(log=False)
    s.start_task()
    shutil.rmtree(bundle)
    time.sleep(1.0)  # several of the shim's checks
    assert alive(s.pid) and s.state().status == types.RUNNING
    # The runtime cannot be driven without the bundle (runc logs into it): the container
    # ends by itself, as far as the shim can tell.
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(s.pid, 10), "the shim of a removed bundle stayed after its task exited"
