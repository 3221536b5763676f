"""The shim's `Task` service (pycontainerd.runtime.task.v1): gRPC over the core's processes.

A thin adapter, as containerd's `task/service.go` is over its `process` package: requests
become calls on `InitProcess`/`ExecProcess` (shim/process.py), whose state machines decide
what is allowed; answers and events are built from what they report. One shim usually
holds one task (its init and exec processes); tasks are kept by id so that a group of
containers (a pod) could share a shim.

Errors: every handler maps exceptions to a gRPC status in one place (`status_of`), never a
traceback: a state the operation does not fit is FAILED_PRECONDITION, an unknown task or
exec (or a process that already finished) NOT_FOUND, bad input INVALID_ARGUMENT, a failed
runtime call UNKNOWN with the runtime's own message.

Threads: grpc runs each call on a worker thread. Wait and Attach hold theirs until the
process exits or the client goes (they check every second whether the client is still
there, so a daemon that restarted and waits again does not leak threads). One small thread
per process waits for its exit to publish TaskExit, after the core has written the exit
file; Delete joins it, so TaskExit is always forwarded before TaskDelete. That thread also
takes the process's start gate (`Task.start_gate`), which Start holds until its own event
is queued: a process that exits at once is told started, then exited, never the reverse.
(Wait may answer before the start event is out: it reports the exit, not the events.)

Idle exit: a shim whose tasks are all gone (deleted, or never created) and that nobody has
called for a while exits by itself (`idle_for`, used by shim/server.py): the daemon may
have died between Delete and Shutdown (containerd#6771-style leaks).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time

import grpc

from containerd_py.api.events.v1 import task_pb2 as events
from containerd_py.api.runtime.task.v1 import shim_pb2 as pb
from containerd_py.api.runtime.task.v1 import shim_pb2_grpc
from containerd_py.api.types.v1 import io_pb2, metrics_pb2
from containerd_py.api.types.v1 import task_pb2 as types
from shim import manager
from shim import publisher as topics
from shim.exitfile import exit_path
from shim.process import (
    ExecProcess,
    InitProcess,
    ProcessError,
    ProcessFinishedError,
    State,
    StateTransitionError,
)
from shim.runtime_client import OCIRuntimeError
from shim.stdio import StdioError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from google.protobuf.timestamp_pb2 import Timestamp

    from shim.logs import LogWriter
    from shim.metrics import TaskCgroup
    from shim.publisher import OOMWatcher, Publisher
    from shim.reaper import Reaper

SHIM_VERSION = "0.1.0"
# Set in the initial metadata of an Attach call once its output subscription is live: a
# client that starts the process after seeing it misses no output.
ATTACHED_METADATA_KEY = "pycontainerd-attached"
POLL = 1.0  # how often blocked Wait/Attach calls check that their client is still there

log = logging.getLogger("shim.service")


# -- errors ----------------------------------------------------------------------------------


class ServiceError(Exception):
    code = grpc.StatusCode.INTERNAL


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(ServiceError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Cancelled(ServiceError):
    code = grpc.StatusCode.CANCELLED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def _runtime_not_found(e: OCIRuntimeError) -> bool:
    m = e.message.lower()
    return "does not exist" in m or "no such file or directory" in m or "not found" in m


def status_of(e: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and message a client gets for an exception a handler raised."""
    if isinstance(e, ServiceError):
        return e.code, str(e)
    if isinstance(e, ProcessFinishedError):
        return grpc.StatusCode.NOT_FOUND, str(e)  # containerd: "process already finished"
    if isinstance(e, (StateTransitionError, ProcessError, StdioError)):
        return grpc.StatusCode.FAILED_PRECONDITION, str(e)
    if isinstance(e, OCIRuntimeError):
        if _runtime_not_found(e):
            return grpc.StatusCode.NOT_FOUND, str(e)
        return grpc.StatusCode.UNKNOWN, str(e)
    if isinstance(e, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(e) or "timed out"
    if isinstance(e, OSError):
        return grpc.StatusCode.INTERNAL, str(e)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}"


# -- activity (for the idle exit) ------------------------------------------------------------


class Activity:
    """Calls in flight and when the last one ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inflight = 0
        self.last = time.monotonic()

    def enter(self) -> None:
        with self._lock:
            self.inflight += 1
            self.last = time.monotonic()

    def leave(self) -> None:
        with self._lock:
            self.inflight -= 1
            self.last = time.monotonic()

    def touch(self) -> None:
        with self._lock:
            self.last = time.monotonic()

    def idle_for(self) -> float:
        with self._lock:
            return 0.0 if self.inflight else time.monotonic() - self.last


def _abort(context: grpc.ServicerContext, method: str, e: Exception) -> None:
    code, message = status_of(e)
    if code is grpc.StatusCode.INTERNAL:
        log.error("%s failed: %s", method, message, exc_info=e)
    else:
        log.debug("%s: %s: %s", method, code.name, message)
    context.abort(code, message)


def unary(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A handler that counts as activity and answers errors with their status."""

    @functools.wraps(fn)
    def handler(self: TaskService, request: Any, context: grpc.ServicerContext) -> Any:
        self.activity.enter()
        try:
            return fn(self, request, context)
        except Exception as e:
            _abort(context, fn.__name__, e)
        finally:
            self.activity.leave()

    return handler


def streaming(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """`unary` for a handler that yields its responses."""

    @functools.wraps(fn)
    def handler(self: TaskService, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.activity.enter()
        try:
            yield from fn(self, request, context)
        except Exception as e:
            _abort(context, fn.__name__, e)
        finally:
            self.activity.leave()

    return handler


# -- conversions -----------------------------------------------------------------------------

_STATUS = {
    State.CREATED: types.CREATED,
    State.RUNNING: types.RUNNING,
    State.PAUSED: types.PAUSED,
    State.STOPPED: types.STOPPED,
    State.DELETED: types.STOPPED,
}
_STREAMS = {"stdout": io_pb2.STDIO_STREAM_STDOUT, "stderr": io_pb2.STDIO_STREAM_STDERR}
# cgroup v1 reports "no limit" as the largest page-aligned int64.
_UNLIMITED = 1 << 62


def _ts(ns: int) -> Timestamp:
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromNanoseconds(ns)
    return t


def _u64(v: Any) -> int:
    return v if isinstance(v, int) and 0 <= v < 1 << 64 else 0


def stats_from_runtime(data: dict[str, Any]) -> metrics_pb2.Stats:
    """runc's `events --stats` "data" object (v1 or v2 counters) as our Stats."""
    s = metrics_pb2.Stats()
    cpu = data.get("cpu") or {}
    usage = cpu.get("usage") or {}
    s.cpu.usage_total_ns = _u64(usage.get("total"))
    s.cpu.usage_user_ns = _u64(usage.get("user"))
    s.cpu.usage_kernel_ns = _u64(usage.get("kernel"))
    s.cpu.usage_per_cpu_ns.extend(_u64(x) for x in usage.get("percpu") or ())
    thr = cpu.get("throttling") or {}
    s.cpu.periods = _u64(thr.get("periods"))
    s.cpu.throttled_periods = _u64(thr.get("throttledPeriods"))
    s.cpu.throttled_time_ns = _u64(thr.get("throttledTime"))

    mem = data.get("memory") or {}
    mu = mem.get("usage") or {}
    s.memory.usage = _u64(mu.get("usage"))
    s.memory.max_usage = _u64(mu.get("max"))
    limit = _u64(mu.get("limit"))
    s.memory.limit = 0 if limit >= _UNLIMITED else limit
    s.memory.cache = _u64(mem.get("cache"))
    raw = {str(k): _u64(v) for k, v in (mem.get("raw") or {}).items()}
    s.memory.raw.update(raw)
    s.memory.rss = raw.get("total_rss", raw.get("rss", raw.get("anon", 0)))
    # runc reports memory+swap as "swap" on both versions (v1 memsw semantics).
    swap = _u64((mem.get("swap") or {}).get("usage"))
    s.memory.swap = max(0, swap - s.memory.usage) if swap else 0

    pids = data.get("pids") or {}
    s.pids.current = _u64(pids.get("current"))
    s.pids.limit = _u64(pids.get("limit"))

    blkio = data.get("blkio") or {}
    for key, read_field, write_field in (
        ("ioServiceBytesRecursive", "read_bytes", "write_bytes"),
        ("ioServicedRecursive", "read_ops", "write_ops"),
    ):
        for entry in blkio.get(key) or ():
            op = str(entry.get("op", "")).lower()
            value = _u64(entry.get("value"))  # runc leaves out a zero value (omitempty)
            if op == "read":
                setattr(s.blkio, read_field, getattr(s.blkio, read_field) + value)
            elif op == "write":
                setattr(s.blkio, write_field, getattr(s.blkio, write_field) + value)
    return s


# -- the service -----------------------------------------------------------------------------


class Task:
    """One container of this shim: its init process and what Create set up around it."""

    def __init__(
        self,
        id: str,
        bundle: str,
        init: InitProcess,
        *,
        log: LogWriter | None,
        mounted: bool,
        stdin_once: bool,
    ) -> None:
        self.id = id
        self.bundle = bundle
        self.init = init
        self.log = log
        self.mounted = mounted
        self.stdin_once = stdin_once
        self.oom: OOMWatcher | None = None
        # Where Stats reads the counters: config.json's linux part and the runtime's cgroup
        # driver, kept from Create; the cgroup itself is found on the first Stats.
        self.linux_config: dict[str, Any] = {}
        self.systemd_cgroup = False
        self.cgroup: TaskCgroup | None = None
        self.exit_watchers: dict[str, threading.Thread] = {}  # exec id ("" = init)
        self._start_gates: dict[str, threading.Lock] = {}
        self._gates_lock = threading.Lock()

    def start_gate(self, exec_id: str) -> threading.Lock:
        """Held by Start from the runtime call until its event is queued, and taken by the
        exit watcher before it queues the exit: a process that exits at once cannot have
        its exit told before its start (containerd's shim holds such exits likewise)."""
        with self._gates_lock:
            return self._start_gates.setdefault(exec_id, threading.Lock())

    def drop_start_gate(self, exec_id: str) -> None:
        """The process is deleted: its gate goes too (a shim may run many execs)."""
        with self._gates_lock:
            self._start_gates.pop(exec_id, None)


class TaskService(shim_pb2_grpc.TaskServicer):
    def __init__(
        self,
        *,
        namespace: str,
        bundle: str,
        socket_dir: str,
        reaper: Reaper,
        publisher: Publisher,
        drain_timeout: float = 2.0,
    ) -> None:
        self.namespace = namespace
        self.bundle = os.path.abspath(bundle)
        self.socket_dir = socket_dir
        self.reaper = reaper
        self.publisher = publisher
        self.drain_timeout = drain_timeout
        self.tasks: dict[str, Task] = {}
        self._creating: set[str] = set()
        self._lock = threading.Lock()
        self.activity = Activity()
        self.shutdown_requested = threading.Event()
        self.shutdown_now = False

    # -- lookups -----------------------------------------------------------------------------

    def _task(self, id: str) -> Task:
        with self._lock:
            task = self.tasks.get(id)
        if task is None:
            raise NotFound(f"task {id!r} not found")
        return task

    @staticmethod
    def _process(task: Task, exec_id: str) -> InitProcess | ExecProcess:
        if not exec_id:
            return task.init
        p = task.init.execs.get(exec_id)
        if p is None:
            raise NotFound(f"exec {exec_id!r} of task {task.id!r} not found")
        return p

    def orphaned(self) -> bool:
        """The bundle is gone and no process of ours still runs: whoever removed the
        task's state without a Delete (a crashed daemon's clean-up, an operator) will not
        come back for it, so the shim need not wait out its idle time with a task."""
        if os.path.isdir(self.bundle):
            return False
        with self._lock:
            if self._creating:
                return False
            procs = [p for t in self.tasks.values() for p in (t.init, *t.init.execs.values())]
        return all(p.state in (State.STOPPED, State.DELETED) for p in procs)

    def idle_for(self) -> float | None:
        """Seconds since the last call, None while a task exists (never idle then)."""
        with self._lock:
            if self.tasks or self._creating:
                return None
        return self.activity.idle_for()

    def _publish(self, topic: str, event: Any, at_ns: int | None = None) -> None:
        self.publisher.publish(topic, event, at_ns)

    def _watch_exit(self, task: Task, proc: InitProcess | ExecProcess, exec_id: str) -> None:
        """Publish TaskExit once the core recorded the exit (exit file written first)."""

        def run() -> None:
            try:
                status, at = proc.wait()
            except (StateTransitionError, RuntimeError):
                return
            with task.start_gate(exec_id):
                self._publish(
                    topics.TASK_EXIT,
                    events.TaskExit(
                        container_id=task.id,
                        id=exec_id or task.id,
                        pid=proc.pid,
                        exit_status=status,
                        exited_at=_ts(at),
                    ),
                    at,
                )

        t = threading.Thread(target=run, name=f"shim-exit-{exec_id or task.id}", daemon=True)
        task.exit_watchers[exec_id] = t
        t.start()

    def _join_exit_watcher(self, task: Task, exec_id: str) -> None:
        t = task.exit_watchers.pop(exec_id, None)
        if t is not None:
            t.join(5.0)
        task.drop_start_gate(exec_id)

    # -- Create ------------------------------------------------------------------------------

    @unary
    def Create(self, request: pb.CreateRequest, context: grpc.ServicerContext) -> Any:
        if not request.id:
            raise InvalidArgument("create: id is required")
        if request.checkpoint:
            raise Unimplemented("create: restoring a checkpoint is not supported")
        if request.stdin or request.stdout or request.stderr:
            raise Unimplemented(
                "create: stdio paths are not supported: the shim holds the pipes (leave "
                "stdin/stdout/stderr empty) and writes the log given in `log`"
            )
        with self._lock:
            if request.id in self.tasks or request.id in self._creating:
                raise AlreadyExists(f"task {request.id!r} already exists")
            self._creating.add(request.id)
        try:
            return self._create(request)
        finally:
            with self._lock:
                self._creating.discard(request.id)

    def _create(self, request: pb.CreateRequest) -> pb.CreateResponse:
        from shim.logs import LogWriter

        bundle = os.path.abspath(request.bundle or self.bundle)
        try:
            with open(os.path.join(bundle, "config.json"), "rb") as f:
                config = json.load(f)
            terminal = bool((config.get("process") or {}).get("terminal", False))
        except FileNotFoundError:
            raise InvalidArgument(f"create: {bundle} has no config.json") from None
        except (OSError, ValueError, AttributeError) as e:
            raise InvalidArgument(f"create: {bundle}/config.json: {e}") from None
        if request.terminal and not terminal:
            raise InvalidArgument("create: terminal requested but config.json has no terminal")
        opts = request.runtime
        binary = opts.binary_name or "pyrunc"
        options = {
            "binary_name": binary,
            "root": opts.root
            or manager.default_runtime_root(self.socket_dir, binary, self.namespace),
            "systemd_cgroup": opts.systemd_cgroup,
            "extra_args": list(opts.extra_args),
        }
        # A previous run's exit file would be taken for this one's by `shim delete`.
        try:
            os.unlink(exit_path(bundle))
        except FileNotFoundError:
            pass
        manager.write_options(bundle, options)
        runtime = manager.runtime_client(
            options, bundle, self.socket_dir, self.namespace, self.reaper
        )
        mounted = False
        writer: LogWriter | None = None
        try:
            if request.rootfs:
                mounts = [(m.type, m.source, m.target, list(m.options)) for m in request.rootfs]
                try:
                    manager.mount_rootfs(bundle, mounts)
                except ValueError as e:
                    raise InvalidArgument(f"create: {e}") from None
                mounted = True
            if request.log.path:
                writer = LogWriter(
                    request.log.path,
                    max_size=request.log.max_size,
                    max_files=request.log.max_files or 1,
                )
            init = InitProcess(
                request.id,
                bundle,
                runtime,
                self.reaper,
                terminal=terminal,
                stdin=request.open_stdin,
                log=writer,
                socket_dir=self.socket_dir,
                drain_timeout=self.drain_timeout,
            )
            init.create()
        except BaseException:
            if writer is not None:
                writer.close()
            if mounted:
                manager.unmount_rootfs(bundle)
            raise
        task = Task(
            request.id,
            bundle,
            init,
            log=writer,
            mounted=mounted,
            stdin_once=request.stdin_once,
        )
        linux = config.get("linux")
        task.linux_config = linux if isinstance(linux, dict) else {}
        task.systemd_cgroup = bool(opts.systemd_cgroup)
        with self._lock:
            self.tasks[request.id] = task
        self._publish(
            topics.TASK_CREATE,
            events.TaskCreate(
                container_id=request.id,
                bundle=bundle,
                rootfs=list(request.rootfs),
                io=events.TaskIO(terminal=terminal),
                pid=init.pid,
            ),
        )
        self._watch_exit(task, init, "")
        self._watch_oom(task)
        return pb.CreateResponse(pid=init.pid)

    def _watch_oom(self, task: Task) -> None:
        from shim.publisher import OOMWatcher

        def on_oom() -> None:
            log.info("OOM in task %s", task.id)
            self._publish(topics.TASK_OOM, events.TaskOOM(container_id=task.id))

        try:
            w = OOMWatcher.for_pid(task.init.pid, on_oom)
            if w is not None:
                w.start()
                task.oom = w
        except OSError as e:  # OOM events are a nicety: the container runs without them
            log.warning("no OOM events for %s: %s", task.id, e)

    # -- lifecycle ---------------------------------------------------------------------------

    @unary
    def Start(self, request: pb.StartRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        p = self._process(task, request.exec_id)
        with task.start_gate(request.exec_id):
            p.start()
            if request.exec_id:
                self._publish(
                    topics.TASK_EXEC_STARTED,
                    events.TaskExecStarted(
                        container_id=task.id, exec_id=request.exec_id, pid=p.pid
                    ),
                )
            else:
                self._publish(topics.TASK_START, events.TaskStart(container_id=task.id, pid=p.pid))
        if request.exec_id:
            self._watch_exit(task, p, request.exec_id)
        return pb.StartResponse(pid=p.pid)

    @unary
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        if request.exec_id:
            p = self._process(task, request.exec_id)
            assert isinstance(p, ExecProcess)
            rec = p.delete()
            self._join_exit_watcher(task, request.exec_id)
            pid, status, at = p.pid, 0, time.time_ns()
            if rec is not None:
                pid, status, at = rec.pid, rec.exit_status, rec.exited_at
            self._publish(
                topics.TASK_DELETE,
                events.TaskDelete(
                    container_id=task.id,
                    id=request.exec_id,
                    pid=pid,
                    exit_status=status,
                    exited_at=_ts(at),
                ),
            )
            return pb.DeleteResponse(pid=pid, exit_status=status, exited_at=_ts(at))
        init = task.init
        if init.state in (State.RUNNING, State.PAUSED) and init.exit is None:
            raise FailedPrecondition(f"cannot delete task {task.id}: it is still running")
        # Exec processes die with the init's pid namespace; any left over are killed.
        for exec_id, e in list(init.execs.items()):
            try:
                e.delete(force=True)
            except ProcessError as err:
                log.warning("deleting exec %s of %s: %s", exec_id, task.id, err)
            self._join_exit_watcher(task, exec_id)
        rec = init.delete()
        self._join_exit_watcher(task, "")
        self._cleanup(task)
        self._publish(
            topics.TASK_DELETE,
            events.TaskDelete(
                container_id=task.id,
                pid=rec.pid,
                exit_status=rec.exit_status,
                exited_at=_ts(rec.exited_at),
            ),
        )
        return pb.DeleteResponse(
            pid=rec.pid, exit_status=rec.exit_status, exited_at=_ts(rec.exited_at)
        )

    def _cleanup(self, task: Task) -> None:
        """What Create set up around the init, once it is deleted."""
        if task.oom is not None:
            task.oom.stop()
        if task.log is not None:
            task.log.close()
        if task.mounted:
            try:
                manager.unmount_rootfs(task.bundle)
            except OSError as e:
                log.error("unmounting the rootfs of %s: %s", task.id, e)
        # The daemon has the status from this Delete: the file has served its purpose.
        try:
            os.unlink(exit_path(task.bundle))
        except FileNotFoundError:
            pass
        with self._lock:
            self.tasks.pop(task.id, None)
        self.activity.touch()

    @unary
    def State(self, request: pb.StateRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        p = self._process(task, request.exec_id)
        r = pb.StateResponse(
            id=request.exec_id or task.id,
            bundle=task.bundle,
            pid=p.pid,
            status=_STATUS[p.state],
            terminal=p.stdio.terminal,
            exec_id=request.exec_id,
        )
        rec = p.exit
        if rec is not None:
            r.exit_status = rec.exit_status
            r.exited_at.CopyFrom(_ts(rec.exited_at))
        return r

    @unary
    def Wait(self, request: pb.WaitRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        p = self._process(task, request.exec_id)
        while True:
            try:
                status, at = p.wait(POLL)
                return pb.WaitResponse(exit_status=status, exited_at=_ts(at))
            except TimeoutError:
                if not context.is_active():  # the client went: give the thread back
                    raise Cancelled("wait: the client went away") from None

    @unary
    def Kill(self, request: pb.KillRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        p = self._process(task, request.exec_id)
        # proto3 cannot tell 0 from unset: 0 means the default, SIGTERM.
        sig = request.signal or signal.SIGTERM
        if request.exec_id:
            p.kill(sig)
        else:
            assert isinstance(p, InitProcess)
            p.kill(sig, request.all)
        return pb.KillResponse()

    @unary
    def Exec(self, request: pb.ExecRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        exec_id = request.exec_id
        if not exec_id or "/" in exec_id or exec_id in (".", "..") or "\0" in exec_id:
            raise InvalidArgument(f"exec: invalid exec id {exec_id!r}")
        if exec_id in task.init.execs:
            raise AlreadyExists(f"exec {exec_id!r} of task {task.id!r} already exists")
        if request.stdin or request.stdout or request.stderr:
            raise Unimplemented("exec: stdio paths are not supported (leave them empty)")
        try:
            spec = json.loads(request.spec.value or b"null")
        except ValueError as e:
            raise InvalidArgument(f"exec: the process spec is not JSON: {e}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("args"), list) or not spec["args"]:
            raise InvalidArgument("exec: the process spec needs a non-empty args list")
        if request.terminal:
            spec["terminal"] = True
        task.init.exec(exec_id, spec, stdin=request.open_stdin)
        self._publish(
            topics.TASK_EXEC_ADDED, events.TaskExecAdded(container_id=task.id, exec_id=exec_id)
        )
        return pb.ExecResponse()

    @unary
    def ResizePty(self, request: pb.ResizePtyRequest, context: grpc.ServicerContext) -> Any:
        p = self._process(self._task(request.id), request.exec_id)
        p.resize(request.width, request.height)
        return pb.ResizePtyResponse()

    @unary
    def CloseIO(self, request: pb.CloseIORequest, context: grpc.ServicerContext) -> Any:
        p = self._process(self._task(request.id), request.exec_id)
        if request.stdin:
            p.close_io()
        return pb.CloseIOResponse()

    @unary
    def Pause(self, request: pb.PauseRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        task.init.pause()
        self._publish(topics.TASK_PAUSED, events.TaskPaused(container_id=task.id))
        return pb.PauseResponse()

    @unary
    def Resume(self, request: pb.ResumeRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        task.init.resume()
        self._publish(topics.TASK_RESUMED, events.TaskResumed(container_id=task.id))
        return pb.ResumeResponse()

    @unary
    def Pids(self, request: pb.PidsRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        pids = task.init.pids()
        execs = {e.pid: eid for eid, e in list(task.init.execs.items()) if e.pid}
        r = pb.PidsResponse()
        for pid in pids:
            info = r.processes.add(pid=pid)
            if pid in execs:
                info.info.Pack(types.ProcessDetails(exec_id=execs[pid]))
        return r

    @unary
    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        try:
            resources = json.loads(request.resources.value or b"{}")
        except ValueError as e:
            raise InvalidArgument(f"update: resources are not JSON: {e}") from None
        if not isinstance(resources, dict):
            raise InvalidArgument("update: resources must be a JSON object")
        task.init.update(resources)
        return pb.UpdateResponse()

    @unary
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> Any:
        task = self._task(request.id)
        if task.init.state not in (State.RUNNING, State.PAUSED, State.CREATED):
            raise FailedPrecondition(f"stats: task {task.id} is not running")
        data = self._cgroup_stats(task)
        if data is None:  # no cgroup of its own that we can read: the runtime knows
            data = task.init.runtime.stats(task.id)
        stats = stats_from_runtime(data)
        if task.oom is not None:
            stats.memory.oom_kills = task.oom.oom_kills()
        return pb.StatsResponse(stats=stats)

    @staticmethod
    def _cgroup_stats(task: Task) -> dict[str, Any] | None:
        """The counters read from the task's cgroup files (shim/metrics.py), or None."""
        from shim import metrics

        cg = task.cgroup
        if cg is None or not cg.exists():
            cg = task.cgroup = metrics.locate(
                {"linux": task.linux_config}, task.init.pid, systemd=task.systemd_cgroup
            )
        return None if cg is None else cg.stats()

    @unary
    def Checkpoint(self, request: pb.CheckpointRequest, context: grpc.ServicerContext) -> Any:
        raise Unimplemented("checkpoint is not supported")

    @unary
    def Connect(self, request: pb.ConnectRequest, context: grpc.ServicerContext) -> Any:
        with self._lock:
            task = self.tasks.get(request.id)
            if task is None and not request.id and len(self.tasks) == 1:
                task = next(iter(self.tasks.values()))
        pid = 0
        if task is not None and task.init.state in (State.CREATED, State.RUNNING, State.PAUSED):
            pid = task.init.pid
        return pb.ConnectResponse(shim_pid=os.getpid(), task_pid=pid, version=SHIM_VERSION)

    @unary
    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> Any:
        with self._lock:
            busy = bool(self.tasks or self._creating)
        if busy and not request.now:
            # containerd's rule: a shim that still holds a task stays (the caller's
            # Shutdown after a failed Delete must not orphan a container).
            log.info("shutdown asked with tasks left: staying")
            return pb.ShutdownResponse()
        self.shutdown_now = request.now
        self.shutdown_requested.set()  # the server exits once this answer is sent
        return pb.ShutdownResponse()

    # -- Attach ------------------------------------------------------------------------------

    @streaming
    def Attach(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "start":
            raise InvalidArgument("attach: the first message must be an AttachStart")
        st = first.start
        task = self._task(st.id)
        p = self._process(task, st.exec_id)
        if st.stdin and not p.stdio.stdin:
            raise FailedPrecondition("attach: the process has no open stdin")
        att = p.subscribe()
        context.send_initial_metadata(((ATTACHED_METADATA_KEY, "1"),))
        sent_stdin = threading.Event()

        def pump() -> None:
            # Client → process, until the client half-closes or goes away.
            try:
                for req in request_iterator:
                    kind = req.WhichOneof("payload")
                    if kind == "stdin" and st.stdin:
                        p.write_stdin(req.stdin)
                        sent_stdin.set()
                    elif kind == "close_stdin" and req.close_stdin and st.stdin:
                        p.close_io()
                    elif kind == "resize":
                        p.resize(req.resize.width, req.resize.height)
            except (StdioError, OSError) as e:
                log.debug("attach input to %s ended: %s", p.id, e)
            except Exception as e:  # grpc raises its own errors when the call ends
                log.debug("attach input to %s ended: %s", p.id, e)

        threading.Thread(target=pump, name=f"shim-attach-{p.id}", daemon=True).start()
        try:
            while context.is_active():
                try:
                    item = att.get(POLL)
                except TimeoutError:
                    continue
                if item is None:
                    if att.dropped:
                        raise ResourceExhausted("attach: the client fell behind the output")
                    return  # the output ended: the process is gone
                stream, data = item
                if (stream == "stdout" and st.stdout) or (stream == "stderr" and st.stderr):
                    yield pb.AttachResponse(stream=_STREAMS[stream], data=data)
        finally:
            att.close()
            if task.stdin_once and sent_stdin.is_set():
                try:
                    p.close_io()
                except StdioError:
                    pass
