"""OCI descriptors and the media types whose blobs point at other blobs.

The collector and the image code walk from an image's target to everything under it; only
indexes and manifests name children, and their media type (from the descriptor that led to
them) says how to read them. Docker's v2 types and OCI's are both in use on registries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from containerd_py.content import digests
from containerd_py.images.mediatypes import (  # noqa: F401  (remotes and tests name them from here)
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)
from containerd_py.images.mediatypes import INDEXES as INDEX_TYPES
from containerd_py.images.mediatypes import MANIFESTS as MANIFEST_TYPES

DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

SCHEMA1_TYPES = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})
PARENT_TYPES = INDEX_TYPES | MANIFEST_TYPES | SCHEMA1_TYPES


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: object) -> Descriptor | None:
        """A descriptor from parsed JSON; None when it is not one (bad digest included)."""
        if not isinstance(value, dict):
            return None
        digest = value.get("digest")
        size = value.get("size", 0)
        media_type = value.get("mediaType", "")
        annotations = value.get("annotations") or {}
        if not digests.is_digest(digest) or not isinstance(size, int) or size < 0:
            return None
        if not isinstance(media_type, str) or not isinstance(annotations, dict):
            return None
        return cls(media_type, digest, size, {str(k): str(v) for k, v in annotations.items()})


def sniff_media_type(blob: bytes) -> str:
    """The media type a JSON index/manifest declares or implies; "" for anything else.

    For blobs reached without a descriptor (a lease, a gc.ref label): OCI allows manifests to
    omit mediaType, so the shape decides then.
    """
    try:
        doc = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(doc, dict):
        return ""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared in PARENT_TYPES:
        return declared
    if isinstance(doc.get("manifests"), list):
        return OCI_INDEX
    if isinstance(doc.get("layers"), list) and isinstance(doc.get("config"), dict):
        return OCI_MANIFEST
    if doc.get("schemaVersion") == 1 and isinstance(doc.get("fsLayers"), list):
        return DOCKER_MANIFEST_V1
    return ""


def children(media_type: str, blob: bytes) -> list[Descriptor]:
    """The descriptors an index or manifest points at (containerd `images.Children`).

    Anything unparsable yields no children: a foreign or truncated blob must not stop a
    collection, and keeping less is the collector's problem to log, not to crash on.
    """
    if media_type not in PARENT_TYPES:
        return []
    try:
        doc = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(doc, dict):
        return []

    def items(key: str) -> list[object]:
        value = doc.get(key)
        return value if isinstance(value, list) else []

    # As containerd, a manifest's `subject` is not a child: keeping a signature or other
    # referrer must not pin the image it refers to.
    found: list[object] = []
    if media_type in INDEX_TYPES:
        found.extend(items("manifests"))
    elif media_type in MANIFEST_TYPES:
        found.append(doc.get("config"))
        found.extend(items("layers"))
    else:  # schema 1 names layers by blobSum only
        for layer in items("fsLayers"):
            if isinstance(layer, dict):
                found.append({"digest": layer.get("blobSum"), "size": 0})
    out = []
    for item in found:
        d = Descriptor.from_json(item)
        if d is not None:
            out.append(d)
    return out
