"""Snapshots service, and the daemon's set of snapshotters.

Every request names its snapshotter: "overlay" (also spelled "overlayfs", containerd's
name), "native", or "" for the daemon's default (overlay where the kernel and the root's
filesystem can stack it, native otherwise). Snapshots are partitioned by the request's
namespace (`NamespacedSnapshotter`), and a `containerd-lease` header puts what Prepare,
View and Commit make under that lease.

Events, as containerd names them: /snapshot/prepare, /snapshot/commit, /snapshot/remove.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from containerd_py import namespaces
from containerd_py.api.events.v1 import snapshot_pb2 as events
from containerd_py.api.services.snapshots.v1 import snapshots_pb2 as pb
from containerd_py.api.services.snapshots.v1 import snapshots_pb2_grpc
from containerd_py.api.types.v1 import mount_pb2
from containerd_py.errdefs import InvalidArgument, PyContainerdError
from containerd_py.events import topics
from containerd_py.events.exchange import Publisher
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.snapshots import NamespacedSnapshotter
from containerd_py.services.introspection import (
    EVENT_PLUGIN,
    GRPC_PLUGIN,
    METADATA_PLUGIN,
    PluginInfo,
)
from containerd_py.services.leases import lease_of, timestamp
from containerd_py.snapshots.mount import Mount
from containerd_py.snapshots.snapshotter import Info, Kind, Snapshotter

if TYPE_CHECKING:
    from containerd_py.services import Deps

log = logging.getLogger(__name__)

SNAPSHOTTER_PLUGIN = "io.pycontainerd.snapshotter.v1"
OVERLAY = "overlay"
NATIVE = "native"
ALIASES = {"overlayfs": OVERLAY}
LIST_BATCH = 100

_KINDS = {Kind.VIEW: pb.KIND_VIEW, Kind.ACTIVE: pb.KIND_ACTIVE, Kind.COMMITTED: pb.KIND_COMMITTED}


class Snapshotters:
    """The snapshotter backends by name and the default one; hands out namespaced views."""

    def __init__(self, db: MetadataDB, backends: Mapping[str, Snapshotter], default: str) -> None:
        if default not in backends:
            raise ValueError(f"default snapshotter {default!r} is not among {sorted(backends)}")
        self.db = db
        self.backends = dict(backends)
        self.default = default

    def name(self, requested: str = "") -> str:
        """The canonical name of a requested snapshotter; InvalidArgument if not loaded."""
        name = ALIASES.get(requested, requested) or self.default
        if name not in self.backends:
            loaded = ", ".join(sorted(self.backends))
            raise InvalidArgument(f"snapshotter {requested!r} is not loaded (loaded: {loaded})")
        return name

    def view(
        self, requested: str, namespace: str, lease: str | None = None
    ) -> NamespacedSnapshotter:
        name = self.name(requested)
        return NamespacedSnapshotter(self.db, name, self.backends[name], namespace, lease)

    def close(self) -> None:
        for backend in self.backends.values():
            try:
                backend.close()
            except Exception as e:  # closing must go on with the others
                log.warning("closing snapshotter: %s", e)


def open_snapshotters(root: Path, db: MetadataDB) -> Snapshotters:
    """overlay (the default, when usable under `root`) and native, each under
    `<root>/snapshots/<name>`; cleans up what a crash left in their directories."""
    from containerd_py.snapshots import overlay
    from containerd_py.snapshots.native import NativeSnapshotter

    backends: dict[str, Snapshotter] = {NATIVE: NativeSnapshotter(root / "snapshots" / NATIVE)}
    default = NATIVE
    overlay_root = root / "snapshots" / OVERLAY
    try:
        overlay.supported(overlay_root)
    except (PyContainerdError, OSError) as e:
        log.warning("overlay snapshotter not available, using native: %s", e)
    else:
        backends[OVERLAY] = overlay.OverlaySnapshotter(overlay_root)
        default = OVERLAY
    for name, backend in backends.items():
        try:
            backend.cleanup()
        except Exception as e:
            log.warning("snapshotter %s: cleanup failed: %s", name, e)
    return Snapshotters(db, backends, default)


def mount_pb(m: Mount) -> mount_pb2.Mount:
    return mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=m.options)


def mount_from_pb(m: mount_pb2.Mount) -> Mount:
    return Mount(m.type, m.source, tuple(m.options), m.target)


def info_pb(info: Info) -> pb.Info:
    return pb.Info(
        name=info.name,
        parent=info.parent,
        kind=_KINDS[info.kind],
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        labels=info.labels,
    )


def _key(key: str, what: str = "key") -> str:
    if not key:
        raise InvalidArgument(f"snapshot {what} must not be empty")
    return key


class SnapshotsService(snapshots_pb2_grpc.SnapshotsServicer):
    def __init__(self, snapshotters: Snapshotters, publisher: Publisher) -> None:
        self._snapshotters = snapshotters
        self._publisher = publisher

    def _view(self, requested: str, context: grpc.ServicerContext) -> NamespacedSnapshotter:
        return self._snapshotters.view(requested, namespaces.current(), lease_of(context))

    def Prepare(
        self, request: pb.PrepareRequest, context: grpc.ServicerContext
    ) -> pb.PrepareResponse:
        sn = self._view(request.snapshotter, context)
        mounts = sn.prepare(_key(request.key), request.parent, dict(request.labels))
        self._publisher.publish(
            sn.namespace,
            topics.SNAPSHOT_PREPARE,
            events.SnapshotPrepare(snapshotter=sn.name, key=request.key, parent=request.parent),
        )
        return pb.PrepareResponse(mounts=[mount_pb(m) for m in mounts])

    def View(self, request: pb.ViewRequest, context: grpc.ServicerContext) -> pb.ViewResponse:
        sn = self._view(request.snapshotter, context)
        mounts = sn.view(_key(request.key), request.parent, dict(request.labels))
        return pb.ViewResponse(mounts=[mount_pb(m) for m in mounts])

    def Mounts(self, request: pb.MountsRequest, context: grpc.ServicerContext) -> pb.MountsResponse:
        sn = self._view(request.snapshotter, context)
        return pb.MountsResponse(mounts=[mount_pb(m) for m in sn.mounts(_key(request.key))])

    def Commit(self, request: pb.CommitRequest, context: grpc.ServicerContext) -> pb.CommitResponse:
        sn = self._view(request.snapshotter, context)
        sn.commit(_key(request.name, "name"), _key(request.key), dict(request.labels))
        self._publisher.publish(
            sn.namespace,
            topics.SNAPSHOT_COMMIT,
            events.SnapshotCommit(snapshotter=sn.name, key=request.key, name=request.name),
        )
        return pb.CommitResponse()

    def Remove(self, request: pb.RemoveRequest, context: grpc.ServicerContext) -> pb.RemoveResponse:
        sn = self._view(request.snapshotter, context)
        sn.remove(_key(request.key))
        self._publisher.publish(
            sn.namespace,
            topics.SNAPSHOT_REMOVE,
            events.SnapshotRemove(snapshotter=sn.name, key=request.key),
        )
        return pb.RemoveResponse()

    def Stat(self, request: pb.StatRequest, context: grpc.ServicerContext) -> pb.StatResponse:
        sn = self._view(request.snapshotter, context)
        return pb.StatResponse(info=info_pb(sn.stat(_key(request.key))))

    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.UpdateResponse:
        sn = self._view(request.snapshotter, context)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else None
        info = Info(
            name=_key(request.info.name, "name"),
            kind=Kind.COMMITTED,  # ignored: only labels change
            labels=dict(request.info.labels),
        )
        return pb.UpdateResponse(info=info_pb(sn.update(info, paths)))

    def List(
        self, request: pb.ListRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ListResponse]:
        sn = self._view(request.snapshotter, context)
        batch: list[pb.Info] = []
        for info in sn.walk(*request.filters):
            batch.append(info_pb(info))
            if len(batch) >= LIST_BATCH:
                yield pb.ListResponse(info=batch)
                batch = []
        if batch:
            yield pb.ListResponse(info=batch)

    def Usage(self, request: pb.UsageRequest, context: grpc.ServicerContext) -> pb.UsageResponse:
        sn = self._view(request.snapshotter, context)
        usage = sn.usage(_key(request.key))
        return pb.UsageResponse(size=usage.size, inodes=usage.inodes)

    def Cleanup(
        self, request: pb.CleanupRequest, context: grpc.ServicerContext
    ) -> pb.CleanupResponse:
        self._view(request.snapshotter, context).cleanup()
        return pb.CleanupResponse()


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    if deps.storage is None:
        return []  # a test server without storage
    snapshotters = deps.storage.snapshotters
    service = SnapshotsService(snapshotters, deps.exchange)
    snapshots_pb2_grpc.add_SnapshotsServicer_to_server(service, server)
    plugins = [
        PluginInfo(
            SNAPSHOTTER_PLUGIN,
            name,
            exports={"default": str(name == snapshotters.default).lower()},
        )
        for name in sorted(snapshotters.backends)
    ]
    plugins.append(
        PluginInfo(
            GRPC_PLUGIN, "snapshots", requires=(SNAPSHOTTER_PLUGIN, METADATA_PLUGIN, EVENT_PLUGIN)
        )
    )
    return plugins
