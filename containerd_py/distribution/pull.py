"""A pull as a whole: resolve, fetch under a lease, unpack, and only then the image record.

    resolve ref ──► lease ──► fetch (fetch.py) ──► unpack ──► record ──► drop lease
                      │                                                     ▲
                      └── failure: image record untouched ──────────────────┘ (see below)

The lease holds everything the pull stores or finds already stored (blobs, ingests,
snapshots) until the image record refers to it, so a collection running meanwhile cannot
take a layer between its commit and the record. Unpacking comes before the record: an
image whose layers do not apply (a diff id that does not match its config) is never
recorded.

When a pull fails, what happens to its lease depends on the failure:

| failure                                    | lease                    | a retry       |
|--------------------------------------------|--------------------------|---------------|
| the registry went away, the caller left,   | kept until it expires    | finds the     |
| the daemon was killed (nothing runs at all)| (`LEASE_TTL`), if it     | committed     |
|                                            | holds anything           | blobs and     |
|                                            |                          | resumes the   |
|                                            |                          | ingests       |
| anything else: no such tag, credentials    | dropped, collection      | starts over   |
| refused, digest mismatch, bad manifest     | scheduled                |               |

so that a lost connection costs only what was not yet transferred, and a refused pull
leaves nothing behind once the collector has run.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from containerd_py import errdefs
from containerd_py.content.store import ContentStore
from containerd_py.distribution.fetch import DEFAULT_CONCURRENCY, Fetcher
from containerd_py.distribution.progress import Progress
from containerd_py.distribution.remote import RemoteRepository
from containerd_py.images import mediatypes as mt
from containerd_py.images.manifest import Descriptor
from containerd_py.images.platforms import Platform, PlatformMatcher, host_platform
from containerd_py.images.reference import Reference
from containerd_py.metadata.common import LABEL_GC_EXPIRE
from containerd_py.metadata.leases import LeaseStore
from containerd_py.unpack import Unpacker

if TYPE_CHECKING:
    from containerd_py.gc_service import GCScheduler
    from containerd_py.metadata.images import Image
    from containerd_py.services.snapshots import Snapshotters

log = logging.getLogger(__name__)

# containerd's default for the leases its clients take around a pull.
LEASE_TTL = timedelta(hours=24)
LABEL_PULL_REF = "pycontainerd.io/pull.ref"

# Writes the image record (create, or update the target of an existing name) and
# publishes its event: the service's part, it owns the event types.
Recorder = Callable[[str, str, Descriptor, Mapping[str, str]], "Image"]


@dataclass(frozen=True, slots=True)
class PullOptions:
    platforms: tuple[Platform, ...] = ()  # none: the host's
    all_platforms: bool = False
    unpack: bool = True
    snapshotter: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = DEFAULT_CONCURRENCY


@dataclass(frozen=True, slots=True)
class PullResult:
    image: Image
    manifests: tuple[Descriptor, ...]


class Puller:
    """Pulls images of one namespace; the repository comes per pull."""

    def __init__(
        self,
        namespace: str,
        content: ContentStore,
        leases: LeaseStore,
        snapshotters: Snapshotters,
        record: Recorder,
        *,
        gc: GCScheduler | None = None,
        work_dir: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.content = content
        self.leases = leases
        self.snapshotters = snapshotters
        self.record = record
        self.gc = gc
        self.work_dir = work_dir

    def pull(
        self,
        ref: Reference,
        name: str,
        repo: RemoteRepository,
        options: PullOptions,
        progress: Progress,
        cancel: threading.Event,
    ) -> PullResult:
        """Pull `ref` from `repo` and record it as `name`."""
        ns = self.namespace
        snapshotter = self.snapshotters.name(options.snapshotter) if options.unpack else ""
        progress.set_status(f"resolving {ref}")
        root = repo.resolve(ref.digest or ref.tag or "latest")
        lease = self._lease(str(ref))
        keep = False
        try:
            content = self.content.with_namespace(ns, lease)
            wanted = list(options.platforms) or [host_platform()]
            matchers = None if options.all_platforms else [PlatformMatcher(p) for p in wanted]
            progress.set_status(f"fetching {root.digest}")
            fetcher = Fetcher(content, repo, progress, cancel, concurrency=options.concurrency)
            manifests = fetcher.fetch(root, matchers)
            if options.unpack:
                self._unpack(content, snapshotter, lease, root, wanted, progress)
            image = self.record(ns, name, root, options.labels)
            progress.set_status(f"done {name}")
            return PullResult(image, tuple(manifests))
        except BaseException as e:
            keep = isinstance(e, errdefs.Unavailable) or not isinstance(
                e, errdefs.PyContainerdError
            )
            raise
        finally:
            self._release(lease, keep)

    def _unpack(
        self,
        content: ContentStore,
        snapshotter: str,
        lease: str,
        root: Descriptor,
        platforms: Sequence[Platform],
        progress: Progress,
    ) -> None:
        unpacker = Unpacker(
            content,
            self.snapshotters.view(snapshotter, self.namespace, lease),
            leases=self.leases,
            work_dir=self.work_dir,
        )
        seen: set[str] = set()
        for platform in platforms:
            rootfs = unpacker.rootfs(root, platform)
            if rootfs.manifest.digest in seen or not rootfs.layers:
                continue
            seen.add(rootfs.manifest.digest)
            where = str(platform) if mt.is_index(root.media_type) else ""
            progress.set_status(f"unpacking {where} {rootfs.manifest.digest}".replace("  ", " "))
            unpacker.unpack(root, platform)

    def _lease(self, ref: str) -> str:
        expire = (datetime.now(UTC) + LEASE_TTL).strftime("%Y-%m-%dT%H:%M:%SZ")
        labels = {LABEL_GC_EXPIRE: expire, LABEL_PULL_REF: ref[:1000]}
        return self.leases.create(self.namespace, f"pull-{secrets.token_hex(8)}", labels).id

    def _release(self, lease: str, keep: bool) -> None:
        try:
            if keep and self.leases.list_resources(self.namespace, lease):
                log.info(
                    "pull failed: lease %s keeps what it fetched for a retry (until it expires)",
                    lease,
                )
                return
            self.leases.delete(self.namespace, lease)
        except errdefs.PyContainerdError as e:  # the lease expires by itself anyway
            log.warning("cannot release pull lease %s: %s", lease, e)
            return
        if self.gc is not None and not keep:
            self.gc.schedule()
