"""The container's processes as the shim runs them: the init, and processes exec'd into it.

Each process is an explicit state machine (runc's state_linux.go, containerd's
init_state.go): `State` and `TRANSITIONS`; an operation that is not allowed in the current
state raises StateTransitionError and changes nothing.

    CREATED --start--> RUNNING --pause--> PAUSED
       |                  |  <--resume--    |
       |                  +----exit---> STOPPED <--exit--+
       +------exit (before or during start)----^
    CREATED / STOPPED --delete--> DELETED

Exits come from the reaper, never from the runtime: the init is the shim's child once the
runtime exits (child subreaper), an exec'd process likewise. The subscription is taken
before the runtime is spawned, so an exit that happens before the pid file is even read (a
container whose init exits at once) is buffered, not lost. One waiter thread per process
then waits for the exit, lets the output drain into the log (bounded by drain_timeout:
something may hold the pipes open), writes the init's exit to `<bundle>/exit`, and only then
moves to STOPPED and releases `wait()`ers: whoever learns of the exit can read it on disk.

Threads: operations (create/start/kill/...) are serialized by a per-process lock and run
the runtime in the caller's thread; the waiter thread takes only the state lock, so an
exit is recorded while an operation is in flight (a pause racing with an exit leaves the
process STOPPED: the exit wins).
"""

from __future__ import annotations

import enum
import json
import os
import signal
import threading
import time

from shim.exitfile import ExitRecord, write_exit
from shim.runtime_client import OCIRuntimeError
from shim.stdio import Stdio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from shim.logs import Attachment, LogWriter
    from shim.reaper import Reaper, Subscription
    from shim.runtime_client import RuntimeClient


class State(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DELETED = "deleted"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.RUNNING, State.STOPPED, State.DELETED}),
    State.RUNNING: frozenset({State.PAUSED, State.STOPPED}),
    State.PAUSED: frozenset({State.RUNNING, State.STOPPED}),
    State.STOPPED: frozenset({State.DELETED}),
    State.DELETED: frozenset(),
}


class ProcessError(Exception):
    pass


class StateTransitionError(ProcessError):
    """The operation is not allowed in the process's current state."""

    def __init__(self, current: State, target: State | str) -> None:
        what = target.value if isinstance(target, State) else target
        super().__init__(f"cannot {what} a process that is {current.value}")
        self.current = current
        self.target = target


class ProcessFinishedError(ProcessError):
    """The process has already exited (containerd: "process already finished")."""


def check_transition(current: State, target: State) -> None:
    if target not in TRANSITIONS[current]:
        raise StateTransitionError(current, target)


def _not_found(e: OCIRuntimeError) -> bool:
    # runc: "container does not exist"; crun: "... No such file or directory"; pyrunc:
    # "container X does not exist".
    m = e.message.lower()
    return "does not exist" in m or "no such file or directory" in m or "not found" in m


def _read_pid(path: str) -> int:
    with open(path) as f:
        text = f.read().strip()
    try:
        pid = int(text)
    except ValueError:
        raise ProcessError(f"{path}: not a pid: {text!r}") from None
    if pid <= 0:
        raise ProcessError(f"{path}: not a pid: {text!r}")
    return pid


class Process:
    """What init and exec processes share: state, exit, stdio, the waiter thread."""

    def __init__(self, id: str, reaper: Reaper, stdio: Stdio, drain_timeout: float) -> None:
        self.id = id
        self.reaper = reaper
        self.stdio = stdio
        self.drain_timeout = drain_timeout
        self.pid = 0
        self._state = State.CREATED
        self._lock = threading.Lock()  # state, exit
        self._op_lock = threading.RLock()  # one operation at a time
        self._reaped = False  # the reaper reported the exit (maybe not recorded yet)
        self._exit: ExitRecord | None = None
        self._exited = threading.Event()  # set once the exit is recorded and STOPPED
        self._finishing = False  # an exit is being recorded: the first one wins
        self._waiter: threading.Thread | None = None
        self._sub: Subscription | None = None  # covers pid; keeps its exit once closed

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def exit(self) -> ExitRecord | None:
        return self._exit

    def _require(self, what: str, *states: State) -> State:
        st = self._state
        if st not in states:
            raise StateTransitionError(st, what)
        return st

    def _advance(self, frm: State, to: State) -> None:
        """frm -> to, unless the process exited meanwhile (then it stays STOPPED)."""
        with self._lock:
            if self._state is frm:
                check_transition(frm, to)
                self._state = to
            elif self._state is not State.STOPPED:
                raise StateTransitionError(self._state, to)

    def _require_alive(self, what: str) -> None:
        if self._state is not State.DELETED and (self._reaped or self._state is State.STOPPED):
            raise ProcessFinishedError(f"cannot {what}: process {self.id} already finished")
        self._require(what, State.CREATED, State.RUNNING, State.PAUSED)

    def _exit_seen(self, timeout: float) -> bool:
        """Has the process exited? Waits up to timeout for the reaper to say so.

        For a runtime call that failed: "container not running" while the exit is still on
        its way through the reaper is an exit, not an error.
        """
        if self._reaped:
            return True
        sub = self._sub
        if sub is None or not self.pid:
            return False
        try:
            sub.wait(self.pid, timeout)
        except (TimeoutError, RuntimeError):
            return self._reaped
        return True

    # -- the exit ----------------------------------------------------------------------------

    def _watch(self, sub: Subscription, pid: int) -> None:
        """Start the waiter thread for pid (sub already covers it)."""
        self._sub = sub
        t = threading.Thread(
            target=self._wait_exit, args=(sub, pid), name=f"shim-wait-{self.id}", daemon=True
        )
        self._waiter = t
        t.start()

    def _wait_exit(self, sub: Subscription, pid: int) -> None:
        try:
            ex = sub.wait(pid)
        except RuntimeError:  # subscription closed: the shim is going away
            return
        finally:
            sub.close()
        self._reaped = True
        self._exited_hook()
        # Output written just before the exit belongs in the log before the exit is told.
        self.stdio.wait_drained(self.drain_timeout)
        self._finish(ExitRecord(pid, ex.exit_status, ex.exited_at))

    def _exited_hook(self) -> None:
        pass

    def _record(self, rec: ExitRecord) -> None:
        pass

    def _finish(self, rec: ExitRecord) -> None:
        with self._lock:
            if self._finishing:  # recorded already (delete gave up waiting, then it came)
                return
            self._finishing = True
        try:
            self._record(rec)
        except OSError as e:
            os.write(2, f"pycontainerd-shim: recording the exit of {self.id}: {e}\n".encode())
        with self._lock:
            self._exit = rec
            if self._state is not State.DELETED:
                check_transition(self._state, State.STOPPED)
                self._state = State.STOPPED
        self._exited.set()

    def wait(self, timeout: float | None = None) -> tuple[int, int]:
        """Block until the process exited; (docker exit status, exited_at in ns).

        The exit is on disk (init) before this returns. TimeoutError after timeout seconds.
        """
        if self.pid == 0:  # never ran (not created or started yet, or that failed)
            raise StateTransitionError(self._state, "wait for")
        if not self._exited.wait(timeout):
            raise TimeoutError(f"process {self.id} is still running")
        assert self._exit is not None
        return self._exit.exit_status, self._exit.exited_at

    # -- stdio -------------------------------------------------------------------------------

    def subscribe(self, max_bytes: int = 1 << 20) -> Attachment:
        return self.stdio.subscribe(max_bytes)

    def write_stdin(self, data: bytes) -> int:
        return self.stdio.write_stdin(data)

    def close_io(self) -> None:
        """Close the process's stdin (EOF for pipes)."""
        self.stdio.close_stdin()

    def resize(self, cols: int, rows: int) -> None:
        self.stdio.resize(cols, rows)

    def info(self) -> dict[str, Any]:
        rec = self._exit
        return {
            "id": self.id,
            "pid": self.pid,
            "status": self._state.value,
            "terminal": self.stdio.terminal,
            "exit_status": None if rec is None else rec.exit_status,
            "exited_at": None if rec is None else rec.exited_at,
        }


class InitProcess(Process):
    """The container itself: created and started through the OCI runtime."""

    def __init__(
        self,
        id: str,
        bundle: str,
        runtime: RuntimeClient,
        reaper: Reaper,
        *,
        terminal: bool | None = None,
        stdin: bool = False,
        log: LogWriter | None = None,
        socket_dir: str = "/tmp",
        drain_timeout: float = 2.0,
        check_subreaper: bool = True,
    ) -> None:
        """log: where the output goes (json-file); the process's stdio closes it at delete.
        terminal: None reads `process.terminal` from the bundle's config.json.
        drain_timeout: how long an exit waits for the output to reach EOF before it is told.
        """
        self.bundle = os.path.abspath(bundle)
        if terminal is None:
            with open(os.path.join(self.bundle, "config.json"), "rb") as f:
                terminal = bool(json.load(f).get("process", {}).get("terminal", False))
        stdio = Stdio(terminal=terminal, stdin=stdin, log=log, socket_dir=socket_dir)
        super().__init__(id, reaper, stdio, drain_timeout)
        self.runtime = runtime
        self.socket_dir = socket_dir
        self.check_subreaper = check_subreaper
        self.pid_file = os.path.join(self.bundle, "init.pid")
        self.execs: dict[str, ExecProcess] = {}
        self._created = False

    def create(self) -> None:
        """`runtime create` with the stdio; the init waits in the runtime for start."""
        with self._op_lock:
            if self._created:
                raise StateTransitionError(self._state, "create")
            if self.check_subreaper:
                from shim.reaper import is_subreaper

                if not is_subreaper():
                    raise ProcessError(
                        "the shim is not a child subreaper: the container's exit would be lost"
                    )
            self._created = True
            sub = self.reaper.subscribe()  # before the runtime runs: no exit can be missed
            try:
                fds = self.stdio.prepare()
                self.runtime.create(
                    self.id,
                    self.bundle,
                    pid_file=self.pid_file,
                    console_socket=self.stdio.console_socket,
                    stdio=fds,
                )
            except BaseException:
                sub.close()
                self.stdio.close()
                self._state = State.DELETED
                raise
            try:
                pid = _read_pid(self.pid_file)
                self.stdio.started()
            except BaseException:
                sub.close()
                self._undo_create()
                raise
            sub.narrow(pid)  # keeps pid's exit if it came already, drops the rest
            self.pid = pid
            self._watch(sub, pid)

    def _undo_create(self) -> None:
        try:
            self.runtime.delete(self.id, force=True)
        except OCIRuntimeError as e:
            os.write(2, f"pycontainerd-shim: cleaning up {self.id}: {e}\n".encode())
        self.stdio.close()
        self._state = State.DELETED

    def _record(self, rec: ExitRecord) -> None:
        write_exit(self.bundle, rec.pid, rec.exit_status, rec.exited_at)

    def start(self) -> None:
        with self._op_lock:
            self._require("start", State.CREATED)
            if self._reaped:
                raise ProcessFinishedError(f"cannot start: container {self.id} already exited")
            self.runtime.start(self.id)
            self._advance(State.CREATED, State.RUNNING)

    def kill(self, sig: int = signal.SIGTERM, all: bool = False) -> None:
        with self._op_lock:
            self._require_alive("kill")
            try:
                self.runtime.kill(self.id, sig, all)
            except OCIRuntimeError:
                if self._exit_seen(0.5):  # it exited while we were at it
                    raise ProcessFinishedError(f"container {self.id} already finished") from None
                raise

    def pause(self) -> None:
        with self._op_lock:
            self._require("pause", State.RUNNING)
            self.runtime.pause(self.id)
            self._advance(State.RUNNING, State.PAUSED)

    def resume(self) -> None:
        with self._op_lock:
            self._require("resume", State.PAUSED)
            self.runtime.resume(self.id)
            self._advance(State.PAUSED, State.RUNNING)

    def update(self, resources: dict[str, Any]) -> None:
        with self._op_lock:
            self._require_alive("update")
            self.runtime.update(self.id, resources)

    def pids(self) -> list[int]:
        with self._op_lock:
            self._require("list the processes of", State.CREATED, State.RUNNING, State.PAUSED)
            return self.runtime.ps(self.id)

    def runtime_state(self) -> dict[str, Any]:
        return self.runtime.state(self.id)

    def exec(
        self,
        exec_id: str,
        spec: dict[str, Any],
        *,
        stdin: bool = False,
        log: LogWriter | None = None,
        drain_timeout: float | None = None,
    ) -> ExecProcess:
        """A new exec process (CREATED; `start()` runs it). spec is an OCI process object."""
        if not exec_id or "/" in exec_id or exec_id in (".", "..") or "\0" in exec_id:
            raise ProcessError(f"invalid exec id {exec_id!r}")
        with self._op_lock:
            self._require("exec into", State.RUNNING)
            if exec_id in self.execs:
                raise ProcessError(f"exec {exec_id} already exists")
            p = ExecProcess(
                self,
                exec_id,
                spec,
                stdin=stdin,
                log=log,
                drain_timeout=self.drain_timeout if drain_timeout is None else drain_timeout,
            )
            self.execs[exec_id] = p
            return p

    def delete(self, force: bool = False, timeout: float = 10.0) -> ExitRecord:
        """`runtime delete` (no state dir, cgroup, or process left); returns the exit.

        A running or paused container needs force (it is killed). The exit is the one the
        reaper saw; if it never comes, 255 is recorded, as containerd does for an unknown
        exit.
        """
        with self._op_lock:
            st = self._state
            if st is State.DELETED or (
                st in (State.RUNNING, State.PAUSED) and not self._reaped and not force
            ):
                raise StateTransitionError(st, "delete")
            try:
                # A created container (not started) is killed by delete, as runc does it.
                self.runtime.delete(self.id, force=force or not self._reaped)
            except OCIRuntimeError as e:
                if not _not_found(e):
                    raise
            if self.pid and not self._exited.wait(timeout):
                os.write(2, f"pycontainerd-shim: no exit seen for {self.id}\n".encode())
                if self._sub is not None:
                    self._sub.close()  # ends the waiter thread
                self._finish(ExitRecord(self.pid, 255, time.time_ns()))
            self.stdio.close()
            with self._lock:
                check_transition(self._state, State.DELETED)
                self._state = State.DELETED
            if self._exit is None:  # never ran
                self._exit = ExitRecord(self.pid, 255, time.time_ns())
            return self._exit


class ExecProcess(Process):
    """A process run inside the container with `runtime exec --detach`."""

    def __init__(
        self,
        init: InitProcess,
        exec_id: str,
        spec: dict[str, Any],
        *,
        stdin: bool = False,
        log: LogWriter | None = None,
        drain_timeout: float = 2.0,
    ) -> None:
        stdio = Stdio(
            terminal=bool(spec.get("terminal", False)),
            stdin=stdin,
            log=log,
            socket_dir=init.socket_dir,
        )
        super().__init__(exec_id, init.reaper, stdio, drain_timeout)
        self.init = init
        self.spec = spec
        self._pidfd = -1
        self._started = False  # start is tried once: a failed one has closed the stdio

    def start(self) -> None:
        """Run it: `runtime exec --detach --process <json> --pid-file <file>`."""
        with self._op_lock:
            self._require("start", State.CREATED)
            if self._started:
                raise StateTransitionError(self._state, "start again")
            self.init._require("exec into", State.RUNNING)
            self._started = True
            d = os.path.join(self.init.bundle, "execs")
            os.makedirs(d, exist_ok=True)
            spec_path = os.path.join(d, f"{self.id}.json")
            pid_file = os.path.join(d, f"{self.id}.pid")
            with open(spec_path, "w") as f:
                json.dump(self.spec, f)
            sub = self.reaper.subscribe()
            try:
                fds = self.stdio.prepare()
                self.init.runtime.exec(
                    self.init.id,
                    spec_path,
                    pid_file=pid_file,
                    console_socket=self.stdio.console_socket,
                    detach=True,
                    stdio=fds,
                )
                pid = _read_pid(pid_file)
                self.stdio.started()
            except BaseException:
                sub.close()
                self.stdio.close()
                raise
            finally:
                for p in (spec_path, pid_file):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
            sub.narrow(pid)
            # A pidfd, taken while the pid is certainly ours (alive or a zombie not yet
            # reaped), so kill() can never hit a process that reused the number.
            pidfd = sub.pidfd_open(pid)
            with self._lock:
                self._pidfd = -1 if pidfd is None else pidfd
            self.pid = pid
            self._watch(sub, pid)
            self._advance(State.CREATED, State.RUNNING)

    def _exited_hook(self) -> None:
        with self._lock:
            fd, self._pidfd = self._pidfd, -1
        if fd >= 0:
            os.close(fd)

    def kill(self, sig: int = signal.SIGTERM, all: bool = False) -> None:
        with self._op_lock:
            self._require_alive("kill")
            self._require("kill", State.RUNNING, State.PAUSED)
            with self._lock:
                if self._reaped or self._pidfd < 0:
                    raise ProcessFinishedError(f"exec {self.id} already finished")
                signal.pidfd_send_signal(self._pidfd, sig)

    def pids(self) -> list[int]:
        return [self.pid] if self._state in (State.RUNNING, State.PAUSED) else []

    def delete(self, force: bool = False, timeout: float = 10.0) -> ExitRecord | None:
        """Forget it; with force a running exec is killed first. Its exit, if it ran."""
        with self._op_lock:
            st = self._state
            if st in (State.RUNNING, State.PAUSED):
                if not force:
                    raise StateTransitionError(st, "delete")
                try:
                    self.kill(signal.SIGKILL)
                except ProcessFinishedError:
                    pass
                if not self._exited.wait(timeout):
                    if self._sub is not None:
                        self._sub.close()
                    self._finish(ExitRecord(self.pid, 255, time.time_ns()))
            self.stdio.close()
            with self._lock:
                check_transition(self._state, State.DELETED)
                self._state = State.DELETED
            self.init.execs.pop(self.id, None)
            return self._exit
