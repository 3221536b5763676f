"""Leases service, and the `containerd-lease` header the other services honour.

A lease id sent in the gRPC metadata `containerd-lease` makes what a call creates belong to
that lease (containerd's `leases.WithLease` on the client, `leases.FromContext` in its
metadata store): Content.Write (the ingest, then the blob) and Snapshots.Prepare, View and
Commit. The lease must exist in the call's namespace (NOT_FOUND otherwise); a call without
the header creates objects that only references keep, as with containerd.

Deleting a lease schedules a garbage collection (what only it held goes); `sync` collects
before answering.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import timestamp_pb2

from containerd_py import namespaces
from containerd_py.api.services.leases.v1 import leases_pb2 as pb
from containerd_py.api.services.leases.v1 import leases_pb2_grpc
from containerd_py.errdefs import InvalidArgument
from containerd_py.metadata.leases import Lease, LeaseStore, Resource
from containerd_py.services.introspection import GRPC_PLUGIN, METADATA_PLUGIN, PluginInfo

if TYPE_CHECKING:
    from containerd_py.gc_service import GCScheduler
    from containerd_py.services import Deps

LEASE_METADATA_KEY = "containerd-lease"


def lease_from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The lease id a call carries in its metadata, or None."""
    for key, value in metadata or ():
        if key == LEASE_METADATA_KEY:
            text = value.decode() if isinstance(value, bytes) else str(value)
            return text or None
    return None


def lease_of(context: grpc.ServicerContext) -> str | None:
    return lease_from_metadata(context.invocation_metadata())


def timestamp(dt: datetime | None) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if dt is not None:
        ts.FromDatetime(dt.astimezone(UTC))
    return ts


def _lease_pb(lease: Lease) -> pb.Lease:
    return pb.Lease(id=lease.id, created_at=timestamp(lease.created_at), labels=lease.labels)


def _resource(r: pb.Resource) -> Resource:
    if not r.id or not r.type:
        raise InvalidArgument("a lease resource needs an id and a type")
    return Resource(r.id, r.type)


class LeasesService(leases_pb2_grpc.LeasesServicer):
    def __init__(self, store: LeaseStore, gc: GCScheduler | None = None) -> None:
        self._store = store
        self._gc = gc

    def Create(self, request: pb.CreateRequest, context: grpc.ServicerContext) -> pb.CreateResponse:
        lease = self._store.create(
            namespaces.current(), request.id or None, dict(request.labels) or None
        )
        return pb.CreateResponse(lease=_lease_pb(lease))

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        self._store.delete(namespaces.current(), request.id)
        if self._gc is not None:
            if request.sync:
                self._gc.collect_now()
            else:
                self._gc.schedule()
        return pb.DeleteResponse()

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListResponse:
        found = self._store.list(namespaces.current(), *request.filters)
        return pb.ListResponse(leases=[_lease_pb(x) for x in found])

    def AddResource(
        self, request: pb.AddResourceRequest, context: grpc.ServicerContext
    ) -> pb.AddResourceResponse:
        self._store.add_resource(namespaces.current(), request.id, _resource(request.resource))
        return pb.AddResourceResponse()

    def DeleteResource(
        self, request: pb.DeleteResourceRequest, context: grpc.ServicerContext
    ) -> pb.DeleteResourceResponse:
        self._store.delete_resource(namespaces.current(), request.id, _resource(request.resource))
        if self._gc is not None:
            self._gc.schedule()
        return pb.DeleteResourceResponse()

    def ListResources(
        self, request: pb.ListResourcesRequest, context: grpc.ServicerContext
    ) -> pb.ListResourcesResponse:
        found = self._store.list_resources(namespaces.current(), request.id)
        return pb.ListResourcesResponse(
            resources=[pb.Resource(id=r.id, type=r.type) for r in found]
        )


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    if deps.storage is None:
        return []  # a test server without storage
    store = LeaseStore(deps.storage.db)
    leases_pb2_grpc.add_LeasesServicer_to_server(LeasesService(store, deps.storage.gc), server)
    return [PluginInfo(GRPC_PLUGIN, "leases", requires=(METADATA_PLUGIN,))]
