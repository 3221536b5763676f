"""Content service: blobs by digest and the resumable writes (ingests) that make them.

Write is a bidirectional stream, one response per request, as containerd's:

| request action | what the service does                                   | response            |
|----------------|---------------------------------------------------------|---------------------|
| STAT           | opens (or resumes) the ingest named by `ref`            | offset, total, times|
| WRITE          | appends `data` at `offset` (which must be the ingest's  | the new offset      |
|                | current offset; 0 on a non-empty ingest restarts it)    |                     |
| COMMIT         | appends `data` if any, checks `expected` and `total`,   | digest, offset      |
|                | publishes the blob with `labels`; ends the ingest        |                     |

The first request of a stream opens the ingest with its `expected` and `total` (a blob
the namespace already has: ALREADY_EXISTS at once, nothing to send). Every request must
name the same ref. The ingest is locked to the stream while it lasts: a second writer gets
FAILED_PRECONDITION. A stream that ends without COMMIT keeps what it wrote, for a later
stream to resume from Status.offset; Abort drops it. With a `containerd-lease` header the
ingest and the blob belong to that lease.

Events: /content/create after a commit, /content/delete after a delete.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc

from containerd_py import namespaces
from containerd_py.api.events.v1 import content_pb2 as events
from containerd_py.api.services.content.v1 import content_pb2 as pb
from containerd_py.api.services.content.v1 import content_pb2_grpc
from containerd_py.content.store import ContentStore, Writer
from containerd_py.content.types import Info, Status
from containerd_py.errdefs import FailedPrecondition, InvalidArgument, Unavailable
from containerd_py.events import topics
from containerd_py.events.exchange import Publisher
from containerd_py.services.introspection import (
    EVENT_PLUGIN,
    GRPC_PLUGIN,
    METADATA_PLUGIN,
    PluginInfo,
)
from containerd_py.services.leases import lease_of, timestamp

if TYPE_CHECKING:
    from containerd_py.services import Deps

CONTENT_PLUGIN = "io.pycontainerd.content.v1"
READ_CHUNK = 1 << 20
LIST_BATCH = 100


def info_pb(info: Info) -> pb.Info:
    return pb.Info(
        digest=info.digest,
        size=info.size,
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        labels=info.labels,
    )


def status_pb(st: Status) -> pb.Status:
    return pb.Status(
        started_at=timestamp(st.started_at),
        updated_at=timestamp(st.updated_at),
        ref=st.ref,
        offset=st.offset,
        total=st.total,
        expected=st.expected,
    )


class ContentService(content_pb2_grpc.ContentServicer):
    def __init__(self, store: ContentStore, publisher: Publisher) -> None:
        self._store = store
        self._publisher = publisher

    def _view(self, context: grpc.ServicerContext | None = None) -> ContentStore:
        lease = lease_of(context) if context is not None else None
        return self._store.with_namespace(namespaces.current(), lease)

    def Info(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.InfoResponse:
        return pb.InfoResponse(info=info_pb(self._view().info(request.digest)))

    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.UpdateResponse:
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else None
        info = self._view().update_labels(request.info.digest, dict(request.info.labels), paths)
        return pb.UpdateResponse(info=info_pb(info))

    def List(
        self, request: pb.ListRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ListResponse]:
        batch: list[pb.Info] = []
        for info in self._view().walk(*request.filters):
            batch.append(info_pb(info))
            if len(batch) >= LIST_BATCH:
                yield pb.ListResponse(info=batch)
                batch = []
        if batch:
            yield pb.ListResponse(info=batch)

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        view = self._view()
        view.delete(request.digest)
        self._publisher.publish(
            view.namespace, topics.CONTENT_DELETE, events.ContentDelete(digest=request.digest)
        )
        return pb.DeleteResponse()

    def Read(
        self, request: pb.ReadRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ReadResponse]:
        if request.offset < 0 or request.size < 0:
            raise InvalidArgument("offset and size must not be negative")
        view = self._view()
        with view.open(request.digest) as f:
            f.seek(request.offset)
            offset = request.offset
            remaining = request.size or None
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                data = f.read(want)
                if not data:
                    break
                yield pb.ReadResponse(offset=offset, data=data)
                offset += len(data)
                if remaining is not None:
                    remaining -= len(data)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        return pb.StatusResponse(status=status_pb(self._view().status(request.ref)))

    def ListStatuses(
        self, request: pb.ListStatusesRequest, context: grpc.ServicerContext
    ) -> pb.ListStatusesResponse:
        found = self._view().statuses(*request.filters)
        return pb.ListStatusesResponse(statuses=[status_pb(s) for s in found])

    def Write(
        self, request_iterator: Iterator[pb.WriteRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.WriteResponse]:
        view = self._view(context)
        writer: Writer | None = None
        try:
            for req in request_iterator:
                if writer is None:
                    if not req.ref:
                        raise InvalidArgument("write: ref must be set")
                    try:
                        writer = view.writer(req.ref, req.expected or None, req.total or None)
                    except Unavailable as e:
                        raise FailedPrecondition(str(e)) from None
                elif req.ref != writer.ref:
                    raise InvalidArgument(
                        f"write: ref {req.ref!r} differs from the stream's {writer.ref!r}"
                    )
                yield self._step(view, writer, req)
                if req.action == pb.WRITE_ACTION_COMMIT:
                    return
        finally:
            if writer is not None:
                writer.close()

    def _step(self, view: ContentStore, w: Writer, req: pb.WriteRequest) -> pb.WriteResponse:
        if req.action not in (pb.WRITE_ACTION_STAT, pb.WRITE_ACTION_WRITE, pb.WRITE_ACTION_COMMIT):
            raise InvalidArgument(f"write: unknown action {req.action}")
        if req.action != pb.WRITE_ACTION_STAT and req.data:
            if req.offset == 0 and w.offset > 0:
                w.truncate(0)  # the client restarts the blob from the beginning
            if req.offset != w.offset:
                raise InvalidArgument(
                    f"write: offset {req.offset} but ingest {w.ref!r} is at {w.offset}"
                )
            w.write(req.data)
        if req.action == pb.WRITE_ACTION_COMMIT:
            size = req.total or w.total or None
            info = w.commit(req.expected or None, size, dict(req.labels))
            self._publisher.publish(
                view.namespace,
                topics.CONTENT_CREATE,
                events.ContentCreate(digest=info.digest, size=info.size),
            )
            st = w.status()
            return pb.WriteResponse(
                action=req.action,
                started_at=timestamp(st.started_at),
                updated_at=timestamp(st.updated_at),
                offset=info.size,
                total=info.size,
                digest=info.digest,
            )
        st = w.status()
        return pb.WriteResponse(
            action=req.action,
            started_at=timestamp(st.started_at),
            updated_at=timestamp(st.updated_at),
            offset=st.offset,
            total=st.total,
            digest=w.digest() if req.action == pb.WRITE_ACTION_WRITE else "",
        )

    def Abort(self, request: pb.AbortRequest, context: grpc.ServicerContext) -> pb.AbortResponse:
        try:
            self._view().abort(request.ref)
        except Unavailable as e:
            raise FailedPrecondition(str(e)) from None
        return pb.AbortResponse()


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    if deps.storage is None:
        return []  # a test server without storage
    service = ContentService(deps.storage.content, deps.exchange)
    content_pb2_grpc.add_ContentServicer_to_server(service, server)
    root = str(deps.storage.content.blobs.root)
    return [
        PluginInfo(CONTENT_PLUGIN, "content", requires=(METADATA_PLUGIN,), exports={"root": root}),
        PluginInfo(GRPC_PLUGIN, "content", requires=(CONTENT_PLUGIN, EVENT_PLUGIN)),
    ]
