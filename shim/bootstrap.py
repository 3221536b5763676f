"""`pycontainerd-shim start`: find or spawn the task's long-lived shim and report its address.

The daemon runs `start` with cwd = the bundle and BootstrapParams (proto3 JSON, see
bootstrap.proto) on stdin; command-line flags fill in or override them. `start`:

1. derives the socket path `<socket_dir>/<sha256("<namespace>/<id>")[:24]>` (short: unix
   socket paths are capped at 107 bytes, and a hash keeps any id within it);
2. holds an flock on the bundle directory, so that two starts of one task never race;
3. if a shim already answers on the socket, reports that one (`start` is idempotent);
4. else spawns `python -S -m shim serve ...` detached from everything of its own: a new
   session (the daemon's process group and terminal signals never reach it), no fd but
   the ready pipe, stdin /dev/null, stdout and stderr appended to `<bundle>/shim.log`, cwd
   the bundle, `GRPC_ENABLE_FORK_SUPPORT=false`. Once `start` exits, the shim is re-parented
   to init (or the nearest subreaper) and lives on whatever happens to the daemon;
5. waits for the ready pipe, writes `<bundle>/address` and `<bundle>/shim.pid`
   atomically, and prints BootstrapResult {version, address, protocol, shim_pid}.

The ready pipe (grpc cannot serve on an inherited listening fd, so the shim binds its
socket itself and says when it accepts calls):

    writer        line                   meaning for start
    ------------  ---------------------  ----------------------------------------------
    shim serve    "ready <pid>\\n"        the socket accepts calls: report it
    shim serve    "error <message>\\n"    it could not start: fail with that message
    (nobody)      EOF without a line     it died (its shim.log says why): fail
    (nobody)      nothing in time        fail; the child is killed

On any failure `start` kills the child, removes the socket, prints one line on stderr and
exits non-zero: nothing is left behind.

Why `-S` and an explicit PYTHONPATH: one shim runs per container, so its start-up time and
memory count. `-S` skips `site`, which imports and runs every .pth file of the environment
(editable-install finders, vendor hooks); the path the shim needs is handed over as
PYTHONPATH instead: the tree that holds `shim`, then this interpreter's own sys.path.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

TASK_API_VERSION = 1
DEFAULT_SOCKET_DIR = "/run/pycontainerd/s"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the NUL
READY_TIMEOUT = 20.0
LOCK_TIMEOUT = 30.0


class BootstrapError(Exception):
    """start or delete failed; the message is the one line the daemon gets."""


class Params:
    """BootstrapParams plus the shim's own settings (flags only: not part of the API)."""

    __slots__ = (
        "bundle",
        "daemon_address",
        "daemon_version",
        "id",
        "idle_timeout",
        "log_level",
        "namespace",
        "socket_dir",
        "template",
    )

    def __init__(
        self,
        id: str = "",
        namespace: str = "",
        bundle: str = "",
        socket_dir: str = "",
        daemon_address: str = "",
        daemon_version: str = "",
        log_level: str = "",
        idle_timeout: float | None = None,
        template: str = "",
    ) -> None:
        self.id = id
        self.namespace = namespace
        self.bundle = bundle
        self.socket_dir = socket_dir
        self.daemon_address = daemon_address
        self.daemon_version = daemon_version
        self.log_level = log_level
        self.idle_timeout = idle_timeout
        self.template = template

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Params({fields})"

    def validate(self) -> Params:
        """Fill the defaults in and check what start, serve and delete rely on."""
        if not self.id:
            raise BootstrapError("no task id (BootstrapParams.id or --id)")
        if not self.namespace:
            raise BootstrapError("no namespace (BootstrapParams.namespace or --namespace)")
        for what, value in (("id", self.id), ("namespace", self.namespace)):
            if "/" in value or "\0" in value or value in (".", ".."):
                raise BootstrapError(f"invalid {what} {value!r}")
        self.bundle = os.path.abspath(self.bundle or os.getcwd())
        self.socket_dir = os.path.abspath(self.socket_dir or DEFAULT_SOCKET_DIR)
        self.log_level = self.log_level or "info"
        return self


def parse_params(raw: bytes | str) -> Params:
    """BootstrapParams from proto3 JSON (either field spelling); empty input: all empty."""
    if not raw or not raw.strip():
        return Params()
    from google.protobuf import json_format

    from containerd_py.api.runtime.task.v1 import bootstrap_pb2

    msg = bootstrap_pb2.BootstrapParams()
    try:
        # Unknown fields are ignored: a newer daemon may send more than this shim knows.
        json_format.Parse(raw, msg, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise BootstrapError(f"bad BootstrapParams on stdin: {e}") from None
    return Params(
        id=msg.id,
        namespace=msg.namespace,
        bundle=msg.bundle,
        socket_dir=msg.socket_dir,
        daemon_address=msg.daemon_address,
        daemon_version=msg.daemon_version,
        log_level=msg.log_level,
    )


def params_json(p: Params) -> str:
    """p as the BootstrapParams JSON a daemon writes (for tests and tools)."""
    from google.protobuf import json_format

    from containerd_py.api.runtime.task.v1 import bootstrap_pb2

    msg = bootstrap_pb2.BootstrapParams(
        id=p.id,
        namespace=p.namespace,
        bundle=p.bundle,
        socket_dir=p.socket_dir,
        daemon_address=p.daemon_address,
        daemon_version=p.daemon_version,
        log_level=p.log_level,
    )
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None)


def socket_path(socket_dir: str, namespace: str, id: str) -> str:
    """`<socket_dir>/<first 24 hex digits of sha256("<namespace>/<id>")>`."""
    name = hashlib.sha256(f"{namespace}/{id}".encode()).hexdigest()[:24]
    path = os.path.join(socket_dir, name)
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise BootstrapError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes: use a shorter socket dir"
        )
    return path


def address_of(path: str) -> str:
    return f"unix://{path}"


def result_json(address: str, shim_pid: int) -> str:
    from google.protobuf import json_format

    from containerd_py.api.runtime.task.v1 import bootstrap_pb2

    msg = bootstrap_pb2.BootstrapResult(
        version=TASK_API_VERSION, address=address, protocol="grpc", shim_pid=shim_pid
    )
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None)


# -- pieces of start -------------------------------------------------------------------------


def _lock_bundle(bundle: str, timeout: float) -> int:
    """An exclusive flock on the bundle dir (the fd; closing it unlocks). Nothing to clean
    up afterwards, unlike a lock file."""
    fd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise BootstrapError(
                    f"another start holds {bundle} for over {timeout:g}s"
                ) from None
            time.sleep(0.02)


def listening(path: str) -> bool:
    """Something accepts connections on the unix socket path (a plain connect: no grpc)."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(2.0)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def connect_shim(path: str, id: str, timeout: float = 5.0) -> int:
    """The pid of the shim serving path (its Connect answer); BootstrapError if it is not
    a shim that answers."""
    import grpc

    from containerd_py.api.runtime.task.v1 import shim_pb2, shim_pb2_grpc

    with grpc.insecure_channel(f"unix:{path}") as ch:
        try:
            r = shim_pb2_grpc.TaskStub(ch).Connect(shim_pb2.ConnectRequest(id=id), timeout=timeout)
        except grpc.RpcError as e:
            raise BootstrapError(
                f"{path} is in use but does not answer as a shim: {e.code()}"
            ) from None
    return r.shim_pid


def _tree_root() -> str:
    """The directory that holds the `shim` package (and the rest of the stack's packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_pythonpath(exclude: Sequence[str] = ()) -> str:
    """PYTHONPATH for a `python -S` child: the tree, then this interpreter's sys.path dirs.

    exclude: dirs that must not be searched (the bundle: `-m` would put the cwd first).
    """
    skip = {os.path.realpath(p) for p in exclude}
    out: list[str] = []
    for p in [_tree_root(), *sys.path]:
        if not p or not os.path.isdir(p):
            continue  # "" (the cwd), zip files that do not exist, path-hook markers
        rp = os.path.realpath(p)
        if rp in skip or p in out:
            continue
        out.append(p)
    return os.pathsep.join(out)


def serve_argv(p: Params, sock: str, ready_fd: int) -> list[str]:
    argv = [
        sys.executable,
        "-S",
        "-m",
        "shim",
        "serve",
        "--namespace",
        p.namespace,
        "--id",
        p.id,
        "--bundle",
        p.bundle,
        "--socket-dir",
        p.socket_dir,
        "--socket",
        sock,
        "--ready-fd",
        str(ready_fd),
        "--log-level",
        p.log_level,
    ]
    if p.daemon_address:
        argv += ["--address", p.daemon_address]
    if p.idle_timeout is not None:
        argv += ["--idle-timeout", repr(float(p.idle_timeout))]
    return argv


def serve_env(p: Params, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    # The shim imports grpc and then spawns runtimes: grpc's fork handlers have deadlocked
    # such processes (grpc/grpc#22624); the shim only ever posix_spawns, never forks.
    env["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    env["PYTHONPATH"] = child_pythonpath(exclude=[p.bundle])
    # Systemd-style activation meant for the daemon is not the shim's.
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        env.pop(k, None)
    return env


def _read_ready(fd: int, timeout: float) -> str | None:
    """The line serve wrote, None at EOF without one; TimeoutError if nothing came."""
    import select

    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            raise TimeoutError
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf.decode(errors="replace").strip() or None
        buf += chunk
    return buf.split(b"\n", 1)[0].decode(errors="replace")


def _log_tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _kill_child(proc: subprocess.Popen[bytes]) -> None:
    # The child leads its own process group (new session): kill the group, in case it
    # already spawned something.
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except OSError:
            pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def _open_log(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise BootstrapError(f"cannot open {path}: {e.strerror}") from None


def _await_ready(
    r: int, log_path: str, timeout: float, exit_code: Callable[[float], int | None]
) -> str:
    """Wait for "ready" on r (see the table above): the line; BootstrapError with the
    reason if the child failed. exit_code(timeout) is the child's exit status, if it can
    be known."""
    try:
        line = _read_ready(r, timeout)
    except TimeoutError:
        raise BootstrapError(
            f"the shim did not become ready within {timeout:g}s"
            + (f": {tail}" if (tail := _log_tail(log_path)) else "")
        ) from None
    if line is not None and line.startswith("ready"):
        return line
    if line is not None and line.startswith("error "):
        raise BootstrapError(line[len("error ") :])
    # End of file on the pipe usually means the child is exiting: give it a moment to be
    # reaped, so the message carries its exit code rather than a guess.
    code = exit_code(1.0)
    why = f"exited with {code}" if code is not None else "closed its ready pipe"
    tail = _log_tail(log_path)
    raise BootstrapError(f"the shim {why} before it was ready" + (f": {tail}" if tail else ""))


def spawn_detached(
    argv_for: Callable[[int], Sequence[str]],
    *,
    cwd: str,
    log_path: str,
    env: Mapping[str, str],
    timeout: float,
    forks: bool = False,
) -> int:
    """Run argv_for(ready fd) in a session of its own, stdout/stderr to log_path, and wait
    until it says ready; its pid. On failure it is killed and BootstrapError raised.

    forks: the command forks, its parent exits at once and the child says "ready <pid>":
    the parent is reaped here and the child's pid returned (so the caller, which may be a
    daemon, is not left the child's parent)."""
    r, w = os.pipe()  # both close-on-exec; pass_fds makes w (only) inherited
    try:
        log_fd = _open_log(log_path)
    except BootstrapError:
        os.close(r)
        os.close(w)
        raise
    try:
        proc = subprocess.Popen(
            list(argv_for(w)),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd=cwd,
            env=dict(env),
            close_fds=True,
            pass_fds=(w,),
            start_new_session=True,
        )
    except OSError as e:
        os.close(r)
        raise BootstrapError(f"cannot run the shim: {e}") from None
    finally:
        os.close(w)  # the child's copy is the only writer left: EOF means it is gone
        os.close(log_fd)

    def exit_code(wait: float) -> int | None:
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None

    try:
        line = _await_ready(r, log_path, timeout, exit_code)
        if not forks:
            return proc.pid
        try:
            proc.wait(timeout)
            return int(line.split()[1])
        except (subprocess.TimeoutExpired, IndexError, ValueError):
            raise BootstrapError(f"the shim template said {line!r}") from None
    except BaseException:
        _kill_child(proc)
        raise
    finally:
        os.close(r)


def spawn_shim(
    p: Params,
    sock: str,
    *,
    timeout: float = READY_TIMEOUT,
    argv: Sequence[str] | None = None,
) -> int:
    """Start `shim serve` for p on sock and wait until it is ready; its pid.

    argv replaces the serve command line (tests: a stand-in that misbehaves); the ready
    fd number is appended to it.
    """
    try:
        return spawn_detached(
            (lambda fd: serve_argv(p, sock, fd)) if argv is None else (lambda fd: [*argv, str(fd)]),
            cwd=p.bundle,
            log_path=os.path.join(p.bundle, "shim.log"),
            env=serve_env(p),
            timeout=timeout,
        )
    except BaseException:
        _unlink(sock)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fork_from_template(p: Params, sock: str, *, timeout: float = READY_TIMEOUT) -> int:
    """Have the template at p.template fork the shim; its pid once it is ready.
    TemplateError if no template answers (the caller then starts one by exec)."""
    from shim.template import request_shim

    params: dict[str, Any] = {
        "namespace": p.namespace,
        "id": p.id,
        "bundle": p.bundle,
        "socket": sock,
        "socket_dir": p.socket_dir,
        "address": p.daemon_address,
        "log_level": p.log_level,
        "idle_timeout": p.idle_timeout,
    }
    log_path = os.path.join(p.bundle, "shim.log")
    r, w = os.pipe()
    try:
        log_fd = _open_log(log_path)
    except BootstrapError:
        os.close(r)
        os.close(w)
        raise
    try:
        pid = request_shim(p.template, params, w, log_fd)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
        os.close(log_fd)
    try:
        _await_ready(r, log_path, timeout, lambda wait: None)
        return pid
    except BaseException:
        # Not our child: it leads its own session (the template's child made it), so
        # killing the group reaches whatever it started.
        for target in (
            lambda: os.killpg(pid, signal.SIGKILL),
            lambda: os.kill(pid, signal.SIGKILL),
        ):
            try:
                target()
            except OSError:
                pass
        _unlink(sock)
        raise
    finally:
        os.close(r)


def template_argv(path: str, ready_fd: int) -> list[str]:
    return [
        sys.executable,
        "-S",
        "-m",
        "shim",
        "template",
        "--socket",
        path,
        "--ready-fd",
        str(ready_fd),
    ]


def start_template(socket_dir: str, *, timeout: float = READY_TIMEOUT) -> int:
    """Start a shim template serving `<socket_dir>/template`, detached; its pid.
    Logs go to `<socket_dir>/template.log`."""
    from shim.template import socket_of

    os.makedirs(socket_dir, 0o711, exist_ok=True)
    p = Params(bundle=_tree_root())
    return spawn_detached(
        lambda fd: template_argv(socket_of(socket_dir), fd),
        cwd=_tree_root(),
        log_path=os.path.join(socket_dir, "template.log"),
        env=serve_env(p),
        timeout=timeout,
        forks=True,
    )


def start(
    p: Params,
    *,
    timeout: float = READY_TIMEOUT,
    argv: Sequence[str] | None = None,
    exec_fallback: bool = True,
) -> tuple[str, int]:
    """(address, shim pid) of the task's shim, spawned unless one already serves it.

    With p.template, the template there forks it; when none answers, the shim is started
    by exec, unless exec_fallback is False: then TemplateError (a caller running this
    in-process must not become the shim's parent; it runs `shim start` instead).
    """
    from shim.manager import write_atomic

    p.validate()
    if not os.path.isdir(p.bundle):
        raise BootstrapError(f"bundle {p.bundle} is not a directory")
    sock = socket_path(p.socket_dir, p.namespace, p.id)
    os.makedirs(p.socket_dir, 0o711, exist_ok=True)
    lock = _lock_bundle(p.bundle, LOCK_TIMEOUT)
    try:
        address = address_of(sock)
        if listening(sock):
            pid = connect_shim(sock, p.id)
            if not os.path.exists(os.path.join(p.bundle, "address")):
                write_atomic(os.path.join(p.bundle, "address"), address.encode())
            return address, pid
        try:
            os.unlink(sock)  # a dead shim's socket: nobody listens
        except FileNotFoundError:
            pass
        pid = 0
        if p.template and argv is None:
            from shim.template import TemplateError

            try:
                pid = fork_from_template(p, sock, timeout=timeout)
            except TemplateError:
                if not exec_fallback:
                    raise
                pid = 0  # no template (or a broken one): start the shim by exec
        if not pid:
            pid = spawn_shim(p, sock, timeout=timeout, argv=argv)
        try:
            write_atomic(os.path.join(p.bundle, "address"), address.encode())
            write_atomic(os.path.join(p.bundle, "shim.pid"), str(pid).encode())
        except OSError as e:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.unlink(sock)
            except FileNotFoundError:
                pass
            raise BootstrapError(f"writing the address to {p.bundle}: {e}") from None
        return address, pid
    finally:
        os.close(lock)


def delete_json(d: Mapping[str, Any]) -> str:
    """A DeleteResponse (pid, exit_status, exited_at ns) as proto3 JSON."""
    from google.protobuf import json_format

    from containerd_py.api.runtime.task.v1 import shim_pb2

    msg = shim_pb2.DeleteResponse(pid=d["pid"], exit_status=d["exit_status"])
    msg.exited_at.FromNanoseconds(d["exited_at"])
    return json_format.MessageToJson(
        msg,
        preserving_proto_field_name=True,
        indent=None,
        always_print_fields_with_no_presence=True,
    )


def read_stdin() -> bytes:
    """BootstrapParams from stdin; nothing when stdin is a terminal (flags only)."""
    try:
        if os.isatty(0):
            return b""
        return sys.stdin.buffer.read()
    except (OSError, ValueError):
        return b""


def params_from(args: Any, raw: bytes) -> Params:
    """BootstrapParams from stdin, then flags given on the command line over them."""
    p = parse_params(raw)
    for name in ("id", "namespace", "bundle", "socket_dir", "log_level"):
        value = getattr(args, name, None)
        if value:
            setattr(p, name, value)
    if getattr(args, "address", None):
        p.daemon_address = args.address
    if getattr(args, "debug", False):
        p.log_level = "debug"
    if getattr(args, "idle_timeout", None) is not None:
        p.idle_timeout = args.idle_timeout
    if getattr(args, "template", None):
        p.template = args.template
    return p


def start_main(args: Any) -> int:
    p = params_from(args, read_stdin())
    address, pid = start(p, timeout=args.ready_timeout or READY_TIMEOUT)
    sys.stdout.write(result_json(address, pid) + "\n")
    sys.stdout.flush()
    return 0


def delete_main(args: Any) -> int:
    from shim.manager import delete

    # No liveness check: the daemon runs delete when it has given up on the shim (a hung
    # shim may still have its socket's backlog accept connections); delete stops it.
    p = params_from(args, read_stdin()).validate()
    sock = socket_path(p.socket_dir, p.namespace, p.id)
    d = delete(
        id=p.id, namespace=p.namespace, bundle=p.bundle, socket_dir=p.socket_dir, socket=sock
    )
    sys.stdout.write(delete_json(d) + "\n")
    sys.stdout.flush()
    return 0
