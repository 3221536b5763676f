"""A snapshotter's own bookkeeping: which snapshots exist, their kind, parent, labels, usage.

Each backend keeps a small SQLite file in its root (`<root>/metadata.db`), as containerd's
snapshotters keep their own bolt file (`core/snapshots/storage`): the backends are not
namespaced and know nothing of the daemon's metadata database. The numeric id names the
snapshot's directory (`<root>/snapshots/<id>`) and stays the same across commit; once
committed to the database it is never handed out again (AUTOINCREMENT).

Schema (version 1):

    snapshots  id INTEGER PK AUTOINCREMENT, key TEXT UNIQUE, kind ('View' | 'Active' |
               'Committed'), parent_id -> snapshots(id) (a parent cannot be removed under a
               child), labels (JSON), created_at, updated_at (ns), size, inodes (the usage
               recorded at commit; a committed tree never changes)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

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
    load_labels,
    now_ns,
    skip_corrupt,
    to_datetime,
    validate_labels,
)
from containerd_py.metadata.db import MetadataDB, Migration, run_script
from containerd_py.snapshots.snapshotter import Info, Kind, Usage


def _v1(c: sqlite3.Connection) -> None:
    run_script(
        c,
        """
        CREATE TABLE snapshots (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('View', 'Active', 'Committed')),
            parent_id INTEGER REFERENCES snapshots(id),
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            size INTEGER NOT NULL DEFAULT 0,
            inodes INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
        """,
    )


MIGRATIONS: list[Migration] = [(1, _v1)]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a backend needs to build mounts: its id and its parents' ids, nearest first."""

    id: int
    key: str
    kind: Kind
    parent_ids: tuple[int, ...]


_INFO_SQL = (
    "SELECT s.key, s.kind, p.key, s.labels, s.created_at, s.updated_at"
    " FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id"
)


def _info(row: tuple) -> Info:
    key, kind, parent, labels, created, updated = row
    return Info(
        name=key,
        kind=Kind(kind),
        parent=parent or "",
        labels=load_labels(labels),
        created_at=to_datetime(created),
        updated_at=to_datetime(updated),
    )


class MetaStore:
    def __init__(self, path: str) -> None:
        self.db = MetadataDB(path, MIGRATIONS)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.db.transaction()

    def conn(self) -> sqlite3.Connection:
        return self.db.conn()

    def close(self) -> None:
        self.db.close()

    # -- reads ----------------------------------------------------------------------

    def info(self, c: sqlite3.Connection, key: str) -> Info:
        row = c.execute(f"{_INFO_SQL} WHERE s.key=?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r} does not exist")
        try:
            return _info(row)
        except DECODE_ERRORS as e:
            raise Internal(f"snapshot {key!r} has a corrupt record: {e}") from e

    def infos(self, c: sqlite3.Connection) -> list[Info]:
        out = []
        for row in c.execute(f"{_INFO_SQL} ORDER BY s.id").fetchall():
            try:
                out.append(_info(row))
            except DECODE_ERRORS as e:
                skip_corrupt("snapshot", row[0], e)
        return out

    def snapshot(self, c: sqlite3.Connection, key: str) -> Snapshot:
        row = c.execute("SELECT id, kind, parent_id FROM snapshots WHERE key=?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r} does not exist")
        sid, kind, parent = row
        parents = []
        seen = {sid}
        while parent is not None:
            if parent in seen:  # only a hand-edited database can loop
                raise Internal(f"snapshot {key!r}: parent chain loops")
            seen.add(parent)
            parents.append(parent)
            r = c.execute("SELECT parent_id FROM snapshots WHERE id=?", (parent,)).fetchone()
            parent = r[0] if r else None
        try:
            return Snapshot(sid, key, Kind(kind), tuple(parents))
        except ValueError as e:
            raise Internal(f"snapshot {key!r} has a corrupt record: {e}") from e

    def usage(self, c: sqlite3.Connection, key: str) -> Usage:
        row = c.execute("SELECT size, inodes FROM snapshots WHERE key=?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r} does not exist")
        return Usage(row[0], row[1])

    def ids(self, c: sqlite3.Connection) -> set[int]:
        return {i for (i,) in c.execute("SELECT id FROM snapshots")}

    # -- writes (inside the caller's transaction) ------------------------------------

    def create(
        self,
        c: sqlite3.Connection,
        kind: Kind,
        key: str,
        parent: str,
        labels: Mapping[str, str] | None,
    ) -> Snapshot:
        if kind is Kind.COMMITTED:
            raise InvalidArgument("snapshots are created active or view, then committed")
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        labels = validate_labels(labels)
        parent_id = None
        if parent:
            row = c.execute("SELECT id, kind FROM snapshots WHERE key=?", (parent,)).fetchone()
            if row is None:
                raise NotFound(f"parent snapshot {parent!r} does not exist")
            if row[1] != Kind.COMMITTED.value:
                raise InvalidArgument(f"parent {parent!r} is not a committed snapshot")
            parent_id = row[0]
        t = now_ns()
        try:
            c.execute(
                "INSERT INTO snapshots(key, kind, parent_id, labels, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?)",
                (key, kind.value, parent_id, dump_json(labels), t, t),
            )
        except sqlite3.IntegrityError as e:
            raise AlreadyExists(f"snapshot {key!r} already exists") from e
        return self.snapshot(c, key)

    def commit(
        self,
        c: sqlite3.Connection,
        key: str,
        name: str,
        usage: Usage,
        labels: Mapping[str, str] | None,
    ) -> int:
        """Turn the active `key` into the committed `name`; returns the (unchanged) id."""
        if not name:
            raise InvalidArgument("snapshot name must not be empty")
        s = self.snapshot(c, key)
        if s.kind is not Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key!r} is {s.kind.value}, not Active")
        if c.execute("SELECT 1 FROM snapshots WHERE key=?", (name,)).fetchone():
            raise AlreadyExists(f"snapshot {name!r} already exists")
        # As containerd: the committed snapshot gets the labels given, not the active's.
        c.execute(
            "UPDATE snapshots SET key=?, kind=?, size=?, inodes=?, labels=?, updated_at=?"
            " WHERE id=?",
            (
                name,
                Kind.COMMITTED.value,
                usage.size,
                usage.inodes,
                dump_json(validate_labels(labels)),
                now_ns(),
                s.id,
            ),
        )
        return s.id

    def remove(self, c: sqlite3.Connection, key: str) -> Snapshot:
        s = self.snapshot(c, key)
        child = c.execute("SELECT key FROM snapshots WHERE parent_id=? LIMIT 1", (s.id,)).fetchone()
        if child is not None:
            raise FailedPrecondition(f"cannot remove snapshot {key!r}: {child[0]!r} is its child")
        c.execute("DELETE FROM snapshots WHERE id=?", (s.id,))
        return s

    def update(self, c: sqlite3.Connection, info: Info, fieldpaths: Sequence[str] | None) -> Info:
        """Only labels change: "labels" or "labels.<key>" (all labels when none given)."""
        cur = self.info(c, info.name)
        labels = validate_labels(info.labels)
        if fieldpaths:
            new = apply_label_paths(cur.labels, labels, fieldpaths)
            if new is None or any(
                p != "labels" and not p.startswith("labels.") for p in fieldpaths
            ):
                raise InvalidArgument(f"cannot update {list(fieldpaths)} of a snapshot")
        else:
            new = labels
        c.execute(
            "UPDATE snapshots SET labels=?, updated_at=? WHERE key=?",
            (dump_json(validate_labels(new)), now_ns(), info.name),
        )
        return self.info(c, info.name)
