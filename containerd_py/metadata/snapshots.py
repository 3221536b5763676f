"""Snapshot ownership: a namespaced view over a snapshotter backend.

Backends (overlay, native) are not namespaced. As containerd's metadata snapshotter does,
each namespace's key is mapped to a backend key `<ns>/<id>/<key>` recorded in the
`snapshots` table, with its parent and labels; two namespaces may use the same key, and a
namespace only sees its own snapshots. The backend keeps kind and usage; labels live here
(the `containerd.io/snapshot/` ones are passed down too, for backends that act on them).

Every change records the row and calls the backend inside one database transaction: if the
backend fails, the row is rolled back; if the process dies after the backend acted but
before the commit, the backend holds a snapshot no row owns, which the collector removes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from containerd_py import filters
from containerd_py.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)
from containerd_py.metadata.common import (
    DECODE_ERRORS,
    apply_label_paths,
    dump_json,
    ensure_namespace,
    load_labels,
    now_ns,
    skip_corrupt,
    to_datetime,
    validate_labels,
)
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.leases import SNAPSHOTS_PREFIX, Resource, add_resource_in
from containerd_py.snapshots.base import adapt_info
from containerd_py.snapshots.mount import Mount
from containerd_py.snapshots.snapshotter import Info, Snapshotter, Usage

log = logging.getLogger(__name__)

INHERITED_LABEL_PREFIX = "containerd.io/snapshot/"


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    id: int
    namespace: str
    snapshotter: str
    key: str
    backend_key: str
    parent_id: int | None
    labels: dict[str, str]
    created_at: int
    updated_at: int


_COLUMNS = "id, namespace, snapshotter, key, backend_key, parent_id, labels, created_at, updated_at"


def _record(row: tuple) -> SnapshotRecord:
    sid, ns, sn, key, bkey, parent, labels, created, updated = row
    if not isinstance(created, int) or not isinstance(updated, int):
        raise TypeError("timestamps are not integers")
    return SnapshotRecord(sid, ns, sn, key, bkey, parent, load_labels(labels), created, updated)


def records(c: sqlite3.Connection, snapshotter: str | None = None) -> list[SnapshotRecord]:
    """Every decodable row (of one snapshotter, or all), across namespaces; for the collector."""
    sql = f"SELECT {_COLUMNS} FROM snapshots"
    rows = (
        c.execute(sql + " WHERE snapshotter=? ORDER BY id", (snapshotter,))
        if snapshotter is not None
        else c.execute(sql + " ORDER BY id")
    ).fetchall()
    out = []
    for row in rows:
        try:
            out.append(_record(row))
        except DECODE_ERRORS as e:
            skip_corrupt("snapshot", row[:4], e)
    return out


def inherited(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(INHERITED_LABEL_PREFIX)}


class NamespacedSnapshotter:
    """One snapshotter as one namespace sees it; implements the Snapshotter protocol."""

    def __init__(
        self,
        db: MetadataDB,
        name: str,
        backend: Snapshotter,
        namespace: str = "default",
        lease: str | None = None,
    ) -> None:
        self.db = db
        self.name = name
        self.backend = backend
        self.namespace = namespace
        self.lease = lease

    def with_namespace(self, namespace: str, lease: str | None = None) -> NamespacedSnapshotter:
        return NamespacedSnapshotter(self.db, self.name, self.backend, namespace, lease)

    # -- reads ----------------------------------------------------------------------

    def stat(self, key: str) -> Info:
        c = self.db.conn()
        return self._info(c, self._get(c, key))

    def usage(self, key: str) -> Usage:
        return self.backend.usage(self._get(self.db.conn(), key).backend_key)

    def mounts(self, key: str) -> list[Mount]:
        return self.backend.mounts(self._get(self.db.conn(), key).backend_key)

    def walk(self, *filter_strings: str) -> Iterator[Info]:
        flt = filters.parse(*filter_strings)
        c = self.db.conn()
        for rec in records(c, self.name):
            if rec.namespace != self.namespace:
                continue
            try:
                info = self._info(c, rec)
            except NotFound:
                log.warning("snapshot %r of %s is recorded but gone", rec.key, self.name)
                continue
            if flt.match(adapt_info(info)):
                yield info

    # -- changes --------------------------------------------------------------------

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(key, parent, labels, view=False)

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(key, parent, labels, view=True)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        labels = validate_labels(labels)
        with self.db.transaction() as c:
            rec = self._get(c, key)
            if self._find(c, name) is not None:
                raise AlreadyExists(f"snapshot {name!r} already exists")
            _, bkey = self._insert(c, name, rec.parent_id, labels)
            self.backend.commit(bkey, rec.backend_key, inherited(labels))
            c.execute("DELETE FROM snapshots WHERE id=?", (rec.id,))
            self._unlease(c, key)
            self._lease(c, name)

    def remove(self, key: str) -> None:
        with self.db.transaction() as c:
            rec = self._get(c, key)
            child = c.execute(
                "SELECT key FROM snapshots WHERE parent_id=? LIMIT 1", (rec.id,)
            ).fetchone()
            if child is not None:
                raise FailedPrecondition(
                    f"cannot remove snapshot {key!r}: {child[0]!r} is its child"
                )
            c.execute("DELETE FROM snapshots WHERE id=?", (rec.id,))
            self._unlease(c, key)
            try:
                self.backend.remove(rec.backend_key)
            except NotFound:
                log.info("snapshot %r was already gone from %s", key, self.name)

    def update(self, info: Info, fieldpaths: Sequence[str] | None = None) -> Info:
        """Only labels change: "labels" or "labels.<key>" (all labels when none given)."""
        labels = validate_labels(info.labels)
        with self.db.transaction() as c:
            rec = self._get(c, info.name)
            if fieldpaths:
                new = apply_label_paths(rec.labels, labels, fieldpaths)
                if new is None or any(
                    p != "labels" and not p.startswith("labels.") for p in fieldpaths
                ):
                    raise InvalidArgument(f"cannot update {list(fieldpaths)} of a snapshot")
            else:
                new = labels
            new = validate_labels(new)
            c.execute(
                "UPDATE snapshots SET labels=?, updated_at=? WHERE id=?",
                (dump_json(new), now_ns(), rec.id),
            )
            return self._info(c, self._get(c, info.name))

    def cleanup(self) -> None:
        self.backend.cleanup()

    def close(self) -> None:
        """The backend is shared by every namespace's view; its owner closes it."""

    # -- internals ------------------------------------------------------------------

    def _create(
        self, key: str, parent: str, labels: Mapping[str, str] | None, *, view: bool
    ) -> list[Mount]:
        labels = validate_labels(labels)
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        with self.db.transaction() as c:
            ensure_namespace(c, self.namespace)
            if self._find(c, key) is not None:
                raise AlreadyExists(f"snapshot {key!r} already exists")
            parent_rec = None
            if parent:
                parent_rec = self._find(c, parent)
                if parent_rec is None:
                    raise NotFound(f"parent snapshot {parent!r} does not exist")
            _, bkey = self._insert(c, key, parent_rec.id if parent_rec else None, labels)
            create = self.backend.view if view else self.backend.prepare
            mounts = create(bkey, parent_rec.backend_key if parent_rec else "", inherited(labels))
            self._lease(c, key)
            return mounts

    def _insert(
        self, c: sqlite3.Connection, key: str, parent_id: int | None, labels: Mapping[str, str]
    ) -> tuple[int, str]:
        t = now_ns()
        cur = c.execute(
            "INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent_id, labels,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
            (self.namespace, self.name, key, f"pending/{key}", parent_id, dump_json(labels), t, t),
        )
        sid = cur.lastrowid
        assert sid is not None
        bkey = f"{self.namespace}/{sid}/{key}"
        c.execute("UPDATE snapshots SET backend_key=? WHERE id=?", (bkey, sid))
        return sid, bkey

    def _find(self, c: sqlite3.Connection, key: str) -> SnapshotRecord | None:
        row = c.execute(
            f"SELECT {_COLUMNS} FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?",
            (self.namespace, self.name, key),
        ).fetchone()
        if row is None:
            return None
        try:
            return _record(row)
        except DECODE_ERRORS as e:
            raise Internal(f"snapshot {key!r} has a corrupt record: {e}") from e

    def _get(self, c: sqlite3.Connection, key: str) -> SnapshotRecord:
        rec = self._find(c, key)
        if rec is None:
            raise NotFound(
                f"snapshot {key!r} does not exist in {self.name} (namespace {self.namespace!r})"
            )
        return rec

    def _info(self, c: sqlite3.Connection, rec: SnapshotRecord) -> Info:
        binfo = self.backend.stat(rec.backend_key)
        parent = ""
        if rec.parent_id is not None:
            row = c.execute("SELECT key FROM snapshots WHERE id=?", (rec.parent_id,)).fetchone()
            parent = row[0] if row else ""
        return Info(
            name=rec.key,
            kind=binfo.kind,
            parent=parent,
            labels=rec.labels,
            created_at=to_datetime(rec.created_at),
            updated_at=to_datetime(rec.updated_at),
        )

    def _lease(self, c: sqlite3.Connection, key: str) -> None:
        if self.lease:
            add_resource_in(
                c, self.namespace, self.lease, Resource(key, SNAPSHOTS_PREFIX + self.name)
            )

    def _unlease(self, c: sqlite3.Connection, key: str) -> None:
        c.execute(
            "DELETE FROM lease_resources WHERE namespace=? AND type=? AND id=?",
            (self.namespace, SNAPSHOTS_PREFIX + self.name, key),
        )
