"""Namespaces service: a thin adapter from the wire to a NamespaceStore, plus events.

The store is injected (the daemon passes `containerd_py.metadata.namespaces.NamespaceStore`
over its SQLite database); this module only needs the `NamespaceStore` protocol below.
Every change publishes /namespaces/create|update|delete in the namespace it concerns, so
`pyctr -n x events namespace==x` sees a namespace's whole life.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import grpc

from containerd_py import namespaces
from containerd_py.api.events.v1 import namespace_pb2 as events
from containerd_py.api.services.namespaces.v1 import namespaces_pb2 as pb
from containerd_py.api.services.namespaces.v1 import namespaces_pb2_grpc
from containerd_py.errdefs import InvalidArgument
from containerd_py.events import topics
from containerd_py.events.exchange import Publisher
from containerd_py.services.introspection import EVENT_PLUGIN, GRPC_PLUGIN, PluginInfo

if TYPE_CHECKING:
    from containerd_py.services import Deps


class NamespaceRecord(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


class NamespaceStore(Protocol):
    """What the service needs; errors are `containerd_py.errdefs` exceptions (NotFound,
    AlreadyExists, FailedPrecondition when deleting a namespace that holds anything)."""

    def get(self, name: str) -> NamespaceRecord: ...

    def list(self, *filters: str) -> Sequence[NamespaceRecord]: ...

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> NamespaceRecord: ...

    def update(
        self, name: str, labels: Mapping[str, str], fieldpaths: Sequence[str] | None = None
    ) -> NamespaceRecord: ...

    def delete(self, name: str) -> None: ...


def to_proto(ns: NamespaceRecord) -> pb.Namespace:
    return pb.Namespace(name=ns.name, labels=dict(ns.labels))


class NamespacesService(namespaces_pb2_grpc.NamespacesServicer):
    def __init__(self, store: NamespaceStore, publisher: Publisher) -> None:
        self._store = store
        self._publisher = publisher

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:
        return pb.GetResponse(
            namespace=to_proto(self._store.get(namespaces.validate(request.name)))
        )

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListResponse:
        found = self._store.list(*request.filters)
        return pb.ListResponse(namespaces=[to_proto(ns) for ns in found])

    def Create(self, request: pb.CreateRequest, context: grpc.ServicerContext) -> pb.CreateResponse:
        name = namespaces.validate(request.namespace.name)
        ns = self._store.create(name, dict(request.namespace.labels))
        self._publisher.publish(
            name, topics.NAMESPACE_CREATE, events.NamespaceCreate(name=name, labels=ns.labels)
        )
        return pb.CreateResponse(namespace=to_proto(ns))

    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.UpdateResponse:
        name = namespaces.validate(request.namespace.name)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        for path in paths:
            if path != "labels" and not path.startswith("labels."):
                raise InvalidArgument(f"cannot update {path!r} of a namespace (only labels)")
        ns = self._store.update(name, dict(request.namespace.labels), paths or None)
        self._publisher.publish(
            name, topics.NAMESPACE_UPDATE, events.NamespaceUpdate(name=name, labels=ns.labels)
        )
        return pb.UpdateResponse(namespace=to_proto(ns))

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        name = namespaces.validate(request.name)
        self._store.delete(name)
        self._publisher.publish(name, topics.NAMESPACE_DELETE, events.NamespaceDelete(name=name))
        return pb.DeleteResponse()


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    service = NamespacesService(deps.namespaces, deps.exchange)
    namespaces_pb2_grpc.add_NamespacesServicer_to_server(service, server)
    return [PluginInfo(GRPC_PLUGIN, "namespaces", requires=(EVENT_PLUGIN,))]
