"""Garbage collection: mark what is reachable from the roots, sweep the rest.

Roots, per namespace (containerd `core/metadata/gc.go`):

  - images, unless their `containerd.io/gc.expire` label has passed;
  - containers: their rootfs snapshot (snapshotter, snapshot_key) and their image;
  - leases that have not expired: every resource they list (content, ingests, images,
    snapshots/<snapshotter>); a lease labelled `containerd.io/gc.flat` holds only those
    objects, not what they reference;
  - content and snapshots labelled `containerd.io/gc.root`, or with a
    `containerd.io/gc.expire` still in the future.

References followed from a reached object:

  - an image's target descriptor;
  - an index's manifests, a manifest's config and layers (the blob is parsed as JSON; the
    media type comes from the descriptor that led there, Docker and OCI alike, or from the
    blob itself when it was reached by a label or a lease);
  - labels on images, containers, content and snapshots: `containerd.io/gc.ref.content`
    (optionally `.<name>` or `/<name>`) -> a digest, `containerd.io/gc.ref.snapshot.<snapshotter>`
    (optionally `/<name>`) -> a snapshot key, `containerd.io/gc.ref.image[.<name>]` -> an image;
  - a snapshot's parent.

Sweep: expired leases and images are deleted; content records nothing reaches are dropped,
and a blob no namespace records any more is deleted from disk; unreachable snapshots are
removed children first (a reached snapshot keeps its whole parent chain); backend snapshots
no record owns (left by a crash) are removed; ingests nobody leases that have not been
written for `ingest_max_age` are dropped. The whole run holds the database's GC lock
exclusively, so no mutation interleaves with it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from containerd_py.content import digests
from containerd_py.content.descriptor import (
    PARENT_TYPES,
    Descriptor,
    children,
    sniff_media_type,
)
from containerd_py.content.store import BlobStore
from containerd_py.errdefs import NotFound
from containerd_py.metadata.common import (
    DECODE_ERRORS,
    from_datetime,
    load_labels,
    now_ns,
    parse_expire,
)
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.leases import CONTENT, IMAGES, INGESTS, SNAPSHOTS_PREFIX
from containerd_py.metadata.snapshots import records
from containerd_py.snapshots.snapshotter import Snapshotter

log = logging.getLogger(__name__)

LABEL_ROOT = "containerd.io/gc.root"
LABEL_FLAT = "containerd.io/gc.flat"
LABEL_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
LABEL_REF_IMAGE = "containerd.io/gc.ref.image"

# Manifests and indexes are small; a "manifest" larger than this is not parsed.
MAX_MANIFEST = 8 << 20
# Blobs reached without a media type are sniffed only when this small.
MAX_SNIFF = 1 << 20

# Nodes: ("content", ns, digest) | ("snapshot", ns, snapshotter, key) | ("image", ns, name)
Node = tuple[str, ...]


@dataclass
class GCReport:
    content_deleted: int = 0  # blobs deleted from disk
    content_records_removed: int = 0  # namespace records dropped
    bytes_freed: int = 0
    snapshots_removed: int = 0
    orphan_snapshots_removed: int = 0  # backend snapshots no record owned
    leases_expired: int = 0
    images_expired: int = 0
    ingests_removed: int = 0
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0


def label_refs(namespace: str, labels: Mapping[str, str]) -> list[Node]:
    """The objects an object's gc.ref labels point at."""
    out: list[Node] = []
    for k, v in labels.items():
        if not v:
            continue
        if k.startswith(LABEL_REF_CONTENT):
            rest = k[len(LABEL_REF_CONTENT) :]
            if (not rest or rest[0] in "./") and digests.is_digest(v):
                out.append(("content", namespace, v))
        elif k.startswith(LABEL_REF_SNAPSHOT):
            snapshotter = k[len(LABEL_REF_SNAPSHOT) :].split("/", 1)[0]
            if snapshotter:
                out.append(("snapshot", namespace, snapshotter, v))
        elif k.startswith(LABEL_REF_IMAGE):
            rest = k[len(LABEL_REF_IMAGE) :]
            if not rest or rest[0] in "./":
                out.append(("image", namespace, v))
    return out


def _refs(namespace: str, labels_text: str | None) -> list[Node]:
    try:
        return label_refs(namespace, load_labels(labels_text))
    except DECODE_ERRORS:
        return []


def _depth(key: object, parent_of: Mapping) -> int:
    """How many ancestors a snapshot has: removal goes deepest first, children before parents."""
    n, seen = 0, set()
    while parent_of.get(key) and key not in seen:
        seen.add(key)
        key = parent_of[key]
        n += 1
    return n


def _unexpired(labels: Mapping[str, str], now: int) -> bool:
    exp = parse_expire(labels)
    return exp is not None and exp > now


class GarbageCollector:
    def __init__(
        self,
        db: MetadataDB,
        blobs: BlobStore,
        snapshotters: Mapping[str, Snapshotter] | None = None,
        *,
        ingest_max_age: timedelta | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.snapshotters = dict(snapshotters or {})
        self.ingest_max_age = ingest_max_age

    def collect(self) -> GCReport:
        started = time.monotonic()
        report = GCReport()
        with self.db.gc_lock.exclusive():
            now = now_ns()
            marked, kept_ingests, expired_leases, expired_images = self._mark(now)
            self._sweep_leases(expired_leases, expired_images, report)
            self._sweep_content(marked, report)
            self._sweep_snapshots(marked, report)
            self._sweep_ingests(kept_ingests, now, report)
        report.duration = time.monotonic() - started
        log.info("gc: %s", report)
        return report

    # -- mark -----------------------------------------------------------------------

    def _mark(
        self, now: int
    ) -> tuple[set[Node], set[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        c = self.db.conn()
        queue: deque[tuple[Node, str, bool]] = deque()  # (node, media type hint, flat)
        kept_ingests: set[tuple[str, str]] = set()
        expired_leases: list[tuple[str, str]] = []
        expired_images: list[tuple[str, str]] = []

        def root(node: Node, media_type: str = "", flat: bool = False) -> None:
            queue.append((node, media_type, flat))

        for ns, lid, labels_text, expire_at in c.execute(
            "SELECT namespace, id, labels, expire_at FROM leases"
        ).fetchall():
            try:
                labels = load_labels(labels_text)
            except DECODE_ERRORS:
                labels = {}
            exp = parse_expire(labels)
            if (expire_at is not None and expire_at <= now) or (exp is not None and exp <= now):
                expired_leases.append((ns, lid))
                continue
            flat = LABEL_FLAT in labels
            for rtype, rid in c.execute(
                "SELECT type, id FROM lease_resources WHERE namespace=? AND lease_id=?",
                (ns, lid),
            ).fetchall():
                if rtype == CONTENT:
                    root(("content", ns, rid), "", flat)
                elif rtype == IMAGES:
                    root(("image", ns, rid), "", flat)
                elif rtype == INGESTS:
                    kept_ingests.add((ns, rid))
                elif rtype.startswith(SNAPSHOTS_PREFIX):
                    root(("snapshot", ns, rtype[len(SNAPSHOTS_PREFIX) :], rid), "", flat)

        for ns, name, labels_text in c.execute(
            "SELECT namespace, name, labels FROM images"
        ).fetchall():
            try:
                labels = load_labels(labels_text)
            except DECODE_ERRORS:
                labels = {}
            exp = parse_expire(labels)
            if exp is not None and exp <= now:
                expired_images.append((ns, name))
            else:
                root(("image", ns, name))

        for ns, image, sn, skey, labels_text in c.execute(
            "SELECT namespace, image, snapshotter, snapshot_key, labels FROM containers"
        ).fetchall():
            if sn and skey:
                root(("snapshot", ns, sn, skey))
            if image:
                root(("image", ns, image))
            for ref in _refs(ns, labels_text):
                root(ref)

        for ns, digest, labels_text in c.execute(
            "SELECT namespace, digest, labels FROM content"
        ).fetchall():
            try:
                labels = load_labels(labels_text)
            except DECODE_ERRORS:
                continue
            if LABEL_ROOT in labels or _unexpired(labels, now):
                root(("content", ns, digest))

        snaps = {(r.namespace, r.snapshotter, r.key): r for r in records(c)}
        by_id = {r.id: r for r in snaps.values()}
        for r in snaps.values():
            if LABEL_ROOT in r.labels or _unexpired(r.labels, now):
                root(("snapshot", r.namespace, r.snapshotter, r.key))

        marked: set[Node] = set()
        expanded: set[Node] = set()  # references followed (not done for flat-leased nodes)
        parsed: set[tuple[str, str]] = set()  # blobs whose JSON was read for children
        while queue:
            node, media_type, flat = queue.popleft()
            kind, ns = node[0], node[1]
            if kind == "content":
                labels_row = c.execute(
                    "SELECT labels FROM content WHERE namespace=? AND digest=?", (ns, node[2])
                ).fetchone()
                if labels_row is None:
                    continue
                marked.add(node)
                if flat:
                    continue
                if node not in expanded:
                    expanded.add(node)
                    queue.extend((ref, "", False) for ref in _refs(ns, labels_row[0]))
                # Parsed once per blob, unless first reached without a type and now with one.
                if (ns, node[2]) not in parsed and (media_type in PARENT_TYPES or not media_type):
                    parsed.add((ns, node[2]))
                    for child in self._children(node[2], media_type):
                        queue.append((("content", ns, child.digest), child.media_type, False))
            elif kind == "snapshot":
                rec = snaps.get((ns, node[2], node[3]))
                if rec is None or node in expanded or (flat and node in marked):
                    continue
                marked.add(node)
                # A snapshot cannot exist without its parents, whatever holds it.
                parent = by_id.get(rec.parent_id) if rec.parent_id is not None else None
                if parent is not None:
                    pnode = ("snapshot", parent.namespace, parent.snapshotter, parent.key)
                    queue.append((pnode, "", flat))
                if not flat:
                    expanded.add(node)
                    queue.extend((ref, "", False) for ref in label_refs(ns, rec.labels))
            elif kind == "image":
                if node in expanded or (flat and node in marked):
                    continue
                row = c.execute(
                    "SELECT labels, target_media_type, target_digest FROM images"
                    " WHERE namespace=? AND name=?",
                    (ns, node[2]),
                ).fetchone()
                if row is None:
                    continue
                marked.add(node)
                if flat:
                    continue
                expanded.add(node)
                queue.append((("content", ns, row[2]), row[1], False))
                queue.extend((ref, "", False) for ref in _refs(ns, row[0]))
        # An expired image that something still references stays.
        expired_images = [(ns, n) for ns, n in expired_images if ("image", ns, n) not in marked]
        return marked, kept_ingests, expired_leases, expired_images

    def _children(self, digest: str, media_type: str) -> list[Descriptor]:
        """Descriptors named by a blob, if it is an index or manifest present on disk.

        Without a media type, small JSON blobs are sniffed (OCI lets manifests omit it).
        """
        if not digests.is_digest(digest):
            return []
        path = self.blobs.path(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        limit = MAX_MANIFEST if media_type in PARENT_TYPES else MAX_SNIFF
        if size > limit:
            if media_type:
                log.warning("gc: %s is too large for a %s, not parsed", digest, media_type)
            return []
        try:
            data = path.read_bytes()
        except OSError as e:
            log.warning("gc: cannot read %s: %s", digest, e)
            return []
        if not media_type:
            if data.lstrip()[:1] != b"{":
                return []
            media_type = sniff_media_type(data)
        return children(media_type, data)

    # -- sweep ----------------------------------------------------------------------

    def _sweep_leases(
        self,
        leases: list[tuple[str, str]],
        images: list[tuple[str, str]],
        report: GCReport,
    ) -> None:
        with self.db.transaction() as c:
            for ns, lid in leases:
                c.execute("DELETE FROM leases WHERE namespace=? AND id=?", (ns, lid))
                report.leases_expired += 1
            for ns, name in images:
                c.execute("DELETE FROM images WHERE namespace=? AND name=?", (ns, name))
                report.images_expired += 1

    def _sweep_content(self, marked: set[Node], report: GCReport) -> None:
        with self.db.transaction() as c:
            for ns, digest in c.execute("SELECT namespace, digest FROM content").fetchall():
                if ("content", ns, digest) not in marked:
                    c.execute("DELETE FROM content WHERE namespace=? AND digest=?", (ns, digest))
                    report.content_records_removed += 1
            held = {d for (d,) in c.execute("SELECT DISTINCT digest FROM content")}
            # Files go inside the transaction: nothing can adopt a blob meanwhile.
            for digest in list(self.blobs.digests()):
                if digest in held:
                    continue
                try:
                    report.bytes_freed += self.blobs.remove(digest)
                    report.content_deleted += 1
                except OSError as e:
                    report.errors.append(f"content {digest}: {e}")

    def _sweep_snapshots(self, marked: set[Node], report: GCReport) -> None:
        c = self.db.conn()
        all_records = records(c)
        unknown = {r.snapshotter for r in all_records} - set(self.snapshotters)
        for name in sorted(unknown):
            log.warning("gc: snapshotter %r is not loaded; its snapshots are left alone", name)
        parent_ids = {r.id: r.parent_id for r in all_records}

        dead = [
            r
            for r in all_records
            if r.snapshotter in self.snapshotters
            and ("snapshot", r.namespace, r.snapshotter, r.key) not in marked
        ]
        for r in sorted(dead, key=lambda r: _depth(r.id, parent_ids), reverse=True):
            backend = self.snapshotters[r.snapshotter]
            try:
                backend.remove(r.backend_key)
            except NotFound:
                pass
            except Exception as e:
                report.errors.append(f"snapshot {r.namespace}/{r.key}: {e}")
                continue
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM snapshots WHERE id=?", (r.id,))
                tx.execute(
                    "DELETE FROM lease_resources WHERE namespace=? AND type=? AND id=?",
                    (r.namespace, SNAPSHOTS_PREFIX + r.snapshotter, r.key),
                )
            report.snapshots_removed += 1

        owned: dict[str, set[str]] = {}
        for r in records(c):
            owned.setdefault(r.snapshotter, set()).add(r.backend_key)
        for name, backend in self.snapshotters.items():
            try:
                infos = list(backend.walk())
            except Exception as e:
                report.errors.append(f"snapshotter {name}: {e}")
                continue
            keep = owned.get(name, set())
            parent_of = {i.name: i.parent for i in infos}
            orphans = [i.name for i in infos if i.name not in keep]
            # An orphan that is the parent of an owned snapshot must stay (it never is,
            # unless records were edited by hand; be safe).
            needed = set()
            for k in keep:
                p = parent_of.get(k, "")
                while p and p not in needed:
                    needed.add(p)
                    p = parent_of.get(p, "")
            orphans.sort(key=lambda k: _depth(k, parent_of), reverse=True)
            for key in orphans:
                if key in needed:
                    continue
                try:
                    backend.remove(key)
                    report.orphan_snapshots_removed += 1
                    log.info("gc: removed orphan snapshot %r from %s", key, name)
                except NotFound:
                    pass
                except Exception as e:
                    report.errors.append(f"orphan snapshot {name}/{key}: {e}")

    def _sweep_ingests(self, kept: set[tuple[str, str]], now: int, report: GCReport) -> None:
        if self.ingest_max_age is None:
            return
        limit = now - int(self.ingest_max_age.total_seconds() * 1e9)
        for path, key in list(self.blobs.ingest_dirs()):
            ns, _, ref = key.partition("/")
            if (ns, ref) in kept:
                continue
            st = self.blobs.read_status(path, ref)
            if from_datetime(st.updated_at) > limit:
                continue
            try:
                fd = os.open(path / "data", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1
            try:
                if fd >= 0:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # a writer is on it right now
                shutil.rmtree(path, ignore_errors=True)
                report.ingests_removed += 1
            finally:
                if fd >= 0:
                    os.close(fd)


def collect(
    db: MetadataDB,
    blobs: BlobStore,
    snapshotters: Mapping[str, Snapshotter] | None = None,
    *,
    ingest_max_age: timedelta | None = None,
) -> GCReport:
    """One mark-and-sweep run; see the module docstring for what counts as reachable."""
    return GarbageCollector(db, blobs, snapshotters, ingest_max_age=ingest_max_age).collect()
