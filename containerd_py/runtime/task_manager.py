"""The daemon's tasks: one shim per container, found again from the bundles after a restart.

The daemon keeps no running state in its database: the shim is the source of truth. Each
Task has a background thread that calls the shim's Wait (level, not events: an exit that
happened while the daemon was down is still answered by Wait, the shim keeps it until
Delete) and records the exit. The shim itself publishes the task events (create, start,
exit, delete) through the daemon's Forward endpoint; the daemon publishes only what the
shim cannot: TaskExit and TaskDelete for a shim that died (STYLE.md §2, §7).

When a task goes, the cgroup parent `/<namespace>` it leaves is removed if empty
(runtime/cgroup_parent.py has the rules); creates in the namespace hold it off meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from containerd_py import errdefs
from containerd_py.api.events.v1 import task_pb2 as events
from containerd_py.api.runtime.task.v1 import shim_pb2
from containerd_py.events import topics
from containerd_py.events.exchange import Publisher
from containerd_py.runtime import cgroup_parent
from containerd_py.runtime.bundle import Bundle, existing
from containerd_py.runtime.shim_manager import ShimConnection, ShimManager

log = logging.getLogger("containerd_py.runtime")

CALL_TIMEOUT = 30.0
LOAD_TIMEOUT = 5.0  # per shim, when re-finding shims at start
# Tests (and operators) may put every task's cgroup under one parent, e.g. /pytest-<pid>.
CGROUP_PARENT_ENV = "PYCONTAINERD_CGROUP_PARENT"
_TRANSPORT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
_LOG_NAME = re.compile(r"(.+)\.log(?:\.\d+)?")


def shim_error(err: grpc.RpcError) -> errdefs.PyContainerdError:
    """A shim's status as our own error (the shim answers with the same code names)."""
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else None) or str(err)
    if code in _TRANSPORT:
        return errdefs.Unavailable(f"shim: {details}")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return errdefs.Unavailable(f"shim did not answer in time: {details}")
    return errdefs.from_code_name(code.name if code else "UNKNOWN", details)


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


@dataclass
class Exit:
    pid: int
    status: int
    exited_at: timestamp_pb2.Timestamp


@dataclass
class Task:
    namespace: str
    id: str
    bundle: Bundle
    conn: ShimConnection
    log_path: str
    pid: int = 0
    exit: Exit | None = None
    exited: threading.Event = field(default_factory=threading.Event)
    # Set once the shim is known dead and cleaned up: the task is then gone.
    gone: bool = False

    def call(self, name: str, request: Any, timeout: float | None = CALL_TIMEOUT) -> Any:
        try:
            return getattr(self.conn.stub, name)(request, timeout=timeout)
        except grpc.RpcError as e:
            raise shim_error(e) from None


class TaskManager:
    def __init__(self, state: Path, root: Path, daemon_address: str, publisher: Publisher) -> None:
        self.state = Path(state)
        self.logs = Path(root) / "logs"
        self.shims = ShimManager(self.state, daemon_address)
        self.publisher = publisher
        self._tasks: dict[tuple[str, str], Task] = {}
        self._lock = threading.Lock()
        # Serialises create/delete of one id against another of the same id.
        self._busy: set[tuple[str, str]] = set()
        self._closed = threading.Event()
        # Creates in flight per namespace: while any, its cgroup parent stays (the
        # runtime's mkdir of `<parent>/<id>` must find the parent it just saw).
        self._cgroup_lock = threading.Lock()
        self._creating_in: dict[str, int] = {}
        # Whether a container record exists (set by the Tasks service): for sweeping logs.
        self.has_container: Callable[[str, str], bool] | None = None

    def sweep_logs(self, namespace: str, has_container: Callable[[str, str], bool]) -> None:
        """Remove the logs of containers that are gone. A container's log outlives its
        tasks (Tasks.Logs) and goes with the record: the Containers service removes it on
        Delete; this sweep at start catches a daemon that died between the two."""
        try:
            names = os.listdir(self.logs / namespace)
        except FileNotFoundError:
            return
        ids = {m.group(1) for n in names if (m := _LOG_NAME.fullmatch(n))}
        for cid in ids:
            if not self.has_task(namespace, cid) and not has_container(namespace, cid):
                self.remove_logs(namespace, cid)

    def remove_logs(self, namespace: str, container_id: str) -> None:
        """The log and its rotated files (`<id>.log.1`...), nothing else."""
        base = self.log_path(namespace, container_id)
        try:
            names = os.listdir(base.parent)
        except FileNotFoundError:
            return
        for name in names:
            rest = name.removeprefix(base.name)
            if rest == name or (rest and not (rest[0] == "." and rest[1:].isdigit())):
                continue
            (base.parent / name).unlink(missing_ok=True)

    # -- lookups ------------------------------------------------------------------------

    def get(self, namespace: str, task_id: str) -> Task:
        with self._lock:
            task = self._tasks.get((namespace, task_id))
        if task is None:
            raise errdefs.NotFound(f"no task for container {task_id!r}")
        return task

    def has_task(self, namespace: str, task_id: str) -> bool:
        with self._lock:
            key = (namespace, task_id)
            return key in self._tasks or key in self._busy

    def list(self, namespace: str) -> list[Task]:
        with self._lock:
            return [t for (ns, _), t in sorted(self._tasks.items()) if ns == namespace]

    def log_path(self, namespace: str, task_id: str) -> Path:
        return self.logs / namespace / f"{task_id}.log"

    # -- create / delete ----------------------------------------------------------------

    def create(
        self,
        namespace: str,
        task_id: str,
        spec: dict[str, Any],
        request: shim_pb2.CreateRequest,
    ) -> Task:
        key = (namespace, task_id)
        with self._lock:
            if key in self._tasks or key in self._busy:
                raise errdefs.AlreadyExists(f"container {task_id!r} already has a task")
            self._busy.add(key)
        with self._cgroup_lock:
            self._creating_in[namespace] = self._creating_in.get(namespace, 0) + 1
        try:
            return self._create(namespace, task_id, spec, request)
        finally:
            with self._cgroup_lock:
                left = self._creating_in[namespace] - 1
                if left:
                    self._creating_in[namespace] = left
                else:
                    del self._creating_in[namespace]
            with self._lock:
                self._busy.discard(key)

    def _create(
        self, namespace: str, task_id: str, spec: dict[str, Any], request: shim_pb2.CreateRequest
    ) -> Task:
        parent = os.environ.get(CGROUP_PARENT_ENV)
        if parent:
            spec.setdefault("linux", {})["cgroupsPath"] = (
                f"/{parent.strip('/')}/{namespace}-{task_id}"
            )
        bundle = Bundle.at(self.state, namespace, task_id)
        bundle.create(spec)
        log_path = self.log_path(namespace, task_id)
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            log_path.unlink()  # a new task starts a new log
        except FileNotFoundError:
            pass
        request.id = task_id
        request.bundle = str(bundle.path)
        request.log.path = str(log_path)
        try:
            conn = self.shims.start(bundle)
        except BaseException:
            bundle.remove()
            raise
        task = Task(namespace, task_id, bundle, conn, str(log_path))
        try:
            task.pid = task.call("Create", request, timeout=120).pid
        except BaseException:
            # Nothing half-made: the shim goes, and `shim delete` undoes mounts and state.
            self._shutdown(task)
            self.shims.delete_dead(bundle)
            self._remove_bundle(bundle, creating=True)
            raise
        self._register(task)
        return task

    def _register(self, task: Task) -> None:
        with self._lock:
            self._tasks[(task.namespace, task.id)] = task
        threading.Thread(
            target=self._wait_exit, args=(task,), name=f"task-wait-{task.id}", daemon=True
        ).start()

    def delete(self, namespace: str, task_id: str) -> Exit:
        task = self.get(namespace, task_id)
        if task.gone:
            raise errdefs.NotFound(f"no task for container {task_id!r}")
        r = task.call("Delete", shim_pb2.DeleteRequest(id=task_id))
        ex = Exit(r.pid, r.exit_status, r.exited_at)
        # Forget first: the watcher must not take the shim's shutdown for a death and
        # report the task a second time.
        self._forget(task)
        self._shutdown(task)
        self._remove_bundle(task.bundle)
        return ex

    def _shutdown(self, task: Task) -> None:
        try:
            task.call("Shutdown", shim_pb2.ShutdownRequest(id=task.id, now=True), timeout=5)
        except errdefs.PyContainerdError:
            pass  # it may already be going; `shim delete` makes sure
        # Wait briefly for the shim to go, so a quick re-create finds no old socket.
        task.conn.wait_gone(5.0)
        task.conn.close()

    def _remove_bundle(self, bundle: Bundle, *, creating: bool = False) -> None:
        """The bundle of a task that is gone, and then its namespace's cgroup parent if
        that is now empty and ours to remove (runtime/cgroup_parent.py). creating: called
        by a failed create, which is one of the creates in flight."""
        try:
            spec = json.loads((bundle.path / "config.json").read_bytes())
            path = spec["linux"]["cgroupsPath"]
        except (OSError, ValueError, TypeError, KeyError):
            path = None
        bundle.remove()
        parent = cgroup_parent.default_parent(path, bundle.namespace, bundle.id)
        if parent is None:
            return
        with self._cgroup_lock:
            if self._creating_in.get(bundle.namespace, 0) > int(creating):
                return  # the create in flight needs it; the last task to go removes it
            removed = cgroup_parent.remove_if_empty(parent)
        if removed:
            log.debug("removed the empty cgroup parent %s (%d hierarchies)", parent, len(removed))

    def _forget(self, task: Task) -> None:
        task.gone = True
        with self._lock:
            if self._tasks.get((task.namespace, task.id)) is task:
                del self._tasks[(task.namespace, task.id)]

    # -- exits --------------------------------------------------------------------------

    def _wait_exit(self, task: Task) -> None:
        """Record the init process's exit (Wait is level-triggered: it answers at once for
        an exit that happened while we were away); clean up if the shim dies."""
        while not self._closed.is_set() and not task.gone:
            try:
                r = task.conn.stub.Wait(shim_pb2.WaitRequest(id=task.id), timeout=None)
            except grpc.RpcError as e:
                if task.gone or self._closed.is_set():
                    return
                if not task.conn.alive():
                    self.cleanup_dead(task)
                    return
                if e.code() not in _TRANSPORT:
                    log.warning("task %s: wait: %s", task.id, e.details())
                time.sleep(0.5)
                continue
            task.exit = Exit(task.pid, r.exit_status, r.exited_at)
            task.exited.set()
            # The shim may still die after the exit (kill -9): keep watching it, so that
            # its task is cleaned up and reported rather than left dangling.
            self._watch_shim(task)
            return

    def _watch_shim(self, task: Task) -> None:
        while not self._closed.wait(1.0) and not task.gone:
            if not task.conn.alive():
                self.cleanup_dead(task)
                return

    def cleanup_dead(self, task: Task) -> None:
        """The shim is gone: `shim delete` (runtime delete --force, unmount), then the
        events it could not send, then the bundle (STYLE.md §7 step 4)."""
        if task.gone:
            return
        self._forget(task)
        task.conn.close()
        pid, status, exited_ns = self.shims.delete_dead(task.bundle)
        if task.exit is not None:  # the real exit, recorded before the shim died
            pid, status = task.exit.pid, task.exit.status
            exited_at = task.exit.exited_at
        else:
            exited_at = timestamp(exited_ns or time.time_ns())
            task.exit = Exit(pid or task.pid, status, exited_at)
        task.exited.set()
        self._publish_gone(task.namespace, task.id, pid or task.pid, status, exited_at)
        self._remove_bundle(task.bundle)
        log.info("task %s/%s: shim gone, reported exit %d", task.namespace, task.id, status)

    def _publish_gone(
        self, namespace: str, task_id: str, pid: int, status: int, at: timestamp_pb2.Timestamp
    ) -> None:
        self.publisher.publish(
            namespace,
            topics.TASK_EXIT,
            events.TaskExit(
                container_id=task_id, id=task_id, pid=pid, exit_status=status, exited_at=at
            ),
        )
        self.publisher.publish(
            namespace,
            topics.TASK_DELETE,
            events.TaskDelete(
                container_id=task_id, id=task_id, pid=pid, exit_status=status, exited_at=at
            ),
        )

    # -- restart ------------------------------------------------------------------------

    def load_existing(self, has_container: Callable[[str, str], bool] | None = None) -> None:
        """Re-find the shims of a previous daemon life from their bundles. A bundle whose
        shim is dead, reused or unreachable is cleaned up and its exit reported; a bad
        record never stops the daemon. Then the logs of deleted containers go."""
        for bundle in existing(self.state):
            try:
                self._load(bundle)
            except Exception as e:  # one broken bundle must not stop the others
                log.warning("task %s/%s: cannot load: %s", bundle.namespace, bundle.id, e)
        has_container = has_container or self.has_container
        if has_container is not None and self.logs.is_dir():
            for ns_dir in self.logs.iterdir():
                try:
                    self.sweep_logs(ns_dir.name, has_container)
                except Exception as e:
                    log.warning("sweeping logs of namespace %s: %s", ns_dir.name, e)

    def _load(self, bundle: Bundle) -> None:
        info = bundle.read_bootstrap()
        conn = ShimConnection.dial(info) if info is not None else None
        if conn is not None and conn.alive():
            task = Task(
                bundle.namespace,
                bundle.id,
                bundle,
                conn,
                str(self.log_path(bundle.namespace, bundle.id)),
            )
            try:
                st = task.call("State", shim_pb2.StateRequest(id=bundle.id), timeout=LOAD_TIMEOUT)
            except errdefs.NotFound:
                # A shim with no task (we died mid-create, containerd#6860): it goes.
                log.info(
                    "task %s/%s: shim has no task, shutting it down", bundle.namespace, bundle.id
                )
                self._shutdown(task)
                self.shims.delete_dead(bundle)
                self._remove_bundle(bundle)
                return
            except errdefs.PyContainerdError as e:
                log.warning("task %s/%s: shim unreachable (%s)", bundle.namespace, bundle.id, e)
            else:
                task.pid = st.pid
                self._register(task)
                log.info(
                    "task %s/%s: reconnected to shim %d", bundle.namespace, bundle.id, info.shim_pid
                )  # type: ignore[union-attr]
                return
        if conn is not None:
            conn.close()
        pid, status, exited_ns = self.shims.delete_dead(bundle)
        self._publish_gone(
            bundle.namespace, bundle.id, pid, status, timestamp(exited_ns or time.time_ns())
        )
        self._remove_bundle(bundle)
        log.info("task %s/%s: shim gone, reported exit %d", bundle.namespace, bundle.id, status)

    def close(self) -> None:
        """Stop watching; the shims and their containers keep running."""
        self._closed.set()
        with self._lock:
            tasks = list(self._tasks.values())
        for t in tasks:
            t.conn.close()
