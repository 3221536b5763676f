"""Image records: a name pointing at a target descriptor (an index or a manifest), per namespace.

The record is the root the collector starts from: the target blob and everything its
manifests name stay while the image exists (see `gc.py`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from containerd_py import filters
from containerd_py.content import digests
from containerd_py.content.descriptor import Descriptor
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
    validate_labels,
)
from containerd_py.metadata.db import MetadataDB


@dataclass(frozen=True, slots=True)
class Image:
    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


_COLUMNS = (
    "name, labels, target_media_type, target_digest, target_size, target_annotations,"
    " created_at, updated_at"
)


def _decode(row: tuple) -> Image:
    name, labels, media_type, digest, size, annotations, created, updated = row
    if not digests.is_digest(digest):
        raise CorruptRow(f"bad target digest {digest!r}")
    if not isinstance(size, int) or size < 0:
        raise CorruptRow(f"bad target size {size!r}")
    try:
        ann = json.loads(annotations or "{}")
    except ValueError as e:
        raise CorruptRow(f"annotations are not JSON: {e}") from e
    if not isinstance(ann, dict):
        raise CorruptRow("annotations are not an object")
    return Image(
        name=name,
        target=Descriptor(media_type, digest, size, {str(k): str(v) for k, v in ann.items()}),
        labels=load_labels(labels),
        created_at=to_datetime(created),
        updated_at=to_datetime(updated),
    )


def _validate(image: Image) -> Image:
    if not isinstance(image.name, str) or not image.name.strip():
        raise InvalidArgument("image name must not be empty")
    validate_labels(image.labels)
    if not image.target.media_type:
        raise InvalidArgument(f"image {image.name!r}: target media type must be set")
    digests.validate(image.target.digest)
    if image.target.size < 0:
        raise InvalidArgument(f"image {image.name!r}: target size must not be negative")
    return image


def _params(image: Image) -> tuple:
    t = image.target
    return (
        dump_json(image.labels),
        t.media_type,
        t.digest,
        t.size,
        dump_json(dict(t.annotations)),
    )


def _adaptor(image: Image) -> filters.Adaptor:
    fields = {
        "name": image.name,
        "target": {"digest": image.target.digest, "mediatype": image.target.media_type},
    }
    return filters.adapt(fields, image.labels)


class ImageStore:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    def get(self, namespace: str, name: str) -> Image:
        return self._get(self.db.conn(), namespace, name)

    def list(self, namespace: str, *filter_strings: str) -> list[Image]:
        flt = filters.parse(*filter_strings)
        out = []
        rows = self.db.conn().execute(
            f"SELECT {_COLUMNS} FROM images WHERE namespace=? ORDER BY name", (namespace,)
        )
        for row in rows:
            try:
                image = _decode(row)
            except DECODE_ERRORS as e:
                skip_corrupt("image", (namespace, row[0]), e)
                continue
            if flt.match(_adaptor(image)):
                out.append(image)
        return out

    def create(self, namespace: str, image: Image) -> Image:
        _validate(image)
        t = now_ns()
        with self.db.transaction() as c:
            ensure_namespace(c, namespace)
            try:
                c.execute(
                    f"INSERT INTO images(namespace, {_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                    (namespace, image.name, *_params(image), t, t),
                )
            except sqlite3.IntegrityError as e:
                raise AlreadyExists(f"image {image.name!r} already exists") from e
            return self._get(c, namespace, image.name)

    def update(
        self, namespace: str, image: Image, fieldpaths: Sequence[str] | None = None
    ) -> Image:
        """Change labels[.<key>], target, annotations[.<key>] (labels and target when no
        fieldpaths are given)."""
        with self.db.transaction() as c:
            cur = self._get(c, namespace, image.name)
            new = cur
            for path in fieldpaths or ("labels", "target"):
                if path == "labels" or path.startswith("labels."):
                    labels = apply_label_paths(new.labels, image.labels, [path])
                    new = replace(new, labels=labels or {})
                elif path == "target":
                    new = replace(new, target=image.target)
                elif path == "annotations":
                    new = replace(
                        new, target=replace(new.target, annotations=dict(image.target.annotations))
                    )
                elif path.startswith("annotations."):
                    key = path[len("annotations.") :]
                    ann = dict(new.target.annotations)
                    if key in image.target.annotations:
                        ann[key] = image.target.annotations[key]
                    else:
                        ann.pop(key, None)
                    new = replace(new, target=replace(new.target, annotations=ann))
                else:
                    raise InvalidArgument(f"cannot update {path!r} field of image {cur.name!r}")
            _validate(new)
            c.execute(
                "UPDATE images SET labels=?, target_media_type=?, target_digest=?, target_size=?,"
                " target_annotations=?, updated_at=? WHERE namespace=? AND name=?",
                (*_params(new), now_ns(), namespace, cur.name),
            )
            return self._get(c, namespace, cur.name)

    def delete(self, namespace: str, name: str) -> None:
        """Drop the record; the blobs it pinned become collectible."""
        with self.db.transaction() as c:
            cur = c.execute("DELETE FROM images WHERE namespace=? AND name=?", (namespace, name))
            if cur.rowcount == 0:
                raise not_found("image", namespace, name)

    @staticmethod
    def _get(c: sqlite3.Connection, namespace: str, name: str) -> Image:
        row = c.execute(
            f"SELECT {_COLUMNS} FROM images WHERE namespace=? AND name=?", (namespace, name)
        ).fetchone()
        if row is None:
            raise not_found("image", namespace, name)
        try:
            return _decode(row)
        except DECODE_ERRORS as e:
            skip_corrupt("image", (namespace, name), e)
            raise Internal(f"image {name!r} has a corrupt record: {e}") from e
