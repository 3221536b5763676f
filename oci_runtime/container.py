"""Container lifecycle: create, start, state, kill, delete, pause, resume, update, exec.

Each operation loads the record, derives the live status, checks the transition is allowed,
and acts. `create` undoes everything it made when any step fails.
"""

from __future__ import annotations

import os
import signal
import time

from oci_runtime.state import (
    FIFO,
    ContainerError,
    State,
    Status,
    Store,
    atomic_write,
    init_alive,
    proc_start_time,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from oci_runtime import cgroups
    from oci_runtime.linux.syscalls import Syscalls
    from oci_runtime.spec import Process, Spec

# Heavy modules (spec parsing, cgroup resources, hooks, the spawn machinery) are imported
# inside the operations that need them: `start`, `state` and `delete` of a hook-less
# container should cost little more than the interpreter's start-up.

# Which statuses each operation accepts (runc's state_linux.go transitions, in a table).
ALLOWED: dict[str, set[Status]] = {
    "start": {Status.CREATED},
    "kill": {Status.CREATED, Status.RUNNING, Status.PAUSED},
    "pause": {Status.RUNNING, Status.CREATED},
    "resume": {Status.PAUSED},
    "exec": {Status.CREATED, Status.RUNNING},
    "delete": {Status.STOPPED, Status.CREATED},
    "update": {Status.CREATED, Status.RUNNING, Status.PAUSED, Status.STOPPED},
}


def now_rfc3339() -> str:
    secs, ns = divmod(time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"


DEFAULT_CGROUP_PARENT = "pyrunc"


def default_cgroups_path(cid: str) -> str:
    return f"/{DEFAULT_CGROUP_PARENT}/{cid}"


def _remove_default_parent(paths: dict[str, str]) -> None:
    """Remove /pyrunc once its last container is gone, so a host keeps no trace of us.

    A create racing with this loses nothing: if the parent vanishes under it, its mkdir of
    the child re-creates the parent; if the child exists first, this rmdir fails.
    """
    for path in paths.values():
        parent = os.path.dirname(path)
        if os.path.basename(parent) == DEFAULT_CGROUP_PARENT:
            try:
                os.rmdir(parent)
            except OSError:
                pass


class CreateOptions:
    __slots__ = ("bundle", "console_socket", "no_pivot", "pid_file", "preserve_fds")

    def __init__(
        self,
        bundle: str,
        pid_file: str | None = None,
        console_socket: str | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
    ) -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds


class Runtime:
    def __init__(
        self,
        root: str | Path,
        sys: Syscalls | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.store = Store(root)
        self._sys = sys
        # Hook failures the spec says to only warn about (poststart, poststop) go here.
        self.warn = warn or (lambda msg: None)

    @property
    def sys(self) -> Syscalls:
        # Bound on first use: reading commands never need ctypes.
        if self._sys is None:
            from oci_runtime.linux.syscalls import libc

            self._sys = libc()
        return self._sys

    # -- reading --------------------------------------------------------------------------

    def load(self, cid: str) -> State:
        return self.store.load(cid)

    def spec_of(self, st: State) -> Spec:
        from oci_runtime.spec import parse

        return parse(st.config, st.bundle)

    def manager(self, st: State) -> cgroups.CgroupManager:
        from oci_runtime import cgroups

        return cgroups.load_manager(st.cgroup_paths)

    def _hooks(self, st: State, kind: str, status: Status) -> None:
        """Run one kind of hooks from the saved config; parse the spec only if there are any."""
        if not (st.config.get("hooks") or {}).get(kind):
            return
        from oci_runtime.hooks import HookError, run_hooks

        try:
            run_hooks(kind, self.spec_of(st).hooks.get(kind, ()), st.oci(status))
        except HookError as e:
            # The spec asks for a warning only: the container is already running or gone.
            self.warn(str(e))

    def status(self, st: State) -> Status:
        if not init_alive(st):
            return Status.STOPPED
        if os.path.exists(os.path.join(self.store.dir(st.id), FIFO)):
            return Status.CREATED
        try:
            if st.cgroup_paths and self.manager(st).is_frozen():
                return Status.PAUSED
        except OSError:
            pass
        return Status.RUNNING

    def _require(self, op: str, st: State) -> Status:
        status = self.status(st)
        if status not in ALLOWED[op]:
            if op == "delete":
                raise ContainerError(
                    f"cannot delete container {st.id} that is not stopped: {status.value}"
                )
            raise ContainerError(f"cannot {op} container {st.id}: container is {status.value}")
        return status

    # -- create / start ---------------------------------------------------------------------

    def create(self, cid: str, spec: Spec, opts: CreateOptions) -> State:
        from oci_runtime import cgroups
        from oci_runtime.cgroups.resources import Resources
        from oci_runtime.hooks import HookError, run_hooks
        from oci_runtime.process import Join, SpawnError, spawn
        from oci_runtime.rootfs import with_default_device_rules

        self.store.check_id(cid)
        proc = spec.process
        assert proc is not None
        if proc.terminal and not opts.console_socket:
            raise ContainerError(
                "cannot allocate tty if pyrunc will detach without setting console socket"
            )
        if not proc.terminal and opts.console_socket:
            raise ContainerError(
                "cannot use console socket if pyrunc will not detach or allocate tty"
            )
        try:
            os.makedirs(self.store.root, mode=0o711, exist_ok=True)
        except OSError as e:
            raise ContainerError(f"root {self.store.root}: {e.strerror}") from None
        cdir = self.store.dir(cid)
        try:
            os.mkdir(cdir, 0o711)
        except FileExistsError:
            raise ContainerError(f"container with id {cid} already exists") from None
        except OSError as e:
            raise ContainerError(f"root {self.store.root}: {e.strerror}") from None

        manager: cgroups.CgroupManager | None = None
        console_sock: socket.socket | None = None
        st: State | None = None
        try:
            fifo = os.path.join(cdir, FIFO)
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)
            manager = cgroups.new_manager(spec.cgroups_path or default_cgroups_path(cid))
            resources = (
                Resources.from_dict(with_default_device_rules(spec.resources))
                if spec.resources
                else None
            )
            if opts.console_socket:
                from oci_runtime import console

                console_sock = console.connect(opts.console_socket)
            st = State(
                id=cid,
                init_pid=0,
                init_start=0,
                bundle=str(spec.bundle),
                rootfs=str(spec.rootfs),
                created=now_rfc3339(),
                config=spec.raw,
                owner="",
                annotations=spec.annotations,
            )
            created = st

            def place(pid: int) -> None:
                assert manager is not None
                manager.apply(pid, single_thread=True)
                if resources is not None:
                    manager.set(resources)
                created.cgroup_paths = manager.paths()

            def go_payload(pid: int) -> dict[str, Any]:
                created.init_pid = pid
                return {"state": created.oci(Status.CREATING)}

            parent_hooks = spec.hooks.get("prestart", ()) + spec.hooks.get("createRuntime", ())

            def on_hooks(pid: int) -> None:
                state = created.oci(Status.CREATING)
                run_hooks("prestart", spec.hooks.get("prestart", ()), state)
                run_hooks("createRuntime", spec.hooks.get("createRuntime", ()), state)

            from oci_runtime.init import InitConfig, run_init

            icfg = InitConfig(
                spec=spec,
                fifo_path=str(fifo),
                console_sock=console_sock,
                no_pivot=opts.no_pivot,
                cgroup_mounts=manager.mounts(),
                preserve_fds=opts.preserve_fds,
                has_parent_hooks=bool(parent_hooks),
            )
            spawned = spawn(
                self.sys,
                join=Join.for_create(spec),
                spec=spec,
                place=place,
                init_body=lambda chan, go: run_init(self.sys, icfg, chan, go),
                on_hooks=on_hooks,
                go_payload=go_payload,
            )
            st.init_pid = spawned.pid
            st.init_start = spawned.start_time
            self.store.save(st)
            if opts.pid_file:
                write_pid_file(opts.pid_file, spawned.pid)
            return st
        except BaseException as e:
            if st is not None and st.init_pid:
                _kill_quietly(st.init_pid, signal.SIGKILL)
            if manager is not None:
                _kill_cgroup(manager)
                try:
                    manager.destroy()
                except OSError:
                    pass
            _remove_state_dir(cdir)
            if isinstance(e, SpawnError | HookError | OSError | ValueError):
                msg = (
                    f"{e.strerror}: {e.filename}"
                    if isinstance(e, OSError) and e.filename and e.strerror
                    else str(e)
                )
                raise ContainerError(msg) from None
            raise
        finally:
            if console_sock is not None:
                console_sock.close()

    def start(self, cid: str) -> None:
        import select

        st = self.load(cid)
        self._require("start", st)
        fifo = os.path.join(self.store.dir(cid), FIFO)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while True:
                if poller.poll(50) and os.read(fd, 1):
                    break
                if not init_alive(st):
                    raise ContainerError(f"container {cid} init exited before start")
            if (st.config.get("hooks") or {}).get("poststart"):
                # poststart runs once the user's process is executed: init's write end of
                # the FIFO is close-on-exec, so that is the hang-up.
                while not any(ev & select.POLLHUP for _, ev in poller.poll(50)):
                    if not init_alive(st):
                        break
        finally:
            os.close(fd)
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass
        self._hooks(st, "poststart", Status.RUNNING)

    # -- signals and teardown ---------------------------------------------------------------

    def kill(self, cid: str, sig: int, all_procs: bool = False) -> None:
        st = self.load(cid)
        status = self.status(st)
        if status is Status.STOPPED and not all_procs:
            raise ContainerError("container not running")
        if all_procs:
            m = self.manager(st)
            for pid in m.pids():
                _kill_quietly(pid, sig)
            if status is Status.PAUSED and sig in (signal.SIGKILL, signal.SIGTERM):
                m.freeze(False)
            return
        os.kill(st.init_pid, sig)

    def delete(self, cid: str, force: bool = False) -> None:
        try:
            st = self.load(cid)
        except ContainerError:
            cdir = self.store.dir(cid)
            if os.path.isdir(cdir) and not os.path.exists(os.path.join(cdir, "state.json")):
                # A create that died before its first save: nothing runs, just clear it.
                _remove_state_dir(cdir)
                return
            raise
        status = self.status(st)
        if status not in ALLOWED["delete"] and not force:
            self._require("delete", st)
        m = self.manager(st) if st.cgroup_paths else None
        if status is not Status.STOPPED:
            if m is not None:
                if status is Status.PAUSED:
                    _kill_cgroup(m)
                    m.freeze(False)
                _kill_cgroup(m)
            _kill_quietly(st.init_pid, signal.SIGKILL)
            _wait_exit(st)
        if m is not None:
            _kill_cgroup(m)
            m.destroy()
            if not (st.config.get("linux") or {}).get("cgroupsPath"):
                _remove_default_parent(st.cgroup_paths)
        self._hooks(st, "poststop", Status.STOPPED)
        _remove_state_dir(self.store.dir(cid))

    def pause(self, cid: str) -> None:
        st = self.load(cid)
        self._require("pause", st)
        self.manager(st).freeze(True)

    def resume(self, cid: str) -> None:
        st = self.load(cid)
        self._require("resume", st)
        self.manager(st).freeze(False)

    def update(self, cid: str, changes: dict[str, Any]) -> None:
        from oci_runtime.cgroups.resources import Resources
        from oci_runtime.rootfs import with_default_device_rules

        st = self.load(cid)
        self._require("update", st)
        linux = st.config.setdefault("linux", {})
        merged = _merge(linux.get("resources") or {}, changes)
        res = Resources.from_dict(with_default_device_rules(merged))
        if self.status(st) is not Status.STOPPED:
            self.manager(st).set(res)
        linux["resources"] = merged
        self.store.save(st)

    # -- exec -------------------------------------------------------------------------------

    def exec(
        self,
        cid: str,
        proc: Process,
        *,
        console_socket: str | None,
        pid_file: str | None,
        preserve_fds: int = 0,
    ) -> int:
        from oci_runtime.process import Join, SpawnError, spawn

        st = self.load(cid)
        self._require("exec", st)
        spec = self.spec_of(st)
        console_sock = None
        if proc.terminal and not console_socket:
            raise ContainerError(
                "cannot allocate tty if pyrunc will detach without setting console socket"
            )
        if console_socket:
            from oci_runtime import console

            console_sock = console.connect(console_socket)
        m = self.manager(st) if st.cgroup_paths else None
        from oci_runtime.init import run_exec

        try:
            spawned = spawn(
                self.sys,
                join=Join.for_exec(spec, st.init_pid),
                spec=spec,
                place=(lambda pid: m.apply(pid, single_thread=True))
                if m is not None
                else (lambda pid: None),
                init_body=lambda chan, go: run_exec(
                    self.sys, spec, proc, console_sock, chan, preserve_fds
                ),
            )
        except SpawnError as e:
            raise ContainerError(str(e)) from None
        finally:
            if console_sock is not None:
                console_sock.close()
        if pid_file:
            write_pid_file(pid_file, spawned.pid)
        return spawned.pid


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _remove_state_dir(path: str) -> None:
    """A container's state dir holds only files (state.json, exec.fifo, temp files)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def write_pid_file(path: str, pid: int) -> None:
    atomic_write(os.path.abspath(path), str(pid).encode(), 0o644)


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_cgroup(m: cgroups.CgroupManager) -> None:
    for _ in range(100):
        try:
            pids = m.pids()
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            _kill_quietly(pid, signal.SIGKILL)
        time.sleep(0.01)


def _wait_exit(st: State) -> None:
    for _ in range(1000):
        try:
            if os.waitpid(st.init_pid, os.WNOHANG)[0] == st.init_pid:
                return
        except ChildProcessError:
            pass
        if proc_start_time(st.init_pid) != st.init_start:
            return
        time.sleep(0.005)
