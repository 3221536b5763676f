"""The shim's reaper: the only caller of `os.waitpid` in the shim process.

The shim is the child subreaper of its container, so every process the container leaves
behind re-parents to it and must be reaped here, by one loop that calls `waitpid(-1)`.
Anything else in the process that reaped its own children (`subprocess.Popen.wait/poll`,
`subprocess.run`, asyncio child watchers) would race with it and steal an exit status, so the
shim spawns children only through `Reaper.start_child` (`os.posix_spawn`, which never reaps).

Exits are dispatched by pid to subscriptions. A caller takes its subscription *before* it
spawns a child, so an exit that happens before the pid is even known (a runtime that fails
at once; a container init that exits before the pid file is read) is buffered, not lost:

    sub = reaper.subscribe()          # buffers every exit from now on
    ... spawn the runtime, read the container's pid from the pid file ...
    sub.narrow(pid)                   # keep only this pid's exit (drops the rest)
    ex = sub.wait(pid)                # returns at once if it already exited

fds, threads and signals (one Reaper per process; `start()` runs in the main thread, because
Python installs signal handlers and the wakeup fd only there):

    piece              written by                       read by / purpose
    -----------------  -------------------------------  --------------------------------------
    SIGCHLD handler    the kernel                       CPython's C handler; SA_RESTART
                                                        (siginterrupt False) so syscalls in
                                                        other threads are not interrupted
    wakeup pipe        CPython's C signal handler: one  the reaper thread: poll(), drain.
    (O_NONBLOCK,       byte per signal, from            Wakes it at once, whatever the main
     CLOEXEC)          signal.set_wakeup_fd             thread is doing
    thread             -                                loop: wait on the pipe (or a safety
    "shim-reaper"                                       timeout), drain it, waitpid(-1,
                                                        WNOHANG) until nothing is left; each
                                                        exit -> Exit(pid, status, exited_at)
    Reaper._lock       the reaper thread holds it       subscriptions, ExitFuture.signal,
    (+ _cond)          around each waitpid AND its      Subscription.pidfd_open: "not
                       dispatch                         dispatched yet" under the lock means
                                                        "not reaped yet", so the pid cannot
                                                        have been reused: signalling is safe

The safety timeout (5 s) reaps even if some other code replaced the wakeup fd; it costs one
waitpid per interval.

Exits are reported as raw wait statuses; `Exit.exit_status` gives docker's number (the code,
or 128 + the signal of a signal death).
"""

from __future__ import annotations

import os
import signal
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def _prctl(option: int, arg: int) -> int:
    # ctypes only here: it costs a few MB and milliseconds, and is needed once per shim.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.prctl(
        ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), 0
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return ret


def become_subreaper() -> None:
    """Make orphaned descendants (the container's init, after the runtime exits) our children."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def is_subreaper() -> bool:
    import ctypes

    val = ctypes.c_int(0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(ctypes.c_int(PR_GET_CHILD_SUBREAPER), ctypes.byref(val), 0, 0, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return bool(val.value)


def exit_status(status: int) -> int:
    """docker's exit status of a raw wait status: the code, or 128 + signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Exit:
    """One reaped process: pid, raw wait status, and when it was reaped (ns since the epoch)."""

    __slots__ = ("exited_at", "pid", "status")

    def __init__(self, pid: int, status: int, exited_at: int) -> None:
        self.pid = pid
        self.status = status
        self.exited_at = exited_at

    @property
    def exit_status(self) -> int:
        return exit_status(self.status)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Exit) and (self.pid, self.status, self.exited_at) == (
            other.pid,
            other.status,
            other.exited_at,
        )

    def __hash__(self) -> int:
        return hash((self.pid, self.status, self.exited_at))

    def __repr__(self) -> str:
        return f"Exit(pid={self.pid}, exit_status={self.exit_status}, exited_at={self.exited_at})"


class Subscription:
    """Exits seen since `Reaper.subscribe()`; all of them until `narrow()`, then only those pids.

    Each pid keeps its first exit: once a pid has exited and been reaped it may be reused,
    and a later process with the same number is not the one this subscription was about.
    """

    def __init__(self, reaper: Reaper) -> None:
        self._reaper = reaper
        self._exits: dict[int, Exit] = {}
        self._pids: set[int] | None = None  # None: everything
        self.closed = False

    def _push(self, ex: Exit) -> None:  # under the reaper's lock
        self._exits.setdefault(ex.pid, ex)

    def narrow(self, *pids: int) -> None:
        """From now on keep only these pids' exits (added to any earlier narrowing)."""
        self._reaper._narrow(self, pids)

    def poll(self, pid: int) -> Exit | None:
        with self._reaper._lock:
            return self._exits.get(pid)

    def wait(self, pid: int, timeout: float | None = None) -> Exit:
        """The exit of pid, waiting for it if need be; TimeoutError after timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self._reaper._cond
        with cond:
            while True:
                ex = self._exits.get(pid)
                if ex is not None:
                    return ex
                if self.closed:
                    raise RuntimeError("subscription closed")
                if deadline is None:
                    cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"pid {pid} has not exited")
                    cond.wait(left)

    def pidfd_open(self, pid: int) -> int | None:
        """A pidfd for pid, or None if its exit was already dispatched here.

        Taken under the reaper's lock: if the exit is not here yet, pid was not reaped yet
        either (it may be a zombie), so the pidfd refers to our process and not to a stranger
        that reused the number. Needs the subscription to cover pid.
        """
        with self._reaper._lock:
            if pid in self._exits:
                return None
            try:
                return os.pidfd_open(pid)
            except ProcessLookupError:
                return None

    def close(self) -> None:
        self._reaper._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExitFuture:
    """The coming exit of one child spawned by `Reaper.start_child`."""

    def __init__(self, pid: int, sub: Subscription) -> None:
        self.pid = pid
        self._sub = sub
        self._exit: Exit | None = None

    def done(self) -> bool:
        return self._exit is not None or self._sub.poll(self.pid) is not None

    def result(self, timeout: float | None = None) -> Exit:
        """The exit; TimeoutError if the child is still running after timeout seconds."""
        if self._exit is None:
            self._exit = self._sub.wait(self.pid, timeout)
            self._sub.close()
        return self._exit

    def signal(self, sig: int) -> bool:
        """Send sig unless the child was already reaped (its pid may be someone else's now)."""
        with self._sub._reaper._lock:
            if self._exit is not None or self.pid in self._sub._exits:
                return False
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return False
            return True

    def cancel(self) -> None:
        """Stop tracking the child (its exit is still reaped, and then dropped)."""
        self._sub.close()


def _default_sigdef() -> list[int]:
    # CPython ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: a container
    # must not inherit that (`yes | head` would then see EPIPE instead of dying). Reset
    # every signal that can be reset.
    skip = {signal.SIGKILL, signal.SIGSTOP}
    return [s for s in signal.valid_signals() if s not in skip]


class Reaper:
    """Reaps every child of the process and dispatches exits to subscriptions by pid."""

    def __init__(
        self,
        *,
        waitpid: Callable[[int, int], tuple[int, int]] = os.waitpid,
        safety_interval: float = 5.0,
    ) -> None:
        # waitpid is injectable so unit tests can feed fake exits without children.
        self._waitpid = waitpid
        self._safety_interval = safety_interval
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._all: list[Subscription] = []  # not narrowed: they get every exit
        self._by_pid: dict[int, list[Subscription]] = {}
        self._thread: threading.Thread | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._old_wakeup = -1
        self._old_handler: object = None
        self._stopping = False
        self._sigdef: list[int] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Install the SIGCHLD wakeup and start the reaper thread. Main thread only."""
        if self._thread is not None:
            return
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # A Python-level handler is required for the C handler to write the wakeup fd; the
        # handler itself has nothing to do (the thread does the work).
        self._old_handler = signal.signal(signal.SIGCHLD, _noop)
        signal.siginterrupt(signal.SIGCHLD, False)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="shim-reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and restore the signal state (tests; the shim just exits)."""
        if self._thread is None:
            return
        self._stopping = True
        os.write(self._wake_w, b"\0")
        self._thread.join()
        self._thread = None
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGCHLD, self._old_handler)  # type: ignore[arg-type]
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1

    def _loop(self) -> None:
        import select

        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        timeout_ms = int(self._safety_interval * 1000)
        self.reap()  # children that exited before start()
        while not self._stopping:
            poller.poll(timeout_ms)
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            try:
                self.reap()
            except Exception as e:  # the thread must outlive anything: no reaper, no exits
                os.write(2, f"pycontainerd-shim: reaper: {e!r}\n".encode())

    # -- reaping -----------------------------------------------------------------------------

    def reap(self) -> int:
        """Reap every child that has exited and dispatch the exits; returns how many."""
        n = 0
        while True:
            with self._cond:
                try:
                    pid, status = self._waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return n
                if pid == 0:
                    return n
                ex = Exit(pid, status, time.time_ns())
                for sub in self._all:
                    sub._push(ex)
                for sub in self._by_pid.get(pid, ()):
                    sub._push(ex)
                self._cond.notify_all()
            n += 1

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        with self._lock:
            self._all.append(sub)
        return sub

    def _narrow(self, sub: Subscription, pids: Iterable[int]) -> None:
        with self._lock:
            if sub.closed:
                return
            if sub._pids is None:
                sub._pids = set()
                self._all.remove(sub)
            new = set(pids) - sub._pids
            sub._pids |= new
            for pid in new:
                self._by_pid.setdefault(pid, []).append(sub)
            for pid in [p for p in sub._exits if p not in sub._pids]:
                del sub._exits[pid]

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._cond:
            if sub.closed:
                return
            sub.closed = True
            if sub._pids is None:
                self._all.remove(sub)
            else:
                for pid in sub._pids:
                    subs = self._by_pid[pid]
                    subs.remove(sub)
                    if not subs:
                        del self._by_pid[pid]
            self._cond.notify_all()  # waiters on a closed subscription give up

    # -- spawning ----------------------------------------------------------------------------

    def start_child(
        self,
        argv: list[str],
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        env: Mapping[str, str] | None = None,
        new_pgroup: bool = True,
    ) -> tuple[int, ExitFuture]:
        """Spawn argv with `os.posix_spawn`; returns its pid and the future of its exit.

        stdin/stdout/stderr are fds dup'ed onto 0/1/2 (None: /dev/null, unlike Popen: the
        shim's own stdio is its log and must not leak into runtimes or containers). Every
        other fd of the shim is close-on-exec (Python's default), so nothing else is
        inherited. new_pgroup puts the child in its own process group, away from signals
        sent to the shim's.
        """
        sub = self.subscribe()
        devnull = -1
        try:
            fds = [stdin, stdout, stderr]
            if None in fds:
                devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            actions = []
            for target, fd in enumerate(fds):
                actions.append((os.POSIX_SPAWN_DUP2, devnull if fd is None else fd, target))
            # dup2 onto 0-2 in order would clobber a source fd that is itself 0-2: move such
            # sources above 2 first (the shim's own 0-2 are normally /dev/null or its log).
            moved = []
            for i, (op, fd, target) in enumerate(actions):
                if fd < 3 and fd != target:
                    import fcntl

                    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                    moved.append(high)
                    actions[i] = (op, high, target)
            if self._sigdef is None:
                self._sigdef = _default_sigdef()
            spawn = os.posix_spawn if "/" in argv[0] else os.posix_spawnp
            try:
                pid = spawn(
                    argv[0],
                    argv,
                    os.environ if env is None else env,
                    file_actions=actions,
                    setpgroup=0 if new_pgroup else None,
                    setsigmask=(),
                    setsigdef=self._sigdef,
                )
            finally:
                for fd in moved:
                    os.close(fd)
        except BaseException:
            sub.close()
            raise
        finally:
            if devnull >= 0:
                os.close(devnull)
        sub.narrow(pid)
        return pid, ExitFuture(pid, sub)


def _noop(signum: int, frame: object) -> None:
    pass
