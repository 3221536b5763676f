"""`shim template`: a warm parent that forks shims, so they share its pages.

A shim started afresh pays for its interpreter and its imports (grpc, protobuf, the task
service) in time, about 100 ms here, and in memory, about 18 MB of private pages per
container. The template imports all of that once and never starts grpc: no channel, no
server, no threads (DESIGN.md, Python traps: a process that has started grpc forks only to
exec; one that has only imported it forks safely). A shim forked from it starts serving in
a few milliseconds and keeps the template's pages shared until it writes to them;
`gc.freeze()` moves the imported objects out of the collector's reach so that collections
in the shims do not dirty those pages.

Protocol, on a SOCK_SEQPACKET unix socket (one message each way, so no framing):

    client -> template   JSON {namespace, id, bundle, socket, socket_dir, address,
                         log_level, idle_timeout}, with two fds (SCM_RIGHTS): the write end
                         of the ready pipe and the shim's log file
    template -> client   JSON {"pid": N} once the shim is forked, or {"error": "..."}

The shim then says "ready <pid>" on the ready pipe exactly as one started by exec does
(shim/bootstrap.py), so `start` waits for it the same way either way.

Forked shims are detached as `start` detaches an exec'd one: the template forks a child
that forks the shim and exits; the shim starts a session of its own (it leads it and its
process group, as an exec'd shim does), re-parents to init (or the nearest subreaper), and
nothing of the template stays its parent. The template itself
serves one request at a time in a single thread (a fork takes about a millisecond), exits
on SIGTERM, and exits by itself when its socket path no longer names its socket (a newer
template took the place).
"""

from __future__ import annotations

import array
import gc
import json
import os
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SOCKET_NAME = "template"
PIDFILE_NAME = "template.pid"
CODEFILE_NAME = "template.code"
CODE_PACKAGES = ("shim", "oci_runtime", os.path.join("containerd_py", "api"))
MAX_MESSAGE = 64 * 1024
CHECK_INTERVAL = 5.0  # seconds between checks that the socket path is still ours
FIELDS = ("namespace", "id", "bundle", "socket", "socket_dir", "address", "log_level")


class TemplateError(Exception):
    """The template could not fork a shim; the message is one line."""


def socket_of(socket_dir: str) -> str:
    return os.path.join(socket_dir, SOCKET_NAME)


def codefile_of(socket_dir: str) -> str:
    return os.path.join(socket_dir, CODEFILE_NAME)


def code_fingerprint() -> str:
    """What code a shim forked now would run: the size and mtime of every module of the
    packages a serving shim imports. A daemon that finds a template whose fingerprint is
    not its own (the stack was upgraded under a running template) replaces it, so no
    task gets a shim of the old code."""
    import hashlib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for package in CODE_PACKAGES:
        top = os.path.join(root, package)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    st = os.stat(path)
                    h.update(
                        f"{os.path.relpath(path, root)} {st.st_size} {st.st_mtime_ns}\n".encode()
                    )
    return h.hexdigest()


def pidfile_of(socket_dir: str) -> str:
    return os.path.join(socket_dir, PIDFILE_NAME)


# -- client side (shim start) ---------------------------------------------------------------


def request_shim(path: str, params: dict[str, Any], ready_w: int, log_fd: int) -> int:
    """Ask the template at path to fork a shim; its pid. TemplateError if there is no
    template answering there or it refused (the caller falls back to exec)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(10.0)
        try:
            s.connect(path)
        except OSError as e:
            raise TemplateError(f"no shim template at {path}: {e.strerror}") from None
        fds = array.array("i", [ready_w, log_fd])
        s.sendmsg([json.dumps(params).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        try:
            raw = s.recv(MAX_MESSAGE)
        except OSError as e:
            raise TemplateError(f"shim template at {path}: {e}") from None
    finally:
        s.close()
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = {}
    if not isinstance(answer, dict) or not answer:
        raise TemplateError(f"shim template at {path} gave no answer")
    if answer.get("error"):
        raise TemplateError(str(answer["error"]))
    pid = answer.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise TemplateError(f"shim template at {path} answered {answer!r}")
    return pid


# -- the template process -------------------------------------------------------------------


def _preload() -> None:
    """Import everything a serving shim imports, and nothing that starts grpc."""
    import concurrent.futures.thread  # noqa: F401
    import logging  # noqa: F401

    import grpc  # noqa: F401
    from google.protobuf import json_format, timestamp_pb2  # noqa: F401

    import shim.bootstrap
    import shim.logs
    import shim.publisher
    import shim.reaper
    import shim.server
    import shim.service
    import shim.stdio  # noqa: F401
    from containerd_py.api.runtime.task.v1 import shim_pb2_grpc  # noqa: F401


def _recv_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    fds = array.array("i")
    msg, ancdata, _flags, _addr = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(8 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    received = list(fds)
    try:
        params = json.loads(msg) if msg else None
    except ValueError:
        params = None
    try:
        if not isinstance(params, dict) or len(received) != 2:
            raise TemplateError("bad request: want the parameters (JSON) and two fds")
        for key in FIELDS:
            if not isinstance(params.get(key, ""), str):
                raise TemplateError(f"bad request: {key} must be a string")
        for key in ("namespace", "id", "bundle", "socket"):
            if not params.get(key):
                raise TemplateError(f"bad request: no {key}")
    except TemplateError:
        for fd in received:
            os.close(fd)
        raise
    return params, received


class _Args:
    """What `serve` reads from its parsed command line."""

    def __init__(self, params: dict[str, Any], ready_fd: int) -> None:
        for key in FIELDS:
            setattr(self, key, params.get(key, "") or "")
        self.ready_fd = ready_fd
        timeout = params.get("idle_timeout")
        self.idle_timeout = float(timeout) if isinstance(timeout, int | float) else None


def _retitle(args: list[str]) -> None:
    """Rewrite this process's command line in place (as ps and /proc/PID/cmdline show it)
    to args, cut to the room the template's own command line left: a forked shim should
    read `... shim serve --namespace N --id ID` to whoever looks, like one started by exec.
    """
    import ctypes

    try:
        with open("/proc/self/stat", "rb") as f:
            # Fields after the command name, which is in parentheses and may hold spaces.
            fields = f.read().rsplit(b")", 1)[1].split()
        # arg_start and arg_end are fields 48 and 49 of stat (man 5 proc); fields here
        # start at field 3.
        start, end = int(fields[45]), int(fields[46])
    except (OSError, IndexError, ValueError):
        return
    room = end - start
    if room < 3:
        return
    # The kernel shows the area as argv while its last byte is NUL; once it is not, it
    # shows the text up to the first NUL as one line (how setproctitle works), and
    # readers such as ps and psutil split that at spaces.
    title = " ".join(args).encode()[: room - 2]
    filler = b"\0" * (room - len(title) - 2)
    ctypes.memmove(start, title + b"\0" + filler + b" ", room)


def _become_shim(params: dict[str, Any], ready_w: int, log_fd: int) -> None:
    """In the forked grandchild: the fds and cwd a shim started by exec would have, then
    serve (which never returns)."""
    try:
        _retitle(
            [
                sys.executable,
                "-S",
                "-m",
                "shim",
                "serve",
                "--namespace",
                params["namespace"],
                "--id",
                params["id"],
                "--socket",
                params["socket"],
            ]
        )
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.chdir(params["bundle"])
        from shim.server import serve

        serve(_Args(params, ready_w))
    except BaseException as e:  # a forked child must never return to the accept loop
        try:
            os.write(ready_w, f"error cannot serve: {e}\n".encode())
        except OSError:
            pass
    os._exit(1)


def _fork_shim(
    listener: socket.socket, conn: socket.socket, params: dict[str, Any], fds: list[int]
) -> int:
    """Fork (child: new session, fork the shim, report its pid, exit); the shim's pid."""
    ready_w, log_fd = fds
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            # Fork copies every fd, close-on-exec or not: a shim holding the listener would
            # keep the socket accepting after the template is gone, and a start would then
            # wait for an answer instead of hearing at once that nobody serves there.
            listener.close()
            conn.close()
            os.setsid()
            shim = os.fork()
            if shim == 0:
                os.close(w)
                # A session and process group of its own, led by the shim, as for one
                # started by exec: whoever stops a shim with killpg(shim pid) reaches it.
                os.setsid()
                _become_shim(params, ready_w, log_fd)
            os.write(w, str(shim).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 64):
            data += chunk
    finally:
        os.close(r)
        os.waitpid(child, 0)
    if not data:
        raise TemplateError("the shim could not be forked")
    return int(data)


def _still_ours(path: str, ino: int) -> bool:
    try:
        return os.lstat(path).st_ino == ino
    except OSError:
        return False


def serve_template(path: str, ready_fd: int = -1) -> int:
    # Whoever started us (a daemon) must not stay our parent: the process it started
    # exits now, and it is the child that serves (and says so on the ready fd).
    if os.fork() != 0:
        os._exit(0)
    _preload()
    from shim.manager import write_atomic

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    old = os.umask(0o077)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(64)
    listener.settimeout(CHECK_INTERVAL)
    ino = os.lstat(path).st_ino
    socket_dir = os.path.dirname(path)
    write_atomic(codefile_of(socket_dir), code_fingerprint().encode())
    write_atomic(pidfile_of(socket_dir), str(os.getpid()).encode())
    # Everything imported so far lives as long as the template: keep the collector off
    # it, in the template and in every shim forked from it.
    gc.collect()
    gc.freeze()
    _log(f"serving {path}")
    if ready_fd >= 0:
        os.write(ready_fd, f"ready {os.getpid()}\n".encode())
        os.close(ready_fd)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if not _still_ours(path, ino):
                _log(f"{path} is no longer this template's socket: exiting")
                return 0
            continue
        with conn:
            conn.settimeout(10.0)
            try:
                params, fds = _recv_request(conn)
            except (TemplateError, OSError) as e:
                _answer(conn, {"error": str(e)})
                continue
            try:
                answer: dict[str, Any] = {"pid": _fork_shim(listener, conn, params, fds)}
                _log(
                    f"forked the shim of {params['namespace']}/{params['id']}: pid {answer['pid']}"
                )
            except (TemplateError, OSError, ValueError) as e:
                answer = {"error": f"shim template: {e}"}
                _log(f"could not fork the shim of {params['namespace']}/{params['id']}: {e}")
            finally:
                for fd in fds:
                    os.close(fd)
            _answer(conn, answer)


def _log(line: str) -> None:
    # stderr is template.log (see bootstrap.start_template); no logging module set-up, so
    # the forked shims start with none to undo.
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} shim template[{os.getpid()}]: {line}\n")
    sys.stderr.flush()


def _answer(conn: socket.socket, answer: dict[str, Any]) -> None:
    try:
        conn.send(json.dumps(answer).encode())
    except OSError:
        pass  # the client gave up; a forked shim that nobody waits for exits when idle
