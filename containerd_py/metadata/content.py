"""Which namespace sees which blob, and that namespace's labels on it.

The bytes are stored once under the content store's root and shared; each namespace has
its own row (size, labels, times), as containerd's metadata content store keeps a bucket
per namespace. The content store calls these inside its own transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping

from containerd_py.content import digests
from containerd_py.content.types import Info
from containerd_py.metadata.common import (
    DECODE_ERRORS,
    CorruptRow,
    dump_json,
    ensure_namespace,
    load_labels,
    now_ns,
    skip_corrupt,
    to_datetime,
)

_COLUMNS = "digest, size, labels, created_at, updated_at"


def _info(row: tuple) -> Info:
    digest, size, labels, created, updated = row
    if not digests.is_digest(digest):
        raise CorruptRow(f"bad digest {digest!r}")
    if not isinstance(size, int) or size < 0:
        raise CorruptRow(f"bad size {size!r}")
    return Info(digest, size, to_datetime(created), to_datetime(updated), load_labels(labels))


class ContentRecords:
    """SQL for the `content` table; every method takes the caller's connection."""

    @staticmethod
    def get(c: sqlite3.Connection, namespace: str, digest: str) -> Info | None:
        row = c.execute(
            f"SELECT {_COLUMNS} FROM content WHERE namespace=? AND digest=?",
            (namespace, digest),
        ).fetchone()
        return _info(row) if row else None

    @staticmethod
    def insert(
        c: sqlite3.Connection, namespace: str, digest: str, size: int, labels: Mapping[str, str]
    ) -> Info:
        ensure_namespace(c, namespace)
        t = now_ns()
        c.execute(
            "INSERT INTO content(namespace, digest, size, labels, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            (namespace, digest, size, dump_json(dict(labels)), t, t),
        )
        return Info(digest, size, to_datetime(t), to_datetime(t), dict(labels))

    @staticmethod
    def set_labels(
        c: sqlite3.Connection, namespace: str, digest: str, labels: Mapping[str, str]
    ) -> None:
        c.execute(
            "UPDATE content SET labels=?, updated_at=? WHERE namespace=? AND digest=?",
            (dump_json(dict(labels)), now_ns(), namespace, digest),
        )

    @staticmethod
    def delete(c: sqlite3.Connection, namespace: str, digest: str) -> bool:
        cur = c.execute("DELETE FROM content WHERE namespace=? AND digest=?", (namespace, digest))
        return cur.rowcount > 0

    @staticmethod
    def holders(c: sqlite3.Connection, digest: str) -> int:
        """How many namespaces still have the blob."""
        return c.execute("SELECT COUNT(*) FROM content WHERE digest=?", (digest,)).fetchone()[0]

    @staticmethod
    def all_digests(c: sqlite3.Connection) -> set[str]:
        return {d for (d,) in c.execute("SELECT DISTINCT digest FROM content")}

    @staticmethod
    def iter(c: sqlite3.Connection, namespace: str) -> Iterator[Info]:
        """Rows of one namespace; a corrupt row is logged and skipped."""
        rows = c.execute(
            f"SELECT {_COLUMNS} FROM content WHERE namespace=? ORDER BY digest", (namespace,)
        ).fetchall()
        for row in rows:
            try:
                yield _info(row)
            except DECODE_ERRORS as e:
                skip_corrupt("content", (namespace, row[0]), e)
