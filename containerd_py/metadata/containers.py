"""Container records: what to run (spec, runtime) and on what (image, snapshot), per namespace.

A container record is metadata only; its task (the running process) lives in the shim.
Field rules follow containerd: the id is an identifier, a spec and a runtime name are
required, a snapshot key needs its snapshotter, and the runtime and snapshotter cannot change
after creation.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from containerd_py import filters
from containerd_py.errdefs import AlreadyExists, Internal, InvalidArgument
from containerd_py.metadata.common import (
    DECODE_ERRORS,
    CorruptRow,
    apply_label_paths,
    dump_json,
    ensure_namespace,
    load_labels,
    not_found,
    now_ns,
    skip_corrupt,
    to_datetime,
    validate_identifier,
    validate_labels,
)
from containerd_py.metadata.db import MetadataDB


@dataclass(frozen=True, slots=True)
class TypedValue:
    """An opaque typed payload (protobuf's Any: a type URL and the encoded bytes)."""

    type_url: str
    value: bytes = b""

    def to_json(self) -> dict[str, str]:
        return {"type_url": self.type_url, "value": base64.b64encode(self.value).decode()}

    @classmethod
    def from_json(cls, doc: object) -> TypedValue:
        if not isinstance(doc, dict) or not isinstance(doc.get("type_url"), str):
            raise CorruptRow(f"not a typed value: {doc!r}")
        try:
            value = base64.b64decode(doc.get("value") or "", validate=True)
        except (ValueError, TypeError) as e:
            raise CorruptRow(f"typed value is not base64: {e}") from e
        return cls(doc["type_url"], value)


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    name: str
    options: TypedValue | None = None


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    runtime: RuntimeInfo
    spec: bytes | None = None  # the OCI runtime spec, JSON
    labels: dict[str, str] = field(default_factory=dict)
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    sandbox: str = ""
    extensions: dict[str, TypedValue] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


_COLUMNS = (
    "id, labels, image, runtime_name, runtime_options, spec, snapshotter, snapshot_key,"
    " sandbox, extensions, created_at, updated_at"
)
_MUTABLE = ("labels", "spec", "extensions", "image", "snapshotkey")


def _decode(row: tuple) -> Container:
    (cid, labels, image, rname, ropts, spec, snapshotter, skey, sandbox, ext, created, updated) = (
        row
    )
    try:
        options = TypedValue.from_json(json.loads(ropts)) if ropts else None
        ext_doc = json.loads(ext or "{}")
    except ValueError as e:
        raise CorruptRow(f"bad JSON: {e}") from e
    if not isinstance(ext_doc, dict):
        raise CorruptRow("extensions are not an object")
    if spec is not None and not isinstance(spec, bytes):
        spec = str(spec).encode()
    return Container(
        id=cid,
        runtime=RuntimeInfo(rname, options),
        spec=spec,
        labels=load_labels(labels),
        image=image or "",
        snapshotter=snapshotter or "",
        snapshot_key=skey or "",
        sandbox=sandbox or "",
        extensions={k: TypedValue.from_json(v) for k, v in ext_doc.items()},
        created_at=to_datetime(created),
        updated_at=to_datetime(updated),
    )


def _validate(c: Container) -> Container:
    validate_identifier("container id", c.id)
    validate_labels(c.labels)
    if not c.runtime.name:
        raise InvalidArgument(f"container {c.id!r}: runtime name must be set")
    if not c.spec:
        raise InvalidArgument(f"container {c.id!r}: spec must be set")
    if c.snapshot_key and not c.snapshotter:
        raise InvalidArgument(f"container {c.id!r}: snapshot key needs a snapshotter")
    for name in c.extensions:
        if not name:
            raise InvalidArgument(f"container {c.id!r}: extension names must not be empty")
    return c


def _params(c: Container) -> tuple:
    return (
        dump_json(c.labels),
        c.image,
        c.runtime.name,
        dump_json(c.runtime.options.to_json()) if c.runtime.options else None,
        c.spec,
        c.snapshotter,
        c.snapshot_key,
        c.sandbox,
        dump_json({k: v.to_json() for k, v in c.extensions.items()}),
    )


def _adaptor(c: Container) -> filters.Adaptor:
    fields = {
        "id": c.id,
        "image": c.image,
        "runtime": {"name": c.runtime.name},
        "snapshotter": c.snapshotter,
        "snapshotkey": c.snapshot_key,
        "sandbox": c.sandbox,
    }
    return filters.adapt(fields, c.labels)


class ContainerStore:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    def get(self, namespace: str, container_id: str) -> Container:
        return self._get(self.db.conn(), namespace, container_id)

    def list(self, namespace: str, *filter_strings: str) -> list[Container]:
        flt = filters.parse(*filter_strings)
        out = []
        rows = self.db.conn().execute(
            f"SELECT {_COLUMNS} FROM containers WHERE namespace=? ORDER BY id", (namespace,)
        )
        for row in rows:
            try:
                ctr = _decode(row)
            except DECODE_ERRORS as e:
                skip_corrupt("container", (namespace, row[0]), e)
                continue
            if flt.match(_adaptor(ctr)):
                out.append(ctr)
        return out

    def create(self, namespace: str, container: Container) -> Container:
        _validate(container)
        t = now_ns()
        with self.db.transaction() as c:
            ensure_namespace(c, namespace)
            try:
                c.execute(
                    f"INSERT INTO containers(namespace, {_COLUMNS})"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (namespace, container.id, *_params(container), t, t),
                )
            except sqlite3.IntegrityError as e:
                raise AlreadyExists(f"container {container.id!r} already exists") from e
            return self._get(c, namespace, container.id)

    def update(
        self, namespace: str, container: Container, fieldpaths: Sequence[str] | None = None
    ) -> Container:
        """Change the mutable fields: labels[.<key>], spec, extensions[.<name>], image,
        snapshotkey (all of them when no fieldpaths are given)."""
        with self.db.transaction() as c:
            cur = self._get(c, namespace, container.id)
            if container.runtime.name and container.runtime.name != cur.runtime.name:
                raise InvalidArgument(f"container {cur.id!r}: runtime name is immutable")
            if container.snapshotter and container.snapshotter != cur.snapshotter:
                raise InvalidArgument(f"container {cur.id!r}: snapshotter is immutable")
            new = cur
            for path in fieldpaths or _MUTABLE:
                if path == "labels" or path.startswith("labels."):
                    labels = apply_label_paths(new.labels, container.labels, [path])
                    new = replace(new, labels=labels or {})
                elif path == "extensions":
                    new = replace(new, extensions=dict(container.extensions))
                elif path.startswith("extensions."):
                    name = path[len("extensions.") :]
                    ext = dict(new.extensions)
                    if name in container.extensions:
                        ext[name] = container.extensions[name]
                    else:
                        ext.pop(name, None)
                    new = replace(new, extensions=ext)
                elif path == "spec":
                    new = replace(new, spec=container.spec)
                elif path == "image":
                    new = replace(new, image=container.image)
                elif path in ("snapshotkey", "snapshot_key"):
                    new = replace(new, snapshot_key=container.snapshot_key)
                else:
                    raise InvalidArgument(f"cannot update {path!r} field of container {cur.id!r}")
            _validate(new)
            c.execute(
                "UPDATE containers SET labels=?, image=?, runtime_name=?, runtime_options=?,"
                " spec=?, snapshotter=?, snapshot_key=?, sandbox=?, extensions=?, updated_at=?"
                " WHERE namespace=? AND id=?",
                (*_params(new), now_ns(), namespace, cur.id),
            )
            return self._get(c, namespace, cur.id)

    def delete(self, namespace: str, container_id: str) -> None:
        with self.db.transaction() as c:
            cur = c.execute(
                "DELETE FROM containers WHERE namespace=? AND id=?", (namespace, container_id)
            )
            if cur.rowcount == 0:
                raise not_found("container", namespace, container_id)

    @staticmethod
    def _get(c: sqlite3.Connection, namespace: str, container_id: str) -> Container:
        row = c.execute(
            f"SELECT {_COLUMNS} FROM containers WHERE namespace=? AND id=?",
            (namespace, container_id),
        ).fetchone()
        if row is None:
            raise not_found("container", namespace, container_id)
        try:
            return _decode(row)
        except DECODE_ERRORS as e:
            skip_corrupt("container", (namespace, container_id), e)
            raise Internal(f"container {container_id!r} has a corrupt record: {e}") from e
