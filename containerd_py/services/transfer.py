"""Transfer service: Pull and Push between registries and the daemon's content store.

The transfer runs in a thread of its own (`_Job`), with its blobs on worker threads
(distribution.fetch / push); the handler thread follows its `Progress` and streams a
snapshot whenever it changed, at most every `MIN_INTERVAL` seconds, then the last message
with `done`. A caller that goes away (or a daemon stopping) cancels the transfer: the
workers stop at their next chunk, and a pull keeps what it fetched under its lease for
the next attempt (distribution.pull).

Credentials: the request's, else the `auths` of the daemon's docker-style config file
(`registry.auth_file`, read at each transfer so a new login needs no restart), else none.
TLS and http settings per host come from `registry.certs_dir` and `registry.insecure`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from containerd_py import namespaces
from containerd_py.api.services.transfer.v1 import transfer_pb2 as pb
from containerd_py.api.services.transfer.v1 import transfer_pb2_grpc
from containerd_py.content.store import ContentStore
from containerd_py.distribution.progress import BlobKind, BlobStatus, Progress, Snapshot
from containerd_py.distribution.pull import Puller, PullLeases, PullOptions
from containerd_py.distribution.push import Pusher, PushOptions
from containerd_py.distribution.registry import Access, RepositoryFactory
from containerd_py.errdefs import InvalidArgument, NotFound
from containerd_py.events.exchange import Publisher
from containerd_py.images.manifest import Descriptor
from containerd_py.images.reference import parse_docker_ref, parse_normalized
from containerd_py.metadata.images import Image, ImageStore
from containerd_py.metadata.leases import LeaseStore
from containerd_py.services.images import descriptor_pb, platform_from_pb, record_image
from containerd_py.services.introspection import (
    EVENT_PLUGIN,
    GRPC_PLUGIN,
    METADATA_PLUGIN,
    PluginInfo,
)
from containerd_py.services.snapshots import SNAPSHOTTER_PLUGIN, Snapshotters

if TYPE_CHECKING:
    from containerd_py.gc_service import GCScheduler
    from containerd_py.services import Deps

log = logging.getLogger(__name__)

# Progress messages are sent on change, but not more often than this (seconds).
MIN_INTERVAL = 0.1
# With no change, still this often: the caller sees the transfer is alive.
TICK = 1.0
MAX_CONCURRENCY = 64


_KINDS = {
    BlobKind.INDEX: pb.BLOB_KIND_INDEX,
    BlobKind.MANIFEST: pb.BLOB_KIND_MANIFEST,
    BlobKind.CONFIG: pb.BLOB_KIND_CONFIG,
    BlobKind.LAYER: pb.BLOB_KIND_LAYER,
}
_STATUSES = {
    BlobStatus.WAITING: pb.BLOB_STATUS_WAITING,
    BlobStatus.TRANSFERRING: pb.BLOB_STATUS_TRANSFERRING,
    BlobStatus.DONE: pb.BLOB_STATUS_DONE,
    BlobStatus.EXISTS: pb.BLOB_STATUS_EXISTS,
    BlobStatus.MOUNTED: pb.BLOB_STATUS_MOUNTED,
    BlobStatus.FAILED: pb.BLOB_STATUS_FAILED,
}


def blobs_pb(snapshot: Snapshot) -> list[pb.BlobProgress]:
    return [
        pb.BlobProgress(
            descriptor=descriptor_pb(b.descriptor),
            kind=_KINDS[b.kind],
            status=_STATUSES[b.status],
            offset=b.offset,
        )
        for b in snapshot.blobs
    ]


class _Job(threading.Thread):
    """A transfer running beside the handler thread; `result` or `error` once it ends."""

    def __init__(self, name: str, fn: Callable[[], Any], progress: Progress) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = fn
        self._progress = progress
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as e:
            self.error = e
        finally:
            self._progress.wake()


class Call:
    """A transfer's stop signals: `cancel` stops the transfer (the caller left, or one of
    its workers failed); `gone` says the caller left, so nobody waits for an answer."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.cancel = threading.Event()
        self.gone = threading.Event()
        context.add_callback(self.gone.set)
        context.add_callback(self.cancel.set)


def follow(
    job: _Job, progress: Progress, call: Call, message: Callable[[Snapshot], Any]
) -> Generator[Any, None, bool]:
    """Messages for the job's progress until it ends; its error, if any, is raised. True
    once the job ended well: its result is there for the last message.

    When the call is cancelled (the caller left, or the daemon is stopping), this returns
    False at once: the job notices the cancel at its next chunk and ends by itself (a
    daemon thread, so a download stuck on a silent registry never holds up the daemon's
    exit), and there is no result to send nor anyone to send it to.
    """
    job.start()
    sent = -1
    try:
        while True:
            ended = not job.is_alive()
            snap = progress.snapshot()
            if snap.version != sent:
                sent = snap.version
                yield message(snap)
            if ended:
                break
            if call.gone.is_set():
                return False  # nobody is listening any more
            # Collect changes for a moment, then wait for the next one (or a tick).
            job.join(MIN_INTERVAL)
            progress.wait(sent, TICK)
    finally:
        call.cancel.set()  # a no-op when the job ended; else (GeneratorExit) it must stop
    if job.error is not None:
        raise job.error
    return True


class TransferService(transfer_pb2_grpc.TransferServicer):
    def __init__(
        self,
        images: ImageStore,
        content: ContentStore,
        snapshotters: Snapshotters,
        leases: LeaseStore,
        publisher: Publisher,
        repositories: RepositoryFactory,
        *,
        gc: GCScheduler | None = None,
        work_dir: str | None = None,
        downloads: int = 3,
        uploads: int = 3,
    ) -> None:
        self._images = images
        self._content = content
        self._snapshotters = snapshotters
        self._leases = PullLeases(leases, gc)
        self._publisher = publisher
        self._repositories = repositories
        self._work_dir = work_dir
        self._downloads = downloads
        self._uploads = uploads

    # -- pull -----------------------------------------------------------------------

    def Pull(
        self, request: pb.PullRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.PullResponse]:
        ns = namespaces.current()
        if not request.ref.strip():
            raise InvalidArgument("pull: give an image reference")
        ref = parse_normalized(request.ref.strip())
        name = str(parse_docker_ref(request.ref.strip()))
        options = PullOptions(
            platforms=tuple(platform_from_pb(p) for p in request.platforms),
            all_platforms=request.all_platforms,
            unpack=request.unpack,
            snapshotter=request.snapshotter,
            labels=dict(request.labels),
            concurrency=_concurrency(request.max_concurrent_downloads, self._downloads),
        )
        if options.unpack:
            self._snapshotters.name(options.snapshotter)  # an unknown one fails before any work
        repo = self._repositories(ref, access(request.registry), False)
        puller = Puller(
            ns,
            self._content,
            self._leases,
            self._snapshotters,
            self._record,
            work_dir=self._work_dir,
        )
        progress, call = Progress(), Call(context)
        job = _Job(
            "pull", lambda: puller.pull(ref, name, repo, options, progress, call.cancel), progress
        )

        def message(snap: Snapshot) -> pb.PullResponse:
            return pb.PullResponse(ref=name, status=snap.status, blobs=blobs_pb(snap))

        if not (yield from follow(job, progress, call, message)):
            return
        image = job.result.image
        final = message(progress.snapshot())
        final.done = True
        final.name = image.name
        final.target.CopyFrom(descriptor_pb(image.target))
        yield final

    def _record(self, ns: str, name: str, target: Descriptor, labels: Mapping[str, str]) -> Image:
        return record_image(self._images, self._publisher, ns, name, target, labels)

    # -- push -----------------------------------------------------------------------

    def Push(
        self, request: pb.PushRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.PushResponse]:
        ns = namespaces.current()
        local = request.ref.strip()
        if not local:
            raise InvalidArgument("push: name the image to push")
        image = self._find_image(ns, local)
        remote_text = request.remote_ref.strip() or image.name
        remote = parse_normalized(remote_text)
        reference = remote.digest or remote.tag or "latest"
        if request.chunk_size < 0:
            raise InvalidArgument(f"push: chunk size {request.chunk_size} is negative")
        options = PushOptions(
            platform=platform_from_pb(request.platform) if request.HasField("platform") else None,
            chunk_size=request.chunk_size,
            concurrency=_concurrency(request.max_concurrent_uploads, self._uploads),
        )
        t = image.target
        target = Descriptor(t.media_type, t.digest, t.size, dict(t.annotations))
        pusher = Pusher(self._content.with_namespace(ns))
        plan = pusher.plan(target, options.platform)  # missing content fails before any request
        repo = self._repositories(remote, access(request.registry), True)
        progress, call = Progress(), Call(context)
        job = _Job(
            "push",
            lambda: pusher.push(plan, reference, repo, options, progress, call.cancel),
            progress,
        )
        name = str(remote) if remote.tag or remote.digest else f"{remote}:latest"

        def message(snap: Snapshot) -> pb.PushResponse:
            return pb.PushResponse(ref=name, status=snap.status, blobs=blobs_pb(snap))

        if not (yield from follow(job, progress, call, message)):
            return
        final = message(progress.snapshot())
        final.done = True
        final.target.CopyFrom(descriptor_pb(job.result))
        yield final

    def _find_image(self, ns: str, name: str) -> Image:
        """By the name as given, else as Docker would normalize it ("busybox")."""
        try:
            return self._images.get(ns, name)
        except NotFound:
            try:
                normalized = str(parse_docker_ref(name))
            except InvalidArgument:
                raise NotFound(f"image {name!r} not found in namespace {ns!r}") from None
            if normalized == name:
                raise
            try:
                return self._images.get(ns, normalized)
            except NotFound:
                raise NotFound(f"image {name!r} not found in namespace {ns!r}") from None


def access(options: pb.RegistryOptions) -> Access:
    return Access(
        options.auth.username, options.auth.password, options.plain_http, options.skip_verify
    )


def _concurrency(asked: int, default: int) -> int:
    if asked < 0 or asked > MAX_CONCURRENCY:
        raise InvalidArgument(f"concurrency {asked} is not between 0 and {MAX_CONCURRENCY}")
    return asked or default


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    if deps.storage is None:
        return []  # a test server without storage
    from containerd_py.distribution.registry import Registries

    storage = deps.storage
    cfg = deps.config
    service = TransferService(
        ImageStore(storage.db),
        storage.content,
        storage.snapshotters,
        LeaseStore(storage.db),
        deps.exchange,
        Registries(cfg.certs_dir, cfg.auth_file, cfg.insecure_registries).repository,
        gc=storage.gc,
        work_dir=str(storage.work_dir),
        downloads=cfg.max_concurrent_downloads,
        uploads=cfg.max_concurrent_uploads,
    )
    transfer_pb2_grpc.add_TransferServicer_to_server(service, server)
    return [
        PluginInfo(
            GRPC_PLUGIN,
            "transfer",
            requires=(METADATA_PLUGIN, SNAPSHOTTER_PLUGIN, EVENT_PLUGIN),
        )
    ]
