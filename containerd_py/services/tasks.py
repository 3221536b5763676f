"""Tasks service: a thin adapter from the wire to the task manager and each task's shim.

Create builds the bundle from the container record (its spec, the rootfs mounts of its
snapshot), starts a shim and has it create the init process; everything else is the
shim's answer, passed through. Task events come from the shim itself (Forward), so each
is published once. Several daemon and shim messages share field numbers (Start, Kill,
ResizePty, CloseIO, Attach), and are converted by re-parsing their bytes.

Which OCI runtime a task's shim drives: the task's own options (CreateRequest.options),
else the container's runtime options, else its runtime name, looked up in the daemon's
runtimes table. By default the table maps pyrunc, runc and crun to themselves; the config
file may map any name to a binary, as containerd's runtime options name a BinaryName:

    [plugins."io.pycontainerd.runtime.v1.task".runtimes.pyrunc]
    binary_name = "runc"          # containers created for "pyrunc" run on runc

A name that is an absolute path is the binary itself.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2

from containerd_py import filters, namespaces
from containerd_py.api.runtime.task.v1 import shim_pb2 as shim
from containerd_py.api.services.tasks.v1 import tasks_pb2 as pb
from containerd_py.api.services.tasks.v1 import tasks_pb2_grpc
from containerd_py.api.types.v1 import io_pb2, metrics_pb2, mount_pb2, runtime_pb2
from containerd_py.api.types.v1 import task_pb2 as types
from containerd_py.config import ConfigError
from containerd_py.errdefs import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PyContainerdError,
)
from containerd_py.metadata.containers import Container, ContainerStore
from containerd_py.runtime.task_manager import Task, TaskManager
from containerd_py.services.introspection import (
    EVENT_PLUGIN,
    GRPC_PLUGIN,
    METADATA_PLUGIN,
    PluginInfo,
)

if TYPE_CHECKING:
    from containerd_py.services import Deps
    from containerd_py.services.snapshots import Snapshotters

RUNTIME_PLUGIN = "io.pycontainerd.runtime.v1"
KNOWN_RUNTIMES = ("pyrunc", "runc", "crun")
# This plugin's section of the config file: [plugins."io.pycontainerd.runtime.v1.task"].
CONFIG_SECTION = f"{RUNTIME_PLUGIN}.task"
# Sent in Attach's headers once the output is subscribed (the shim's key, passed on).
ATTACHED_METADATA_KEY = "pycontainerd-attached"


def _id(value: str) -> str:
    if not value:
        raise InvalidArgument("container id must not be empty")
    return value


def runtime_binaries(plugins: Mapping[str, Any]) -> dict[str, str]:
    """The runtimes table (runtime name → binary) from the config's plugin sections; a
    malformed section stops the daemon with a ConfigError saying which key."""
    table = {name: name for name in KNOWN_RUNTIMES}
    section = plugins.get(CONFIG_SECTION, {})
    where = f'plugins."{CONFIG_SECTION}"'
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{where}] must be a table")
    runtimes = section.get("runtimes", {})
    if not isinstance(runtimes, Mapping):
        raise ConfigError(f"[{where}.runtimes] must be a table")
    for name, entry in runtimes.items():
        binary = entry.get("binary_name") if isinstance(entry, Mapping) else None
        if not isinstance(binary, str) or not binary:
            raise ConfigError(f"[{where}.runtimes.{name}] needs a binary_name string")
        table[name] = binary
    return table


def runtime_options(
    container: Container,
    override: any_pb2.Any | None,
    binaries: Mapping[str, str] | None = None,
) -> runtime_pb2.RuntimeOptions:
    """The runtime the shim drives: the task's override, else the container's options,
    else its runtime name when the runtimes table (binaries) has it or it is a path."""
    opts = runtime_pb2.RuntimeOptions()
    packed = override if override is not None and override.value else None
    if packed is None and container.runtime.options is not None:
        packed = any_pb2.Any(
            type_url=container.runtime.options.type_url, value=container.runtime.options.value
        )
    if packed is not None and packed.value:
        opts.ParseFromString(packed.value)
    if not opts.binary_name:
        name = container.runtime.name
        table = runtime_binaries({}) if binaries is None else binaries
        if name in table:
            opts.binary_name = table[name]
        elif name.startswith("/"):
            opts.binary_name = name
    return opts


def process_pb(task_id: str, st: shim.StateResponse) -> types.Process:
    return types.Process(
        container_id=task_id,
        id=st.exec_id,
        pid=st.pid,
        status=st.status,
        stdin=st.stdin,
        stdout=st.stdout,
        stderr=st.stderr,
        terminal=st.terminal,
        exit_status=st.exit_status,
        exited_at=st.exited_at,
    )


def _recast(msg: Any, cls: type[Any]) -> Any:
    """The same fields under the other API's message (identical field numbers)."""
    return cls.FromString(msg.SerializeToString())


class TasksService(tasks_pb2_grpc.TasksServicer):
    def __init__(
        self,
        manager: TaskManager,
        containers: ContainerStore,
        snapshotters: Snapshotters,
        runtimes: Mapping[str, str] | None = None,
    ) -> None:
        self._tasks = manager
        self._containers = containers
        self._snapshotters = snapshotters
        self._runtimes = dict(runtimes) if runtimes is not None else runtime_binaries({})

    def _task(self, container_id: str) -> Task:
        return self._tasks.get(namespaces.current(), _id(container_id))

    # -- lifecycle ------------------------------------------------------------------------

    def Create(self, request: pb.CreateRequest, context: grpc.ServicerContext) -> pb.CreateResponse:
        ns = namespaces.current()
        container = self._containers.get(ns, _id(request.container_id))
        if not container.spec:
            raise FailedPrecondition(f"container {container.id!r} has no spec")
        try:
            spec = json.loads(container.spec)
        except ValueError:
            raise FailedPrecondition(f"container {container.id!r}: spec is not JSON") from None
        rootfs = list(request.rootfs)
        if not rootfs and container.snapshot_key:
            view = self._snapshotters.view(container.snapshotter, ns)
            rootfs = [
                mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=m.options)
                for m in view.mounts(container.snapshot_key)
            ]
        if rootfs:
            # The shim mounts them at <bundle>/rootfs; the spec names it relative.
            spec.setdefault("root", {})["path"] = "rootfs"
        req = shim.CreateRequest(
            rootfs=rootfs,
            terminal=request.terminal,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
            runtime=runtime_options(
                container,
                request.options if request.HasField("options") else None,
                self._runtimes,
            ),
            open_stdin=request.open_stdin,
            stdin_once=request.stdin_once,
        )
        if request.HasField("log"):
            req.log.CopyFrom(request.log)
        if request.HasField("checkpoint") and request.checkpoint.digest:
            raise InvalidArgument("restoring from a checkpoint is not supported")
        task = self._tasks.create(ns, container.id, spec, req)
        return pb.CreateResponse(container_id=container.id, pid=task.pid)

    def Start(self, request: pb.StartRequest, context: grpc.ServicerContext) -> pb.StartResponse:
        task = self._task(request.container_id)
        r = task.call("Start", _recast(request, shim.StartRequest))
        return pb.StartResponse(pid=r.pid)

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        ns = namespaces.current()
        ex = self._tasks.delete(ns, _id(request.container_id))
        return pb.DeleteResponse(
            id=request.container_id, pid=ex.pid, exit_status=ex.status, exited_at=ex.exited_at
        )

    def DeleteProcess(
        self, request: pb.DeleteProcessRequest, context: grpc.ServicerContext
    ) -> pb.DeleteProcessResponse:
        if not request.exec_id:
            raise InvalidArgument("exec id must not be empty (Delete removes the task)")
        task = self._task(request.container_id)
        r = task.call("Delete", shim.DeleteRequest(id=task.id, exec_id=request.exec_id))
        return pb.DeleteProcessResponse(
            id=request.exec_id, pid=r.pid, exit_status=r.exit_status, exited_at=r.exited_at
        )

    # -- state ----------------------------------------------------------------------------

    def _process(self, task: Task, exec_id: str = "") -> types.Process:
        try:
            st = task.call("State", shim.StateRequest(id=task.id, exec_id=exec_id))
        except PyContainerdError:
            if exec_id or task.exit is None:
                raise
            # The shim went after the exit was recorded: report what we know.
            return types.Process(
                container_id=task.id,
                pid=task.exit.pid,
                status=types.STOPPED,
                exit_status=task.exit.status,
                exited_at=task.exit.exited_at,
            )
        return process_pb(task.id, st)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:
        task = self._task(request.container_id)
        return pb.GetResponse(process=self._process(task, request.exec_id))

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListResponse:
        flt = filters.parse(*request.filters)
        found = []
        for task in self._tasks.list(namespaces.current()):
            try:
                p = self._process(task)
            except PyContainerdError:
                continue  # gone between the listing and the State call
            fields = {
                "container_id": task.id,
                "id": task.id,
                "pid": str(p.pid),
                "status": types.Status.Name(p.status),
            }
            if flt.match(filters.adapt(fields)):
                found.append(p)
        return pb.ListResponse(tasks=found)

    def Wait(self, request: pb.WaitRequest, context: grpc.ServicerContext) -> pb.WaitResponse:
        task = self._task(request.container_id)
        if request.exec_id:
            # No deadline from the client: none to the shim either (grpc reports a
            # missing deadline as None or as a huge number, depending on the version).
            remaining = context.time_remaining()
            if remaining is not None and remaining > 1e6:
                remaining = None
            r = task.call("Wait", shim.WaitRequest(id=task.id, exec_id=request.exec_id), remaining)
            return pb.WaitResponse(exit_status=r.exit_status, exited_at=r.exited_at)
        # The init process: the manager's waiter records the exit (even if the shim dies),
        # so wait on that rather than on a call that a dying shim would break.
        while not task.exited.wait(0.2):
            if not context.is_active():
                return pb.WaitResponse()
        assert task.exit is not None
        return pb.WaitResponse(exit_status=task.exit.status, exited_at=task.exit.exited_at)

    # -- signals and processes ------------------------------------------------------------

    def Kill(self, request: pb.KillRequest, context: grpc.ServicerContext) -> pb.KillResponse:
        task = self._task(request.container_id)
        task.call("Kill", _recast(request, shim.KillRequest))
        return pb.KillResponse()

    def Exec(self, request: pb.ExecRequest, context: grpc.ServicerContext) -> pb.ExecResponse:
        task = self._task(request.container_id)
        if not request.exec_id:
            raise InvalidArgument("exec id must not be empty")
        task.call(
            "Exec",
            shim.ExecRequest(
                id=task.id,
                exec_id=request.exec_id,
                terminal=request.terminal,
                stdin=request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
                spec=request.spec,
                open_stdin=request.open_stdin,
            ),
        )
        return pb.ExecResponse()

    def ResizePty(
        self, request: pb.ResizePtyRequest, context: grpc.ServicerContext
    ) -> pb.ResizePtyResponse:
        self._task(request.container_id).call("ResizePty", _recast(request, shim.ResizePtyRequest))
        return pb.ResizePtyResponse()

    def CloseIO(
        self, request: pb.CloseIORequest, context: grpc.ServicerContext
    ) -> pb.CloseIOResponse:
        self._task(request.container_id).call("CloseIO", _recast(request, shim.CloseIORequest))
        return pb.CloseIOResponse()

    def Pause(self, request: pb.PauseRequest, context: grpc.ServicerContext) -> pb.PauseResponse:
        task = self._task(request.container_id)
        task.call("Pause", shim.PauseRequest(id=task.id))
        return pb.PauseResponse()

    def Resume(self, request: pb.ResumeRequest, context: grpc.ServicerContext) -> pb.ResumeResponse:
        task = self._task(request.container_id)
        task.call("Resume", shim.ResumeRequest(id=task.id))
        return pb.ResumeResponse()

    def ListPids(
        self, request: pb.ListPidsRequest, context: grpc.ServicerContext
    ) -> pb.ListPidsResponse:
        task = self._task(request.container_id)
        r = task.call("Pids", shim.PidsRequest(id=task.id))
        return pb.ListPidsResponse(processes=r.processes)

    def Checkpoint(
        self, request: pb.CheckpointRequest, context: grpc.ServicerContext
    ) -> pb.CheckpointResponse:
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "checkpoint is not supported: pyrunc has no CRIU integration",
        )
        raise AssertionError("unreachable")

    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.UpdateResponse:
        task = self._task(request.container_id)
        task.call(
            "Update",
            shim.UpdateRequest(
                id=task.id, resources=request.resources, annotations=request.annotations
            ),
        )
        return pb.UpdateResponse()

    def Metrics(
        self, request: pb.MetricsRequest, context: grpc.ServicerContext
    ) -> pb.MetricsResponse:
        flt = filters.parse(*request.filters)
        out = []
        for task in self._tasks.list(namespaces.current()):
            fields = {"id": task.id, "container_id": task.id}
            if not flt.match(filters.adapt(fields)):
                continue
            try:
                r = task.call("Stats", shim.StatsRequest(id=task.id))
            except PyContainerdError:
                continue  # stopped, or its shim just died: no stats, the others still count
            data = any_pb2.Any()
            data.Pack(r.stats, type_url_prefix="types.pycontainerd")
            out.append(metrics_pb2.Metric(id=task.id, timestamp=_now(), data=data))
        return pb.MetricsResponse(metrics=out)

    # -- stdio ----------------------------------------------------------------------------

    def Attach(
        self, request_iterator: Iterator[pb.AttachRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AttachResponse]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "start":
            raise InvalidArgument("the first Attach message must be start")
        task = self._task(first.start.container_id)

        def forward() -> Iterator[shim.AttachRequest]:
            yield _recast(first, shim.AttachRequest)
            for r in request_iterator:
                yield _recast(r, shim.AttachRequest)

        call = task.conn.stub.Attach(forward())
        # The client going away ends the shim's stream too (and frees its reader).
        context.add_callback(call.cancel)
        try:
            # The shim sends its headers once it has subscribed to the output; passing
            # them on tells the client that nothing written from now on can be missed
            # (so `run` may Start the task right after).
            headers = tuple(
                (k, v) for k, v in call.initial_metadata() or () if k == ATTACHED_METADATA_KEY
            )
            if headers:  # none: the shim refused, and iterating raises its status
                context.send_initial_metadata(headers)
            for r in call:
                yield _recast(r, pb.AttachResponse)
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.CANCELLED:
                return
            from containerd_py.runtime.task_manager import shim_error

            raise shim_error(e) from None

    def Logs(
        self, request: pb.LogsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.LogsResponse]:
        """The json-file log the shim writes (read from the file: the shim may be gone,
        and the log outlives the task until the container is deleted)."""
        from shim.logs import read_logs

        ns = namespaces.current()
        container = self._containers.get(ns, _id(request.container_id))
        path = str(self._tasks.log_path(ns, container.id))
        want = {
            "stdout": request.stdout or not request.stderr,
            "stderr": request.stderr or not request.stdout,
        }
        streams = {"stdout": io_pb2.STDIO_STREAM_STDOUT, "stderr": io_pb2.STDIO_STREAM_STDERR}

        def stop() -> bool:
            if not context.is_active():
                return True
            try:
                task = self._tasks.get(ns, container.id)
            except NotFound:
                return True  # deleted: nothing more will be written
            return task.exited.is_set()

        since = request.since.ToNanoseconds() / 1e9 if request.HasField("since") else None
        until = request.until.ToNanoseconds() / 1e9 if request.HasField("until") else None
        tail = request.tail if request.HasField("tail") else None
        entries: Iterable[Any]
        if tail is not None and not all(want.values()) and not request.follow:
            # The last N lines of the stream asked for, not the last N of the file.
            entries = deque(
                (e for e in read_logs(path, since=since, until=until) if want.get(e.stream)),
                maxlen=tail,
            )
        else:
            # Following with a tail and one stream, the tail counts lines of both.
            entries = read_logs(
                path, follow=request.follow, since=since, until=until, tail=tail, stop=stop
            )
        batch: list[pb.LogEntry] = []
        for e in entries:
            if not want.get(e.stream, False):
                continue
            entry = pb.LogEntry(
                stream=streams.get(e.stream, 0), data=e.log.encode(errors="replace")
            )
            entry.time.FromNanoseconds(e.time_ns)
            batch.append(entry)
            # Following, each line goes at once; reading what is there, in batches.
            if request.follow or len(batch) >= 256:
                yield pb.LogsResponse(entries=batch)
                batch = []
        if batch:
            yield pb.LogsResponse(entries=batch)


def _now() -> Any:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    if deps.storage is None:
        return []  # a test server without storage
    runtimes = runtime_binaries(deps.config.plugins)
    manager = TaskManager(deps.config.state, deps.config.root, deps.config.address, deps.exchange)
    deps.tasks = manager
    store = ContainerStore(deps.storage.db)

    def has_container(namespace: str, container_id: str) -> bool:
        try:
            store.get(namespace, container_id)
        except NotFound:
            return False
        return True

    manager.has_container = has_container
    service = TasksService(manager, store, deps.storage.snapshotters, runtimes)
    tasks_pb2_grpc.add_TasksServicer_to_server(service, server)
    return [
        PluginInfo(RUNTIME_PLUGIN, "task", requires=(METADATA_PLUGIN, EVENT_PLUGIN)),
        PluginInfo(GRPC_PLUGIN, "tasks", requires=(RUNTIME_PLUGIN,)),
    ]
