"""The metadata database: one SQLite file holding every namespaced object of pycontainerd.

SQLite plays the part bbolt plays for containerd: transactions that span objects (a
container, its snapshot and its lease change together), unique names per namespace, and
the scans the garbage collector needs. Settings: WAL (readers never block the writer),
`foreign_keys=ON` (a resource cannot outlive its lease, a snapshot its parent),
`synchronous=FULL` (a committed change survives power loss: the daemon may be killed at any
moment). One connection per thread; writes go through `transaction()`.

Schema (version 1; every timestamp is integer nanoseconds since the epoch, UTC; every
`labels` column is a JSON object of string to string):

    namespaces      name TEXT PK, labels, created_at, updated_at
    containers      (namespace, id) PK, labels, image, runtime_name, runtime_options
                    (JSON {type_url, value: base64} or NULL), spec BLOB (JSON bytes),
                    snapshotter, snapshot_key, sandbox, extensions (JSON {name: {type_url,
                    value}}), created_at, updated_at
    images          (namespace, name) PK, labels, target_media_type, target_digest,
                    target_size, target_annotations (JSON), created_at, updated_at
    content         (namespace, digest) PK, size, labels, created_at, updated_at
                    -- which namespaces see which blob; the bytes live in the content store
                    -- under <root>/content/blobs/sha256/<hex>, shared by all namespaces
    leases          (namespace, id) PK, labels, created_at, expire_at (NULL = never)
    lease_resources (namespace, lease_id, type, id) PK, FK (namespace, lease_id) -> leases
                    ON DELETE CASCADE; type is "content", "ingests", "images" or
                    "snapshots/<snapshotter>"
    snapshots       id INTEGER PK AUTOINCREMENT, (namespace, snapshotter, key) UNIQUE,
                    backend_key UNIQUE per snapshotter ("<ns>/<id>/<key>"), parent_id FK ->
                    snapshots(id) (a parent cannot be deleted under its children), labels,
                    created_at, updated_at
                    -- ownership: the snapshotter backends are not namespaced; this maps a
                    -- namespace's key to the backend's key, as containerd's metadata does

Every object row's namespace references `namespaces(name)`, so a namespace with anything
left in it cannot be deleted, even by a buggy caller.

Migrations are an ordered list of `(version, fn)` applied in one exclusive transaction at
open, keyed on `PRAGMA user_version` (containerd `core/metadata/migrations.go`). A database
from a newer daemon is refused rather than guessed at.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from containerd_py.errdefs import FailedPrecondition, Internal, Unavailable

log = logging.getLogger(__name__)

Migration = tuple[int, Callable[[sqlite3.Connection], None]]


def run_script(c: sqlite3.Connection, script: str) -> None:
    """Statement by statement: `executescript` would COMMIT the migration's transaction."""
    stmt = ""
    for line in script.splitlines(keepends=True):
        stmt += line
        if sqlite3.complete_statement(stmt):
            c.execute(stmt)
            stmt = ""
    if stmt.strip():
        raise ValueError(f"incomplete SQL statement: {stmt.strip()[:60]}")


def _v1_initial(c: sqlite3.Connection) -> None:
    run_script(
        c,
        """
        CREATE TABLE namespaces (
            name TEXT PRIMARY KEY,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE TABLE containers (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            image TEXT NOT NULL DEFAULT '',
            runtime_name TEXT NOT NULL,
            runtime_options TEXT,
            spec BLOB,
            snapshotter TEXT NOT NULL DEFAULT '',
            snapshot_key TEXT NOT NULL DEFAULT '',
            sandbox TEXT NOT NULL DEFAULT '',
            extensions TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, id)
        );
        CREATE TABLE images (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            name TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            target_media_type TEXT NOT NULL,
            target_digest TEXT NOT NULL,
            target_size INTEGER NOT NULL,
            target_annotations TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, name)
        );
        CREATE TABLE content (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, digest)
        );
        CREATE INDEX content_by_digest ON content(digest);
        CREATE TABLE leases (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            expire_at INTEGER,
            PRIMARY KEY (namespace, id)
        );
        CREATE TABLE lease_resources (
            namespace TEXT NOT NULL,
            lease_id TEXT NOT NULL,
            type TEXT NOT NULL,
            id TEXT NOT NULL,
            PRIMARY KEY (namespace, lease_id, type, id),
            FOREIGN KEY (namespace, lease_id) REFERENCES leases(namespace, id)
                ON DELETE CASCADE
        );
        CREATE TABLE snapshots (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            snapshotter TEXT NOT NULL,
            key TEXT NOT NULL,
            backend_key TEXT NOT NULL,
            parent_id INTEGER REFERENCES snapshots(id),
            labels TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            UNIQUE (namespace, snapshotter, key),
            UNIQUE (snapshotter, backend_key)
        );
        CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
        """,
    )


MIGRATIONS: list[Migration] = [(1, _v1_initial)]


class GCLock:
    """Many mutators or one collector: a reader-writer lock, re-entrant per thread.

    Mutations that create objects nothing references yet (a committed blob, a prepared
    snapshot) hold the shared side until their row is written, so the collector, which holds
    the exclusive side for a whole mark and sweep, never sees them half-made. A thread that
    holds either side may take either side again (the collector calls the stores).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared: dict[int, int] = {}
        self._owner: int | None = None
        self._depth = 0
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner != me and me not in self._shared:
                # Writers first, so a busy daemon cannot starve the collector.
                while self._owner is not None or self._waiting:
                    self._cond.wait()
            self._shared[me] = self._shared.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                n = self._shared[me] - 1
                if n:
                    self._shared[me] = n
                else:
                    del self._shared[me]
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner != me:
                if me in self._shared:
                    raise RuntimeError("cannot upgrade a shared GC lock to exclusive")
                self._waiting += 1
                try:
                    while self._owner is not None or self._shared:
                        self._cond.wait()
                finally:
                    self._waiting -= 1
                self._owner = me
            self._depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._owner = None
                    self._cond.notify_all()


class MetadataDB:
    """The database file, its migrations, and per-thread connections."""

    def __init__(
        self, path: str | os.PathLike[str], migrations: Sequence[Migration] = MIGRATIONS
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.gc_lock = GCLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self._migrate(list(migrations))

    # -- connections -----------------------------------------------------------------

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; group writes with `transaction()`)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise Internal("metadata database is closed")
            try:
                # isolation_level=None: the module must not open transactions behind our
                # back; BEGIN IMMEDIATE below takes the write lock up front so two writers
                # never deadlock upgrading read locks.
                c = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                c.execute("PRAGMA journal_mode=WAL")
                c.execute("PRAGMA foreign_keys=ON")
                c.execute("PRAGMA synchronous=FULL")
            except sqlite3.DatabaseError as e:
                raise Internal(f"cannot open metadata database {self.path}: {e}") from e
            self._local.conn = c
            self._local.depth = 0
            with self._all_lock:
                self._all.append(c)
        return c

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls in the same thread join the outer one.

        Holds the shared side of the GC lock, so no collection runs in the middle of a change.
        """
        c = self.conn()
        with self.gc_lock.shared():
            if self._local.depth:
                self._local.depth += 1
                try:
                    yield c
                finally:
                    self._local.depth -= 1
                return
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                # Locked past the busy timeout: another process holds the file (a second
                # daemon on the same root?). Retryable, not a crash.
                raise Unavailable(f"metadata database {self.path} is busy: {e}") from e
            self._local.depth = 1
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            else:
                c.execute("COMMIT")
            finally:
                self._local.depth = 0

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    @property
    def version(self) -> int:
        return self.conn().execute("PRAGMA user_version").fetchone()[0]

    # -- migrations ------------------------------------------------------------------

    def _migrate(self, migrations: list[Migration]) -> None:
        versions = [v for v, _ in migrations]
        if versions != sorted(set(versions)) or (versions and versions[0] < 1):
            raise ValueError(f"migrations must have increasing versions >= 1: {versions}")
        latest = versions[-1] if versions else 0
        c = self.conn()
        try:
            c.execute("BEGIN EXCLUSIVE")
        except sqlite3.DatabaseError as e:
            raise Internal(f"cannot open metadata database {self.path}: {e}") from e
        try:
            current = c.execute("PRAGMA user_version").fetchone()[0]
            if current > latest:
                raise FailedPrecondition(
                    f"metadata database {self.path} has schema version {current}, newer than "
                    f"this daemon's {latest}: refusing to touch it"
                )
            for version, fn in migrations:
                if version <= current:
                    continue
                log.info("metadata: migrating %s to schema version %d", self.path, version)
                fn(c)
                # user_version lives in the file header and is written by this transaction,
                # so a migration and its version number commit or roll back together.
                c.execute(f"PRAGMA user_version = {int(version)}")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
