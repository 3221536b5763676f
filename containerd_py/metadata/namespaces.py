"""Namespaces: the tenants every other object belongs to ("default", "pydocker", "k8s.io").

A namespace is created by its first object (or explicitly, with labels) and can only be
deleted once it holds nothing: containerd answers FailedPrecondition and names what is left.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from containerd_py import filters
from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containerd_py.metadata.common import (
    DECODE_ERRORS,
    apply_label_paths,
    dump_json,
    load_labels,
    now_ns,
    skip_corrupt,
    to_datetime,
    validate_identifier,
    validate_labels,
)
from containerd_py.metadata.db import MetadataDB

# What a namespace may hold, by table, with the word used in the error message.
_CONTENTS = (
    ("containers", "containers"),
    ("images", "images"),
    ("content", "blobs"),
    ("leases", "leases"),
    ("snapshots", "snapshots"),
)


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _row(row: tuple) -> Namespace:
    name, labels, created, updated = row
    return Namespace(name, load_labels(labels), to_datetime(created), to_datetime(updated))


class NamespaceStore:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        validate_identifier("namespace", name)
        labels = validate_labels(labels)
        t = now_ns()
        with self.db.transaction() as c:
            try:
                c.execute(
                    "INSERT INTO namespaces(name, labels, created_at, updated_at) VALUES (?,?,?,?)",
                    (name, dump_json(labels), t, t),
                )
            except sqlite3.IntegrityError as e:
                raise AlreadyExists(f"namespace {name!r} already exists") from e
        return Namespace(name, labels, to_datetime(t), to_datetime(t))

    def get(self, name: str) -> Namespace:
        return self._get(self.db.conn(), name)

    def list(self, *filter_strings: str) -> list[Namespace]:
        flt = filters.parse(*filter_strings)
        out = []
        for row in self.db.conn().execute(
            "SELECT name, labels, created_at, updated_at FROM namespaces ORDER BY name"
        ):
            try:
                ns = _row(row)
            except DECODE_ERRORS as e:
                skip_corrupt("namespace", row[0], e)
                continue
            if flt.match(filters.adapt({"name": ns.name}, ns.labels)):
                out.append(ns)
        return out

    def update(
        self, name: str, labels: Mapping[str, str], fieldpaths: Sequence[str] | None = None
    ) -> Namespace:
        """Replace the labels, or with fieldpaths ("labels", "labels.<key>") edit some."""
        labels = validate_labels(labels)
        with self.db.transaction() as c:
            ns = self._get(c, name)
            new = apply_label_paths(ns.labels, labels, fieldpaths) if fieldpaths else dict(labels)
            if new is None:
                raise InvalidArgument(f"cannot update {list(fieldpaths or [])} of a namespace")
            c.execute(
                "UPDATE namespaces SET labels=?, updated_at=? WHERE name=?",
                (dump_json(validate_labels(new)), now_ns(), name),
            )
            return self._get(c, name)

    def set_label(self, name: str, key: str, value: str) -> Namespace:
        """Set one label; an empty value removes it (containerd's SetLabel)."""
        return self.update(name, {key: value} if value else {}, [f"labels.{key}"])

    def delete(self, name: str) -> None:
        with self.db.transaction() as c:
            self._get(c, name)
            left = [
                word
                for table, word in _CONTENTS
                if c.execute(f"SELECT 1 FROM {table} WHERE namespace=? LIMIT 1", (name,)).fetchone()
            ]
            if left:
                raise FailedPrecondition(
                    f"namespace {name!r} must be empty, but it still has {', '.join(left)}"
                )
            c.execute("DELETE FROM namespaces WHERE name=?", (name,))

    @staticmethod
    def _get(c: sqlite3.Connection, name: str) -> Namespace:
        row = c.execute(
            "SELECT name, labels, created_at, updated_at FROM namespaces WHERE name=?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"namespace {name!r} not found")
        try:
            return _row(row)
        except DECODE_ERRORS as e:
            skip_corrupt("namespace", name, e)
            # Still usable as a namespace: only its labels are lost.
            return Namespace(name)
