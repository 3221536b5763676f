"""Containers service: container records (spec, image, runtime, rootfs snapshot) per namespace.

A record is desired configuration only; its running state is a task. The spec travels as an
Any whose value is the config.json bytes (type `types.pycontainerd/opencontainers/
runtime-spec/1/Spec`); the store keeps the bytes. Update takes a field mask ("labels",
"labels.<key>", "image", "spec", "snapshot_key", "extensions", "extensions.<key>"; the
runtime and the snapshotter are fixed at creation: naming them is accepted only with
their current value). Delete schedules a garbage collection (the container's snapshot and
image may be all that kept some content). Events: /containers/create|update|delete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import grpc
from google.protobuf import any_pb2

from containerd_py import namespaces
from containerd_py.api.events.v1 import container_pb2 as events
from containerd_py.api.services.containers.v1 import containers_pb2 as pb
from containerd_py.api.services.containers.v1 import containers_pb2_grpc
from containerd_py.errdefs import FailedPrecondition, InvalidArgument
from containerd_py.events import topics
from containerd_py.events.exchange import Publisher
from containerd_py.metadata.containers import Container, ContainerStore, RuntimeInfo, TypedValue
from containerd_py.oci_spec import SPEC_TYPE_URL
from containerd_py.services.introspection import (
    EVENT_PLUGIN,
    GRPC_PLUGIN,
    METADATA_PLUGIN,
    PluginInfo,
)
from containerd_py.services.leases import timestamp

if TYPE_CHECKING:
    from containerd_py.gc_service import GCScheduler
    from containerd_py.services import Deps

# Mask paths for fields the store treats as fixed: allowed when unchanged (the store checks).
_FIXED = {"runtime", "runtime.name", "runtime.options", "snapshotter", "id", "sandbox"}
_PATHS = {"snapshot_key": "snapshotkey", "snapshotkey": "snapshotkey"}

# Whether a container has a task (the Tasks service answers; until it exists, never).
HasTask = Callable[[str, str], bool]


def _any(v: TypedValue | None) -> any_pb2.Any | None:
    return None if v is None else any_pb2.Any(type_url=v.type_url, value=v.value)


def _typed(a: any_pb2.Any) -> TypedValue:
    return TypedValue(a.type_url, a.value)


def container_pb(c: Container) -> pb.Container:
    out = pb.Container(
        id=c.id,
        labels=c.labels,
        image=c.image,
        runtime=pb.Container.Runtime(name=c.runtime.name, options=_any(c.runtime.options)),
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        created_at=timestamp(c.created_at),
        updated_at=timestamp(c.updated_at),
        extensions={k: _any(v) for k, v in c.extensions.items()},
        sandbox=c.sandbox,
    )
    if c.spec is not None:
        out.spec.CopyFrom(any_pb2.Any(type_url=SPEC_TYPE_URL, value=c.spec))
    return out


def container_from_pb(p: pb.Container) -> Container:
    options = p.runtime.options if p.runtime.HasField("options") else None
    return Container(
        id=p.id,
        runtime=RuntimeInfo(p.runtime.name, _typed(options) if options is not None else None),
        spec=p.spec.value if p.HasField("spec") else None,
        labels=dict(p.labels),
        image=p.image,
        snapshotter=p.snapshotter,
        snapshot_key=p.snapshot_key,
        sandbox=p.sandbox,
        extensions={k: _typed(v) for k, v in p.extensions.items()},
    )


class ContainersService(containers_pb2_grpc.ContainersServicer):
    def __init__(
        self,
        store: ContainerStore,
        publisher: Publisher,
        gc: GCScheduler | None = None,
        has_task: HasTask | None = None,
        on_deleted: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._gc = gc
        self._has_task = has_task
        # What else goes with a container's record (its log files, kept by the tasks).
        self._on_deleted = on_deleted

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:
        if not request.id:
            raise InvalidArgument("container id must not be empty")
        return pb.GetResponse(
            container=container_pb(self._store.get(namespaces.current(), request.id))
        )

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListResponse:
        found = self._store.list(namespaces.current(), *request.filters)
        return pb.ListResponse(containers=[container_pb(c) for c in found])

    def ListStream(
        self, request: pb.ListStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ListStreamResponse]:
        for c in self._store.list(namespaces.current(), *request.filters):
            yield pb.ListStreamResponse(container=container_pb(c))

    def Create(self, request: pb.CreateRequest, context: grpc.ServicerContext) -> pb.CreateResponse:
        ns = namespaces.current()
        created = self._store.create(ns, container_from_pb(request.container))
        self._publisher.publish(
            ns,
            topics.CONTAINER_CREATE,
            events.ContainerCreate(
                id=created.id,
                image=created.image,
                runtime=events.ContainerCreate.Runtime(
                    name=created.runtime.name, options=_any(created.runtime.options)
                ),
            ),
        )
        return pb.CreateResponse(container=container_pb(created))

    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.UpdateResponse:
        ns = namespaces.current()
        if not request.container.id:
            raise InvalidArgument("container id must not be empty")
        paths: list[str] | None = None
        if request.HasField("update_mask") and request.update_mask.paths:
            paths = []
            for path in request.update_mask.paths:
                if path in _FIXED:
                    continue  # the store refuses a change of these; same values pass
                paths.append(_PATHS.get(path, path))
        wanted = container_from_pb(request.container)
        if paths == []:
            # Only fixed fields named: nothing to write, but a changed value is an error.
            current = self._store.get(ns, wanted.id)
            if wanted.runtime.name and wanted.runtime.name != current.runtime.name:
                raise InvalidArgument(f"container {wanted.id!r}: runtime name is immutable")
            if wanted.snapshotter and wanted.snapshotter != current.snapshotter:
                raise InvalidArgument(f"container {wanted.id!r}: snapshotter is immutable")
            return pb.UpdateResponse(container=container_pb(current))
        updated = self._store.update(ns, wanted, paths)
        self._publisher.publish(
            ns,
            topics.CONTAINER_UPDATE,
            events.ContainerUpdate(
                id=updated.id,
                image=updated.image,
                labels=updated.labels,
                snapshot_key=updated.snapshot_key,
            ),
        )
        return pb.UpdateResponse(container=container_pb(updated))

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        ns = namespaces.current()
        if not request.id:
            raise InvalidArgument("container id must not be empty")
        if self._has_task is not None and self._has_task(ns, request.id):
            raise FailedPrecondition(f"container {request.id!r} has a task: delete it first")
        self._store.delete(ns, request.id)
        if self._on_deleted is not None:
            self._on_deleted(ns, request.id)
        self._publisher.publish(ns, topics.CONTAINER_DELETE, events.ContainerDelete(id=request.id))
        if self._gc is not None:
            self._gc.schedule()
        return pb.DeleteResponse()


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    if deps.storage is None:
        return []  # a test server without storage
    storage = deps.storage

    # Late-bound: the Tasks service registers after this one and sets deps.tasks.
    def has_task(namespace: str, container_id: str) -> bool:
        return deps.tasks is not None and deps.tasks.has_task(namespace, container_id)

    def remove_logs(namespace: str, container_id: str) -> None:
        if deps.tasks is not None:
            deps.tasks.remove_logs(namespace, container_id)

    service = ContainersService(
        ContainerStore(storage.db), deps.exchange, storage.gc, has_task, remove_logs
    )
    containers_pb2_grpc.add_ContainersServicer_to_server(service, server)
    return [PluginInfo(GRPC_PLUGIN, "containers", requires=(METADATA_PLUGIN, EVENT_PLUGIN))]
