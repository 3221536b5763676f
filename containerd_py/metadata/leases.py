"""Leases: named holds that keep content, ingests, images and snapshots from collection.

A client opens a lease before a pull or an unpack; everything it writes under the lease
survives garbage collection until the lease is deleted or expires (its `expire_at`, or the
`containerd.io/gc.expire` label as containerd spells it).
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from containerd_py import filters
from containerd_py.content import digests
from containerd_py.errdefs import AlreadyExists, InvalidArgument, NotFound
from containerd_py.metadata.common import (
    DECODE_ERRORS,
    dump_json,
    ensure_namespace,
    from_datetime,
    load_labels,
    not_found,
    now_ns,
    parse_expire,
    skip_corrupt,
    to_datetime,
    validate_identifier,
    validate_labels,
)
from containerd_py.metadata.db import MetadataDB

CONTENT = "content"
INGESTS = "ingests"
IMAGES = "images"
SNAPSHOTS_PREFIX = "snapshots/"


@dataclass(frozen=True, slots=True)
class Resource:
    id: str
    type: str  # "content", "ingests", "images" or "snapshots/<snapshotter>"


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    expire_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        ends = [t for t in (self.expire_at, _label_expiry(self.labels)) if t is not None]
        return any(t <= now for t in ends)


def _label_expiry(labels: dict[str, str]) -> datetime | None:
    ns = parse_expire(labels)
    return to_datetime(ns) if ns is not None else None


def validate_resource(r: Resource) -> Resource:
    if not r.id:
        raise InvalidArgument("lease resource id must not be empty")
    snapshotter = r.type.removeprefix(SNAPSHOTS_PREFIX)
    if r.type == CONTENT:
        digests.validate(r.id)
    elif r.type not in (INGESTS, IMAGES) and (snapshotter == r.type or not snapshotter):
        raise InvalidArgument(f"unsupported lease resource type {r.type!r}")
    return r


def add_resource_in(c: sqlite3.Connection, namespace: str, lease_id: str, r: Resource) -> None:
    """Inside a caller's transaction: attach a resource to a lease, which must exist."""
    validate_resource(r)
    row = c.execute(
        "SELECT 1 FROM leases WHERE namespace=? AND id=?", (namespace, lease_id)
    ).fetchone()
    if row is None:
        raise not_found("lease", namespace, lease_id)
    c.execute(
        "INSERT OR IGNORE INTO lease_resources(namespace, lease_id, type, id) VALUES (?,?,?,?)",
        (namespace, lease_id, r.type, r.id),
    )


def _row_to_lease(row: sqlite3.Row | tuple) -> Lease:
    lease_id, labels, created, expire = row
    return Lease(
        id=lease_id,
        labels=load_labels(labels),
        created_at=to_datetime(created),
        expire_at=to_datetime(expire) if expire is not None else None,
    )


class LeaseStore:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    def create(
        self,
        namespace: str,
        lease_id: str | None = None,
        labels: dict[str, str] | None = None,
        expire_at: datetime | None = None,
    ) -> Lease:
        lease_id = lease_id or f"lease-{secrets.token_hex(8)}"
        validate_identifier("lease id", lease_id)
        labels = validate_labels(labels)
        t = now_ns()
        expire = from_datetime(expire_at) if expire_at is not None else None
        with self.db.transaction() as c:
            ensure_namespace(c, namespace)
            try:
                c.execute(
                    "INSERT INTO leases(namespace, id, labels, created_at, expire_at)"
                    " VALUES (?,?,?,?,?)",
                    (namespace, lease_id, dump_json(labels), t, expire),
                )
            except sqlite3.IntegrityError as e:
                raise AlreadyExists(f"lease {lease_id!r} already exists") from e
        return Lease(lease_id, labels, to_datetime(t), to_datetime(expire) if expire else None)

    def get(self, namespace: str, lease_id: str) -> Lease:
        row = (
            self.db.conn()
            .execute(
                "SELECT id, labels, created_at, expire_at FROM leases WHERE namespace=? AND id=?",
                (namespace, lease_id),
            )
            .fetchone()
        )
        if row is None:
            raise not_found("lease", namespace, lease_id)
        return _row_to_lease(row)

    def list(self, namespace: str, *filter_strings: str) -> list[Lease]:
        flt = filters.parse(*filter_strings)
        out = []
        rows = self.db.conn().execute(
            "SELECT id, labels, created_at, expire_at FROM leases WHERE namespace=? ORDER BY id",
            (namespace,),
        )
        for row in rows:
            try:
                lease = _row_to_lease(row)
            except DECODE_ERRORS as e:
                skip_corrupt("lease", (namespace, row[0]), e)
                continue
            if flt.match(filters.adapt({"id": lease.id}, lease.labels)):
                out.append(lease)
        return out

    def delete(self, namespace: str, lease_id: str) -> None:
        """Drop the lease and its resource list; what it held becomes collectible."""
        with self.db.transaction() as c:
            cur = c.execute("DELETE FROM leases WHERE namespace=? AND id=?", (namespace, lease_id))
            if cur.rowcount == 0:
                raise not_found("lease", namespace, lease_id)

    def add_resource(self, namespace: str, lease_id: str, resource: Resource) -> None:
        with self.db.transaction() as c:
            add_resource_in(c, namespace, lease_id, resource)

    def delete_resource(self, namespace: str, lease_id: str, resource: Resource) -> None:
        with self.db.transaction() as c:
            self._require(c, namespace, lease_id)
            c.execute(
                "DELETE FROM lease_resources WHERE namespace=? AND lease_id=? AND type=? AND id=?",
                (namespace, lease_id, resource.type, resource.id),
            )

    def list_resources(self, namespace: str, lease_id: str) -> list[Resource]:
        c = self.db.conn()
        self._require(c, namespace, lease_id)
        rows = c.execute(
            "SELECT id, type FROM lease_resources WHERE namespace=? AND lease_id=?"
            " ORDER BY type, id",
            (namespace, lease_id),
        )
        return [Resource(i, t) for i, t in rows]

    @staticmethod
    def _require(c: sqlite3.Connection, namespace: str, lease_id: str) -> None:
        if not c.execute(
            "SELECT 1 FROM leases WHERE namespace=? AND id=?", (namespace, lease_id)
        ).fetchone():
            raise NotFound(f"lease {lease_id!r} not found in namespace {namespace!r}")
