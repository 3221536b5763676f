"""The shim's events towards the daemon, and the OOM watch that produces one kind of them.

`Publisher` wraps each event (TaskCreate, TaskStart, TaskExit, TaskOOM, ...) in an Envelope
(namespace, topic, the time it happened) and hands it to one sender thread through a queue
bounded in events; the thread calls `pycontainerd.runtime.events.v1.Events/Forward` on the
daemon's socket.

Delivery is best-effort, on purpose. The container must never wait for the daemon, and the
daemon may be down, restarting, or slow at any moment (DESIGN.md, "What survives what"):

- `publish()` never blocks: when the queue is full the event is dropped (and counted).
- The sender retries an event the daemon could not take (UNAVAILABLE, DEADLINE_EXCEEDED,
  RESOURCE_EXHAUSTED) with a growing pause, `attempts` times in all, then drops it and goes
  on with the next: one daemon outage must not hold every later event hostage. Any other
  error (the daemon refused the event) drops it at once.
- Order is kept: one sender, one queue.

Losing an event costs the daemon latency, not correctness: it reconciles by level, not by
edge (containerd PR #829's lesson, STYLE.md §2 and §7.5). After (re)connecting to a shim it
calls `State` and `Wait`, and the exit status is in the shim's memory and in `<bundle>/exit`
until `Delete`, so an exit whose TaskExit was lost is still seen with its real code.

OOM (`OOMWatcher`, one thread per container, no periodic work on cgroup v1):

    hierarchy  how                                             wakes on
    ---------  ----------------------------------------------  ----------------------------
    cgroup v1  an eventfd registered on memory.oom_control     each OOM in the cgroup, and
               through cgroup.event_control                    the cgroup's removal
    cgroup v2  poll(POLLPRI) on memory.events, re-read the     a change of the file (kernfs
               oom_kill counter (and every `interval` anyway)  notify), or the interval
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

import grpc

from containerd_py.api.runtime.events.v1 import events_pb2, events_pb2_grpc
from containerd_py.api.types.v1 import event_pb2

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from google.protobuf.message import Message

log = logging.getLogger("shim.publisher")

# The task topics (the daemon's containerd_py.events.topics, which the shim may not import:
# it is daemon code; the layering test keeps the shim off it).
TASK_CREATE = "/tasks/create"
TASK_START = "/tasks/start"
TASK_EXIT = "/tasks/exit"
TASK_OOM = "/tasks/oom"
TASK_DELETE = "/tasks/delete"
TASK_PAUSED = "/tasks/paused"
TASK_RESUMED = "/tasks/resumed"
TASK_EXEC_ADDED = "/tasks/exec-added"
TASK_EXEC_STARTED = "/tasks/exec-started"

RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

# A restarted daemon should be found within about a second, not after grpc's default
# reconnect backoff (up to 120 s).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def envelope(namespace: str, topic: str, event: Message, at_ns: int | None = None) -> Any:
    """The Envelope as the daemon's exchange takes it (time: when it happened)."""
    env = event_pb2.Envelope(namespace=namespace, topic=topic)
    env.timestamp.FromNanoseconds(time.time_ns() if at_ns is None else at_ns)
    env.event.Pack(event)
    return env


class Publisher:
    """Best-effort, never-blocking delivery of events to the daemon (see the module doc).

    address is the daemon's socket path (or "unix:..."); empty: events are only logged.
    """

    def __init__(
        self,
        address: str,
        namespace: str,
        *,
        max_queue: int = 1024,
        attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 3.0,
        call_timeout: float = 2.0,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.call_timeout = call_timeout
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self.sent = 0
        self.dropped = 0

    @property
    def target(self) -> str:
        a = self.address
        return a if a.startswith(("unix:", "unix-abstract:")) else f"unix:{a}"

    def publish(self, topic: str, event: Message, at_ns: int | None = None) -> None:
        """Queue the event for the daemon; never blocks, never raises for delivery."""
        if not self.address:
            log.debug("event %s (no daemon address): %s", topic, event)
            return
        env = envelope(self.namespace, topic, event, at_ns)
        try:
            self._queue.put_nowait(env)
        except queue.Full:
            self.dropped += 1
            log.warning("event queue full: dropped %s", topic)
            return
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        # Started on the first event, not at import: a shim that never publishes (tests,
        # no daemon) carries no thread for it.
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="shim-publisher", daemon=True
                )
                self._thread.start()

    def _stub(self) -> events_pb2_grpc.EventsStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        return events_pb2_grpc.EventsStub(self._channel)

    def _run(self) -> None:
        while True:
            try:
                env = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if env is None:  # close(): everything before it was handled
                return
            self._deliver(env)

    def _deliver(self, env: Any) -> None:
        pause = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                # wait_for_ready: a daemon that is coming back gets the whole call_timeout
                # to accept, instead of an at-once UNAVAILABLE while the channel reconnects.
                self._stub().Forward(
                    events_pb2.ForwardRequest(envelope=env),
                    timeout=self.call_timeout,
                    wait_for_ready=True,
                )
                self.sent += 1
                return
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                if code not in RETRY_CODES:
                    log.warning("daemon refused event %s: %s", env.topic, code)
                    break
                if attempt == self.attempts:
                    log.warning(
                        "dropped event %s after %d attempts: daemon unreachable (%s)",
                        env.topic,
                        attempt,
                        code,
                    )
                    break
            # close() cuts the pauses short: pending events get one more try, not the
            # whole schedule.
            if self._stop.wait(pause):
                pause = 0.0
            pause = min(pause * 2, self.max_backoff) if pause else 0.0
        self.dropped += 1

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued within about timeout seconds, then stop (shim exit)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            deadline = time.monotonic() + timeout
            # Let the sender empty the queue at its own pace, then tell it to stop.
            while self._queue.qsize() and time.monotonic() < deadline:
                time.sleep(0.02)
            self._stop.set()
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            thread.join(max(0.0, deadline - time.monotonic()))
        else:
            self._stop.set()
        if self._channel is not None:
            self._channel.close()
            self._channel = None


# -- OOM -------------------------------------------------------------------------------------


def memory_cgroup(
    pid: int, *, proc: str = "/proc", mountinfo: str | None = None
) -> tuple[str, str] | None:
    """("v1"|"v2", host dir) of pid's memory cgroup; None if it has none we can see.

    Reads /proc/<pid>/cgroup (paths relative to the shim's cgroup namespace, the host's)
    and the shim's mountinfo to find where the hierarchy is mounted.
    """
    from oci_runtime.cgroups.mountinfo import cgroup_mounts, controllers_of

    try:
        with open(f"{proc}/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        with open(mountinfo or f"{proc}/self/mountinfo") as f:
            mounts = cgroup_mounts(f.read())
    except OSError:
        return None
    v1_rel = v2_rel = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_rel = parts[2]
        elif "memory" in parts[1].split(","):
            v1_rel = parts[2]
    v1_mnt = v2_mnt = None
    for m in mounts:
        if m.fstype == "cgroup" and v1_mnt is None and "memory" in controllers_of(m.super_options):
            v1_mnt = (m.root, m.mountpoint)
        elif m.fstype == "cgroup2" and v2_mnt is None:
            v2_mnt = (m.root, m.mountpoint)

    def join(mnt: tuple[str, str], rel: str) -> str:
        root, point = mnt
        if root != "/" and rel.startswith(root):
            rel = rel[len(root) :]
        return os.path.join(point, rel.lstrip("/"))

    if v1_rel is not None and v1_mnt is not None:
        return "v1", join(v1_mnt, v1_rel)
    if v2_rel is not None and v2_mnt is not None:
        d = join(v2_mnt, v2_rel)
        if os.path.exists(os.path.join(d, "memory.events")):
            return "v2", d
    return None


def _read_key(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
    except (OSError, ValueError):
        pass
    return 0


def oom_kill_count(version: str, cgroup_dir: str) -> int:
    """How many times the OOM killer fired in the cgroup (0 when the kernel does not say)."""
    name = "memory.oom_control" if version == "v1" else "memory.events"
    return _read_key(os.path.join(cgroup_dir, name), "oom_kill")


class OOMWatcher:
    """Calls on_oom() for each OOM in one container's memory cgroup (see the module doc)."""

    def __init__(
        self,
        version: str,
        cgroup_dir: str,
        on_oom: Callable[[], None],
        *,
        interval: float = 5.0,
    ) -> None:
        self.version = version
        self.dir = cgroup_dir
        self.on_oom = on_oom
        self.interval = interval
        self._stop = threading.Event()
        self._efd = -1
        self._thread: threading.Thread | None = None

    @classmethod
    def for_pid(cls, pid: int, on_oom: Callable[[], None]) -> OOMWatcher | None:
        found = memory_cgroup(pid)
        return None if found is None else cls(found[0], found[1], on_oom)

    def oom_kills(self) -> int:
        return oom_kill_count(self.version, self.dir)

    def start(self) -> None:
        if self.version == "v1":
            self._register_v1()
        target = self._run_v1 if self.version == "v1" else self._run_v2
        self._thread = threading.Thread(target=target, name="shim-oom", daemon=True)
        self._thread.start()

    def _register_v1(self) -> None:
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            ofd = os.open(os.path.join(self.dir, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                with open(os.path.join(self.dir, "cgroup.event_control"), "w") as f:
                    f.write(f"{efd} {ofd}")
            finally:
                # The kernel holds its own reference to the file once registered.
                os.close(ofd)
        except BaseException:
            os.close(efd)
            raise
        self._efd = efd

    def _run_v1(self) -> None:
        efd = self._efd
        try:
            while True:
                os.eventfd_read(efd)  # blocks; counts every OOM since the last read
                if self._stop.is_set():
                    return
                # The kernel also signals the eventfd when the cgroup is removed.
                if not os.path.exists(os.path.join(self.dir, "memory.oom_control")):
                    return
                self._fire()
        except OSError as e:
            log.warning("OOM watch of %s ended: %s", self.dir, e)
        finally:
            self._efd = -1
            os.close(efd)

    def _run_v2(self) -> None:
        import select

        path = os.path.join(self.dir, "memory.events")
        seen = oom_kill_count("v2", self.dir)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        poller = select.poll()
        if fd >= 0:
            poller.register(fd, select.POLLPRI | select.POLLERR)
        try:
            while not self._stop.is_set():
                if fd >= 0:
                    poller.poll(int(self.interval * 1000))
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.read(fd, 4096)  # re-arms the kernfs notification
                else:
                    self._stop.wait(self.interval)
                if self._stop.is_set() or not os.path.isdir(self.dir):
                    return
                n = oom_kill_count("v2", self.dir)
                if n > seen:
                    seen = n
                    self._fire()
        except OSError as e:
            log.warning("OOM watch of %s ended: %s", self.dir, e)
        finally:
            if fd >= 0:
                os.close(fd)

    def _fire(self) -> None:
        try:
            self.on_oom()
        except Exception:
            log.exception("OOM callback failed")

    def stop(self) -> None:
        self._stop.set()
        efd = self._efd
        if efd >= 0:
            try:
                os.eventfd_write(efd, 1)  # wakes the blocked read; the thread sees _stop
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
