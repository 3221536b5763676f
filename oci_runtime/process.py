"""Making the container's processes: the parent side and both child stages.

pyrunc is a fresh, single-threaded interpreter, so it may fork and unshare freely:

    pyrunc (parent) --fork--> stage 1 --unshare/setns, fork--> init (pid 1 of the new pid ns)

Stage 1 joins or creates the namespaces (a new pid namespace only applies to children, hence
the second fork), reports init's pid and exits; init builds the root filesystem, waits on the
exec FIFO and execs the user's process. `exec` uses the same two stages to enter a running
container. The messages between them are in sync.py.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from oci_runtime import identity
from oci_runtime.linux import flags as F
from oci_runtime.linux.syscalls import Syscalls
from oci_runtime.spec import Process, Spec
from oci_runtime.state import proc_start_time
from oci_runtime.sync import Channel, Msg, SyncError, pipes

if TYPE_CHECKING:
    import socket

# Linux 5.9+: mark every fd from 3 up close-on-exec in one call.
_SYS_CLOSE_RANGE = 436
_CLOSE_RANGE_CLOEXEC = 4


class SpawnError(Exception):
    pass


class Join:
    """Namespaces to enter by path, and the new ones to make (clone flags)."""

    __slots__ = ("new_flags", "new_user", "paths")

    def __init__(self) -> None:
        self.paths: list[tuple[int, str]] = []
        self.new_flags = 0
        self.new_user = False

    @classmethod
    def for_create(cls, spec: Spec) -> Join:
        j = cls()
        for ns in spec.namespaces:
            if ns.path:
                j.paths.append((ns.flag, ns.path))
            elif ns.type == "user":
                j.new_user = True
            else:
                j.new_flags |= ns.flag
        return j

    @classmethod
    def for_exec(cls, spec: Spec, init_pid: int) -> Join:
        j = cls()
        for ns in spec.namespaces:
            name = F.NAMESPACES[ns.type][1]
            theirs = f"/proc/{init_pid}/ns/{name}"
            try:
                if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                    continue
            except FileNotFoundError:
                continue
            j.paths.append((ns.flag, theirs))
        return j


class Spawned(NamedTuple):
    pid: int
    start_time: int


def _enter_namespaces(sys: Syscalls, join: Join, chan: Channel) -> None:
    fds = []
    try:
        # Open every path first: entering the mount namespace changes what paths mean.
        for flag, path in join.paths:
            fds.append((flag, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        for flag, fd in sorted(fds, key=lambda x: x[0] != F.Clone.NEWUSER):
            sys.setns(fd, flag)
    finally:
        for _, fd in fds:
            os.close(fd)
    if join.new_user:
        sys.unshare(F.Clone.NEWUSER)
        chan.send(Msg.USERNS_READY)
        chan.expect(Msg.MAPS_DONE)
    if any(flag == F.Clone.NEWUSER for flag, _ in join.paths) or join.new_user:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    if join.new_flags:
        sys.unshare(join.new_flags)


def _preload_seccomp() -> None:
    """Load libseccomp (and the Python modules the filter needs) here, in the host's mount
    namespace: the children inherit it. Once init has switched root, or an exec has joined
    the container's mount namespace, neither the library nor the stdlib can be found."""
    from oci_runtime import seccomp

    seccomp.preload()


def _child(body: Callable[[], None], chan: Channel) -> None:
    """Run a child stage; it never returns into the CLI, whatever happens."""
    code = 0
    try:
        body()
    except BaseException as e:
        if isinstance(e, OSError) and e.strerror:
            msg = e.strerror + (f": {e.filename}" if e.filename else "")
        else:
            msg = str(e) or type(e).__name__
        if os.environ.get("PYRUNC_DEBUG"):
            try:
                import traceback

                msg += "\n" + traceback.format_exc()
            except ImportError:
                pass  # past the root switch the stdlib is out of reach
        try:
            chan.send(Msg.ERROR, message=msg)
        except OSError:
            # The channel is closed once the process reported READY (a failure between
            # the start and the execve): its stderr is the only one left to tell.
            try:
                os.write(2, f"pyrunc: {msg}\n".encode(errors="replace"))
            except OSError:
                pass
        code = 1
    os._exit(code)


def _write_id_maps(pid: int, spec: Spec) -> None:
    for name, maps in (("uid_map", spec.uid_mappings), ("gid_map", spec.gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def spawn(
    sys: Syscalls,
    *,
    join: Join,
    spec: Spec,
    place: Callable[[int], None],
    init_body: Callable[[Channel, dict[str, Any]], None],
    on_hooks: Callable[[int], None] | None = None,
    go_payload: Callable[[int], dict[str, Any]] = lambda pid: {},
) -> Spawned:
    """Fork stage 1 and init, drive the protocol, return init once it reports READY.

    On any failure both children are killed and reaped before the error is raised, so the
    caller only has to undo what it made itself (state dir, cgroups).
    """
    if spec.seccomp is not None:
        _preload_seccomp()
    chan, cchan = pipes()
    stage1 = os.fork()
    if stage1 == 0:
        chan.close()

        def stage1_body() -> None:
            cchan.expect(Msg.CONTINUE)
            _enter_namespaces(sys, join, cchan)
            pid = os.fork()
            if pid == 0:
                _child(lambda: init_body(cchan, cchan.expect(Msg.GO)), cchan)
            cchan.send(Msg.INIT_PID, pid=pid)

        _child(stage1_body, cchan)
    cchan.close()
    init_pid = 0
    start = 0
    try:
        place(stage1)
        chan.send(Msg.CONTINUE)
        while True:
            msg, data = chan.recv()
            if msg is Msg.ERROR:
                raise SpawnError(data.get("message", "unknown error"))
            if msg is Msg.USERNS_READY:
                _write_id_maps(stage1, spec)
                chan.send(Msg.MAPS_DONE)
            elif msg is Msg.INIT_PID:
                init_pid = data["pid"]
                # Read now, while it waits for GO: an exec'd process may be gone the moment
                # after it reports READY, and its start time is what tells pid reuse apart.
                start = proc_start_time(init_pid)
                if start is None:
                    raise SpawnError("container init exited before it was ready")
                _reap(stage1)
                stage1 = 0
                chan.send(Msg.GO, **go_payload(init_pid))
            elif msg is Msg.HOOKS:
                if on_hooks is not None:
                    on_hooks(init_pid)
                chan.send(Msg.HOOKS_DONE)
            elif msg is Msg.READY:
                break
            else:
                raise SpawnError(f"protocol error: unexpected {msg.value}")
        return Spawned(init_pid, start)
    except (SyncError, OSError, Exception) as e:
        for pid in (stage1, init_pid):
            if pid > 0:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if stage1:
            _reap(stage1)
        if init_pid:
            _wait_gone(init_pid)
        if isinstance(e, SpawnError):
            raise
        raise SpawnError(str(e)) from None
    finally:
        chan.close()


def _wait_gone(pid: int) -> None:
    import time

    for _ in range(500):
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if proc_start_time(pid) is None:
            return
        time.sleep(0.005)


def mark_fds_cloexec(first: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(
        ctypes.c_long(_SYS_CLOSE_RANGE),
        ctypes.c_uint(first),
        ctypes.c_uint(0xFFFFFFFF),
        ctypes.c_uint(_CLOSE_RANGE_CLOEXEC),
    )
    if rc < 0:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= first:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass


def _default_signals() -> None:
    """CPython ignores SIGPIPE and SIGXFSZ at start-up, and an ignored signal survives
    execve: without this `yes | head` would spin forever in the container. Handlers that
    Python installed reset themselves at execve; only the ignores and the mask carry over."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def setup_terminal(
    proc: Process,
    console_sock: socket.socket | None,
    bind_console: Callable[[str], None] | None = None,
) -> None:
    if not proc.terminal:
        return
    # Imported here: it pulls in socket, which a container without a terminal never needs.
    # Past the root switch this is only a lookup: whoever connected console_sock (checked
    # below) imported the module in the host's mount namespace.
    from oci_runtime import console

    if console_sock is None:
        raise SpawnError("a terminal was asked for but no console socket was given")
    master, slave, name = console.open_pty(proc.console_size)
    if bind_console is not None:
        bind_console(name)
    console.send_master(console_sock, master, name)
    os.close(master)
    console_sock.close()
    console.make_controlling(slave)


def exec_process(
    sys: Syscalls,
    proc: Process,
    *,
    seccomp: dict[str, Any] | None,
    chan: Channel,
    wait_start: Callable[[], None] | None,
    before_exec: Callable[[], None] | None = None,
    preserve_fds: int = 0,
) -> None:
    """The shared tail of init and exec: identity, seccomp, READY, (FIFO), exec."""
    try:
        os.chdir(proc.cwd)
    except FileNotFoundError:
        raise SpawnError(
            f"chdir to cwd ({proc.cwd!r}) set in config.json failed: no such file or directory"
        ) from None
    path = identity.lookup_path(proc.args[0], proc.env, proc.cwd)
    if path is None:
        raise SpawnError(f'exec: "{proc.args[0]}": executable file not found in $PATH')
    identity.set_rlimits(proc)
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc.oom_score_adj))
    if proc.no_new_privileges:
        sys.prctl(F.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp is not None and not proc.no_new_privileges:
        from oci_runtime import seccomp as sc

        sc.load(seccomp)
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in proc.env)
    if "HOME" not in env:
        # As runc and crun: the user's home from the container's /etc/passwd, else "/".
        env["HOME"] = identity.home_dir(proc.user.uid)
    identity.finalize(sys, proc)
    _default_signals()
    mark_fds_cloexec(3 + preserve_fds)
    chan.send(Msg.READY)
    chan.close()
    if wait_start is not None:
        wait_start()
    if before_exec is not None:
        before_exec()
    if seccomp is not None and proc.no_new_privileges:
        # Loaded last so the filter never sees our own setup syscalls.
        from oci_runtime import seccomp as sc

        sc.load(seccomp)
    os.execve(path, list(proc.args), env)
