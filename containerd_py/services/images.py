"""Images service: image records per namespace, and archive import and export.

Records (Get/List/Create/Update/Delete) are thin over `metadata.images.ImageStore`.
Delete schedules a garbage collection; with `sync` it collects before answering, so what
only that image held is gone when the call returns. Events: /images/create|update|delete.

Import, step by step:

1. the first message carries the options; the archive is a path on the daemon host, or the
   following messages' bytes, spooled to a file under the daemon's work dir;
2. a temporary lease is opened: every blob the import stores or finds already there, and
   every snapshot an unpack makes or reuses, belongs to it, so a collection running
   meanwhile (after some unrelated delete) cannot take them before an image refers to them;
3. `images.import_archive` stores the blobs (OCI layout or docker-save, detected);
4. with `unpack`, each image is unpacked into the snapshotter (`unpack.Unpacker`);
5. only then are the records written (created, or their target updated when the name
   exists: the newer import wins, as with containerd), with the options' labels;
6. the lease is dropped. A failure before 5 leaves no record changed; what was stored
   becomes garbage, which the collection scheduled at the end removes.

Export writes an OCI image layout tar (`format` "oci", the default) or a docker-save
archive ("docker"), to a path on the daemon host or down the stream in chunks.

Pull and Push answer UNIMPLEMENTED until registry support lands.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import grpc

from containerd_py import namespaces
from containerd_py.api.events.v1 import image_pb2 as events
from containerd_py.api.services.images.v1 import images_pb2 as pb
from containerd_py.api.services.images.v1 import images_pb2_grpc
from containerd_py.api.types.v1 import descriptor_pb2, platform_pb2
from containerd_py.content import digests
from containerd_py.content.descriptor import Descriptor as StoredDescriptor
from containerd_py.content.store import ContentStore
from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument
from containerd_py.events import topics
from containerd_py.events.exchange import Publisher
from containerd_py.images import export_docker_archive, export_oci_archive, import_archive
from containerd_py.images.manifest import Descriptor
from containerd_py.images.platforms import Platform
from containerd_py.metadata.common import LABEL_GC_EXPIRE
from containerd_py.metadata.images import Image, ImageStore
from containerd_py.metadata.leases import CONTENT, LeaseStore, Resource
from containerd_py.services.introspection import (
    EVENT_PLUGIN,
    GRPC_PLUGIN,
    METADATA_PLUGIN,
    PluginInfo,
)
from containerd_py.services.leases import timestamp
from containerd_py.services.snapshots import SNAPSHOTTER_PLUGIN, Snapshotters
from containerd_py.unpack import Unpacker

if TYPE_CHECKING:
    from containerd_py.gc_service import GCScheduler
    from containerd_py.services import Deps

log = logging.getLogger(__name__)

REGISTRY_UNIMPLEMENTED = "registry support arrives with the distribution issue"
EXPORT_CHUNK = 1 << 20
SPOOL_CHUNK = 1 << 20
# How long a crashed import's lease keeps what it stored (the next collection after that
# removes it).
IMPORT_LEASE_TTL = timedelta(hours=1)
FORMATS = ("oci", "docker")


def descriptor_pb(d: StoredDescriptor | Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations)
    )


def image_pb(image: Image) -> pb.Image:
    return pb.Image(
        name=image.name,
        labels=image.labels,
        target=descriptor_pb(image.target),
        created_at=timestamp(image.created_at),
        updated_at=timestamp(image.updated_at),
    )


def image_from_pb(p: pb.Image) -> Image:
    t = p.target
    return Image(
        name=p.name,
        target=StoredDescriptor(t.media_type, t.digest, t.size, dict(t.annotations)),
        labels=dict(p.labels),
    )


def platform_from_pb(p: platform_pb2.Platform) -> Platform:
    if not p.os or not p.architecture:
        raise InvalidArgument("platform needs an os and an architecture")
    return Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features))


class LeasedContent:
    """The content store as the importer sees it, with what it finds already stored put
    under the import's lease (the lease first, then the look: a collection in between
    cannot take the blob once `exists` says yes)."""

    def __init__(self, store: ContentStore, leases: LeaseStore) -> None:
        self.store = store
        self.leases = leases

    def exists(self, digest: str) -> bool:
        if self.store.lease:
            self.leases.add_resource(
                self.store.namespace, self.store.lease, Resource(digest, CONTENT)
            )
        return self.store.exists(digest)

    def ingest(self, stream: BinaryIO, expected_digest: str, expected_size: int) -> object:
        return self.store.ingest(stream, expected_digest, expected_size)

    def open(self, digest: str) -> BinaryIO:
        return self.store.open(digest)

    def info(self, digest: str) -> object:
        return self.store.info(digest)


class ImagesService(images_pb2_grpc.ImagesServicer):
    def __init__(
        self,
        store: ImageStore,
        content: ContentStore,
        snapshotters: Snapshotters,
        leases: LeaseStore,
        publisher: Publisher,
        *,
        gc: GCScheduler | None = None,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._store = store
        self._content = content
        self._snapshotters = snapshotters
        self._leases = leases
        self._publisher = publisher
        self._gc = gc
        self._work_dir = str(work_dir) if work_dir is not None else None
        if self._work_dir is not None:
            Path(self._work_dir).mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- records --------------------------------------------------------------------

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:
        name = _name(request.name)
        return pb.GetResponse(image=image_pb(self._store.get(namespaces.current(), name)))

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListResponse:
        found = self._store.list(namespaces.current(), *request.filters)
        return pb.ListResponse(images=[image_pb(i) for i in found])

    def Create(self, request: pb.CreateRequest, context: grpc.ServicerContext) -> pb.CreateResponse:
        ns = namespaces.current()
        created = self._store.create(ns, image_from_pb(request.image))
        self._publish_create(ns, created)
        return pb.CreateResponse(image=image_pb(created))

    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.UpdateResponse:
        ns = namespaces.current()
        _name(request.image.name)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else None
        # The store validates the record the mask produces (a target it sets must be whole).
        updated = self._store.update(ns, image_from_pb(request.image), paths or None)
        self._publish_update(ns, updated)
        return pb.UpdateResponse(image=image_pb(updated))

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        ns = namespaces.current()
        name = _name(request.name)
        if request.target_digest:
            current = self._store.get(ns, name)
            if current.target.digest != request.target_digest:
                raise FailedPrecondition(
                    f"image {name!r} points at {current.target.digest}, not {request.target_digest}"
                )
        self._store.delete(ns, name)
        self._publisher.publish(ns, topics.IMAGE_DELETE, events.ImageDelete(name=name))
        if self._gc is not None:
            if request.sync:
                self._gc.collect_now()
            else:
                self._gc.schedule()
        return pb.DeleteResponse()

    # -- registries -----------------------------------------------------------------

    def Pull(
        self, request: pb.PullRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.PullProgress]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, REGISTRY_UNIMPLEMENTED)
        yield from ()

    def Push(
        self, request: pb.PushRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.PushProgress]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, REGISTRY_UNIMPLEMENTED)
        yield from ()

    # -- archives -------------------------------------------------------------------

    def Import(
        self, request_iterator: Iterator[pb.ImportRequest], context: grpc.ServicerContext
    ) -> pb.ImportResponse:
        ns = namespaces.current()
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "options":
            raise InvalidArgument("import: the first message must carry the options")
        opts = first.options
        platform = platform_from_pb(opts.platform) if opts.HasField("platform") else None
        labels = dict(opts.labels)
        snapshotter = self._snapshotters.name(opts.snapshotter) if opts.unpack else ""
        with contextlib.ExitStack() as stack:
            if opts.path:
                if not os.path.isabs(opts.path):
                    raise InvalidArgument(f"import: path {opts.path!r} must be absolute")
                if next(request_iterator, None) is not None:
                    raise InvalidArgument("import: data messages sent along with a path")
                source: str | BinaryIO = opts.path
            else:
                source = stack.enter_context(self._spool(request_iterator))
            lease = self._temporary_lease(ns, "import")
            stack.callback(self._drop_lease, ns, lease)
            content = self._content.with_namespace(ns, lease)
            imported = import_archive(
                LeasedContent(content, self._leases),  # type: ignore[arg-type]
                source,
                base_name=opts.base_name or None,
                platform=platform,
                all_platforms=opts.all_platforms,
                tmpdir=self._work_dir,
            )
            named = [i for i in imported if not digests.is_digest(i.name)]
            for i in imported:
                if digests.is_digest(i.name):
                    log.info("import: %s has no name (give a base name); not recorded", i.name)
            if imported and not named:
                raise InvalidArgument(
                    "import: the archive names no image; give a base name to record it"
                )
            if opts.unpack:
                unpacker = Unpacker(
                    content,
                    self._snapshotters.view(snapshotter, ns, lease),
                    leases=self._leases,
                    work_dir=self._work_dir,
                )
                # Names sharing a target unpack it once.
                for target in {i.target.digest: i.target for i in named}.values():
                    unpacker.unpack(target, platform)
            records = [self._record(ns, i.name, i.target, labels) for i in named]
        return pb.ImportResponse(images=[image_pb(r) for r in records])

    def Export(
        self, request: pb.ExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportResponse]:
        ns = namespaces.current()
        if not request.names:
            raise InvalidArgument("export: name at least one image")
        fmt = request.format or "oci"
        if fmt not in FORMATS:
            raise InvalidArgument(f"export: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
        if request.path and not os.path.isabs(request.path):
            raise InvalidArgument(f"export: path {request.path!r} must be absolute")
        platform = platform_from_pb(request.platform) if request.HasField("platform") else None
        images = []
        for name in request.names:
            t = self._store.get(ns, _name(name)).target
            images.append((name, Descriptor(t.media_type, t.digest, t.size, dict(t.annotations))))
        content = self._content.with_namespace(ns)

        def write(out: BinaryIO | str) -> None:
            if fmt == "docker":
                export_docker_archive(
                    content, images, out, platform=platform, tmpdir=self._work_dir
                )
            else:
                export_oci_archive(
                    content, images, out, platform=platform, all_platforms=request.all_platforms
                )

        if request.path:
            try:
                write(request.path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
                raise InvalidArgument(f"export: cannot write {request.path}: {e}") from None
            yield pb.ExportResponse(size=os.path.getsize(request.path))
            return
        with tempfile.TemporaryFile(dir=self._work_dir) as spool:
            write(spool)  # type: ignore[arg-type]
            size = spool.tell()
            spool.seek(0)
            while chunk := spool.read(EXPORT_CHUNK):
                yield pb.ExportResponse(data=chunk)
        yield pb.ExportResponse(size=size)

    # -- internals ------------------------------------------------------------------

    @contextlib.contextmanager
    def _spool(self, requests: Iterator[pb.ImportRequest]) -> Iterator[BinaryIO]:
        with tempfile.TemporaryFile(dir=self._work_dir) as f:
            for req in requests:
                if req.WhichOneof("payload") != "data":
                    raise InvalidArgument("import: only the first message may carry options")
                f.write(req.data)
            if f.tell() == 0:
                raise InvalidArgument("import: no archive: give a path or send its bytes")
            f.seek(0)
            yield f  # type: ignore[misc]

    def _temporary_lease(self, ns: str, purpose: str) -> str:
        expire = (datetime.now(UTC) + IMPORT_LEASE_TTL).strftime("%Y-%m-%dT%H:%M:%SZ")
        lease = self._leases.create(
            ns, f"{purpose}-{secrets.token_hex(8)}", {LABEL_GC_EXPIRE: expire}
        )
        return lease.id

    def _drop_lease(self, ns: str, lease: str) -> None:
        try:
            self._leases.delete(ns, lease)
        except Exception as e:  # the lease expires by itself anyway
            log.warning("cannot delete temporary lease %s: %s", lease, e)
        if self._gc is not None:
            self._gc.schedule()

    def _record(self, ns: str, name: str, target: Descriptor, labels: dict[str, str]) -> Image:
        return record_image(self._store, self._publisher, ns, name, target, labels)

    def _publish_create(self, ns: str, image: Image) -> None:
        self._publisher.publish(
            ns, topics.IMAGE_CREATE, events.ImageCreate(name=image.name, labels=image.labels)
        )

    def _publish_update(self, ns: str, image: Image) -> None:
        self._publisher.publish(
            ns, topics.IMAGE_UPDATE, events.ImageUpdate(name=image.name, labels=image.labels)
        )


def record_image(
    store: ImageStore,
    publisher: Publisher,
    ns: str,
    name: str,
    target: Descriptor,
    labels: Mapping[str, str],
) -> Image:
    """Create the image record, or point an existing one of that name at target (the newer
    import or pull wins, as with containerd), and publish the event that says which."""
    stored = StoredDescriptor(
        target.media_type, target.digest, target.size, dict(target.annotations)
    )
    image = Image(name=name, target=stored, labels=dict(labels))
    try:
        created = store.create(ns, image)
    except AlreadyExists:
        paths = ["target", *(f"labels.{k}" for k in labels)]
        updated = store.update(ns, image, paths)
        publisher.publish(
            ns, topics.IMAGE_UPDATE, events.ImageUpdate(name=name, labels=updated.labels)
        )
        return updated
    publisher.publish(ns, topics.IMAGE_CREATE, events.ImageCreate(name=name, labels=created.labels))
    return created


def _name(name: str) -> str:
    if not name or not name.strip():
        raise InvalidArgument("image name must not be empty")
    return name


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    if deps.storage is None:
        return []  # a test server without storage
    storage = deps.storage
    service = ImagesService(
        ImageStore(storage.db),
        storage.content,
        storage.snapshotters,
        LeaseStore(storage.db),
        deps.exchange,
        gc=storage.gc,
        work_dir=storage.work_dir,
    )
    images_pb2_grpc.add_ImagesServicer_to_server(service, server)
    return [
        PluginInfo(
            GRPC_PLUGIN,
            "images",
            requires=(METADATA_PLUGIN, SNAPSHOTTER_PLUGIN, EVENT_PLUGIN),
        )
    ]
