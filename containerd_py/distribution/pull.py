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
leaves nothing behind once the collector has run. A retry that succeeds drops the leases
the earlier attempts at the same reference kept (`PullLeases`).
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, BinaryIO

from containerd_py import errdefs
from containerd_py.content.store import ContentStore
from containerd_py.content.types import Info
from containerd_py.distribution.fetch import DEFAULT_CONCURRENCY, Fetcher
from containerd_py.distribution.progress import Progress
from containerd_py.distribution.remote import RemoteRepository
from containerd_py.distribution.workers import Cancelled
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
# How often an unpack waiting for a blob looks whether the transfer was cancelled.
CANCEL_POLL = 0.1

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


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    RETRYABLE = "retryable"  # a lost connection, a cancel, a crash: worth resuming
    FAILED = "failed"  # the registry's "no", or content that is wrong: start over


class PullLeases:
    """The leases of a daemon's pulls. A failed pull's lease may stay for the retry; the
    retry, once it succeeds, drops the leases earlier attempts at the same reference left
    (it has resumed them). Leases of pulls still running in this daemon are never dropped
    by another pull, whatever reference they are for."""

    def __init__(self, store: LeaseStore, gc: GCScheduler | None = None) -> None:
        self.store = store
        self.gc = gc
        self._lock = threading.Lock()
        self._active: set[tuple[str, str]] = set()

    def open(self, namespace: str, ref: str) -> str:
        expire = (datetime.now(UTC) + LEASE_TTL).strftime("%Y-%m-%dT%H:%M:%SZ")
        labels = {LABEL_GC_EXPIRE: expire, LABEL_PULL_REF: ref[:1000]}
        lease = self.store.create(namespace, f"pull-{secrets.token_hex(8)}", labels).id
        with self._lock:
            self._active.add((namespace, lease))
        return lease

    def close(self, namespace: str, lease: str, ref: str, outcome: Outcome) -> None:
        with self._lock:
            self._active.discard((namespace, lease))
        try:
            if outcome is Outcome.RETRYABLE and self.store.list_resources(namespace, lease):
                log.info(
                    "pull of %s failed: lease %s keeps what it fetched for a retry"
                    " (until it expires)",
                    ref,
                    lease,
                )
                return
            self.store.delete(namespace, lease)
            dropped = self._drop_earlier(namespace, ref) if outcome is Outcome.SUCCEEDED else 0
        except errdefs.PyContainerdError as e:  # the lease expires by itself anyway
            log.warning("cannot release pull lease %s: %s", lease, e)
            return
        if self.gc is not None and (outcome is Outcome.FAILED or dropped):
            self.gc.schedule()

    def _drop_earlier(self, namespace: str, ref: str) -> int:
        dropped = 0
        for lease in self.store.list(namespace):
            if lease.labels.get(LABEL_PULL_REF) != ref[:1000]:
                continue
            with self._lock:
                if (namespace, lease.id) in self._active:
                    continue
            try:
                self.store.delete(namespace, lease.id)
                dropped += 1
            except errdefs.NotFound:
                pass
        return dropped


class Arrivals:
    """The digests a fetch has stored so far, for an unpack that runs beside it."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self._cond = threading.Condition()
        self._stored: set[str] = set()
        self._closed = False

    def stored(self, digest: str) -> None:
        with self._cond:
            self._stored.add(digest)
            self._cond.notify_all()

    def close(self) -> None:
        """The fetch is over: whatever is not stored now never will be."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, digest: str) -> None:
        with self._cond:
            # The cancel is an Event that cannot wake this condition: look at it often.
            while not self._cond.wait_for(
                lambda: digest in self._stored or self._closed or self.cancel.is_set(),
                CANCEL_POLL,
            ):
                pass
            if digest not in self._stored and not self._closed:
                raise Cancelled("transfer cancelled")


class ArrivingContent:
    """The content store as the unpacker reads it during a pull: a blob is looked at only
    once the fetch has stored it (or has ended)."""

    def __init__(self, content: ContentStore, arrivals: Arrivals) -> None:
        self._content = content
        self._arrivals = arrivals

    def exists(self, digest: str) -> bool:
        self._arrivals.wait(digest)
        return self._content.exists(digest)

    def info(self, digest: str) -> Info:
        self._arrivals.wait(digest)
        return self._content.info(digest)

    def open(self, digest: str) -> BinaryIO:
        self._arrivals.wait(digest)
        return self._content.open(digest)

    def update_labels(
        self, digest: str, labels: Mapping[str, str], fieldpaths: Sequence[str] | None = None
    ) -> Info:
        return self._content.update_labels(digest, labels, fieldpaths)


class _Beside(threading.Thread):
    """Runs `fn` beside the caller; `result()` waits and raises its error. A failure
    cancels the transfer, so the fetch stops too."""

    def __init__(self, fn: Callable[[], None], cancel: threading.Event) -> None:
        super().__init__(name="unpack", daemon=True)
        self._fn = fn
        self._cancel = cancel
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as e:
            self._error = e
            self._cancel.set()

    def result(self) -> None:
        self.join()
        if self._error is not None:
            raise self._error

    def failed(self) -> bool:
        """Whether it ended with an error of its own (not a cancel from elsewhere)."""
        self.join()
        return self._error is not None and not isinstance(self._error, Cancelled)


class Puller:
    """Pulls images of one namespace; the repository comes per pull."""

    def __init__(
        self,
        namespace: str,
        content: ContentStore,
        leases: PullLeases,
        snapshotters: Snapshotters,
        record: Recorder,
        *,
        work_dir: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.content = content
        self.leases = leases
        self.snapshotters = snapshotters
        self.record = record
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
        lease = self.leases.open(ns, str(ref))
        outcome = Outcome.RETRYABLE  # until known: a KeyboardInterrupt, a crash
        try:
            content = self.content.with_namespace(ns, lease)
            wanted = list(options.platforms) or [host_platform()]
            matchers = None if options.all_platforms else [PlatformMatcher(p) for p in wanted]
            progress.set_status(f"fetching {root.digest}")
            arrivals = Arrivals(cancel)
            fetcher = Fetcher(
                content,
                repo,
                progress,
                cancel,
                concurrency=options.concurrency,
                on_stored=arrivals.stored,
            )
            unpacking: _Beside | None = None
            if options.unpack:
                # Layer by layer as they arrive, while the next ones download.
                arriving = ArrivingContent(content, arrivals)
                unpacking = _Beside(
                    lambda: self._unpack(arriving, snapshotter, lease, root, wanted, progress),
                    cancel,
                )
            try:
                manifests = fetcher.fetch(root, matchers)
            except Cancelled:
                arrivals.close()
                # Cancelled by the unpack's failure (a layer that does not match its diff
                # id): that is the error to report.
                if unpacking is not None and unpacking.failed():
                    unpacking.result()
                raise
            except BaseException:
                arrivals.close()
                if unpacking is not None:
                    unpacking.join()  # its error, a cancel, is moot next to the fetch's
                raise
            arrivals.close()
            if unpacking is not None:
                unpacking.result()
            image = self.record(ns, name, root, options.labels)
            progress.set_status(f"done {name}")
            outcome = Outcome.SUCCEEDED
            return PullResult(image, tuple(manifests))
        except errdefs.PyContainerdError as e:
            if not isinstance(e, errdefs.Unavailable):
                outcome = Outcome.FAILED
            raise
        finally:
            self.leases.close(ns, lease, str(ref), outcome)

    def _unpack(
        self,
        content: ContentStore | ArrivingContent,
        snapshotter: str,
        lease: str,
        root: Descriptor,
        platforms: Sequence[Platform],
        progress: Progress,
    ) -> None:
        unpacker = Unpacker(
            content,  # type: ignore[arg-type]
            self.snapshotters.view(snapshotter, self.namespace, lease),
            leases=self.leases.store,
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
