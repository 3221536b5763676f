"""Descriptors, indexes (manifest lists), manifests and image configs: parsing, the
children of a blob (what an import copies and what GC must keep), and platform selection.

Parsing checks shape, not taste: required fields with the right JSON types, digests we can
verify, sizes that are non-negative integers, and a `mediaType` inside the document that
agrees with the descriptor that pointed at it (a registry that serves a manifest under an
index's descriptor is lying to one of the two readers). Unknown fields are kept in `raw`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from containerd_py.images import mediatypes as mt
from containerd_py.images.digests import validate_digest
from containerd_py.images.errors import (
    InvalidManifestError,
    PlatformNotFoundError,
    UnsupportedMediaTypeError,
)
from containerd_py.images.platforms import Platform, PlatformMatcher

# Manifests and indexes are read whole into memory: bound them, as registries do (4 MiB).
MAX_MANIFEST_SIZE = 4 << 20
# Configs carry the build history and can be larger.
MAX_CONFIG_SIZE = 64 << 20

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str = ""

    @classmethod
    def from_dict(cls, data: Any, where: str = "descriptor") -> Descriptor:
        if not isinstance(data, Mapping):
            raise InvalidManifestError(f"{where}: must be an object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidManifestError(f"{where}: mediaType must be a non-empty string")
        if not isinstance(digest, str):
            raise InvalidManifestError(f"{where}: digest must be a string")
        validate_digest(digest)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifestError(f"{where}: size must be a non-negative integer")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise InvalidManifestError(f"{where}: annotations must map strings to strings")
        platform = data.get("platform")
        urls = data.get("urls") or ()
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise InvalidManifestError(f"{where}: urls must be a list of strings")
        artifact_type = data.get("artifactType") or ""
        return cls(
            media_type,
            digest,
            size,
            dict(annotations),
            None if platform is None else Platform.from_dict(platform),
            tuple(urls),
            str(artifact_type),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    def with_annotations(self, extra: Mapping[str, str]) -> Descriptor:
        merged = {**self.annotations, **extra}
        return Descriptor(
            self.media_type,
            self.digest,
            self.size,
            merged,
            self.platform,
            self.urls,
            self.artifact_type,
        )


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageConfig:
    os: str
    architecture: str
    variant: str
    diff_ids: tuple[str, ...]
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidManifestError(f"{what}: not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidManifestError(f"{what}: must be a JSON object")
    return doc


def _check_schema(doc: Mapping[str, Any], what: str) -> None:
    if "fsLayers" in doc or doc.get("schemaVersion") == 1:
        raise UnsupportedMediaTypeError(f"{what}: Docker schema 1 manifests are not supported")
    if doc.get("schemaVersion") != 2:
        raise InvalidManifestError(f"{what}: schemaVersion must be 2")


def _document_type(doc: Mapping[str, Any], declared: str | None, kinds: frozenset[str]) -> str:
    inner = doc.get("mediaType")
    if inner is not None and not isinstance(inner, str):
        raise InvalidManifestError("mediaType must be a string")
    if declared is not None and inner is not None and mt.base(inner) != mt.base(declared):
        raise InvalidManifestError(
            f"document says mediaType {inner}, but its descriptor says {declared}"
        )
    chosen = inner or declared
    if chosen is None:
        chosen = next(iter(sorted(kinds)))
    if mt.base(chosen) not in kinds:
        raise InvalidManifestError(f"mediaType {chosen} is not one of {sorted(kinds)}")
    return chosen


def _annotations(doc: Mapping[str, Any], what: str) -> dict[str, str]:
    ann = doc.get("annotations") or {}
    if not isinstance(ann, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ann.items()
    ):
        raise InvalidManifestError(f"{what}: annotations must map strings to strings")
    return dict(ann)


def parse_index(data: bytes, media_type: str | None = None) -> Index:
    """An OCI index or a Docker manifest list."""
    doc = _load(data, "index")
    _check_schema(doc, "index")
    kind = _document_type(doc, media_type, mt.INDEXES)
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidManifestError("index: manifests must be a list")
    descs = tuple(Descriptor.from_dict(d, f"index manifests[{i}]") for i, d in enumerate(manifests))
    return Index(kind, descs, _annotations(doc, "index"), doc)


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """An OCI image manifest or a Docker schema 2 manifest."""
    doc = _load(data, "manifest")
    _check_schema(doc, "manifest")
    if "manifests" in doc and "config" not in doc:
        raise InvalidManifestError("manifest: this is an index, not a manifest")
    kind = _document_type(doc, media_type, mt.MANIFESTS)
    config = Descriptor.from_dict(doc.get("config"), "manifest config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidManifestError("manifest: layers must be a list")
    descs = tuple(Descriptor.from_dict(d, f"manifest layers[{i}]") for i, d in enumerate(layers))
    subject = doc.get("subject")
    return Manifest(
        kind,
        config,
        descs,
        _annotations(doc, "manifest"),
        None if subject is None else Descriptor.from_dict(subject, "manifest subject"),
        doc,
    )


def parse_config(data: bytes) -> ImageConfig:
    """An image config (OCI and Docker share the fields we read)."""
    doc = _load(data, "image config")
    os_name, arch = doc.get("os"), doc.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        raise InvalidManifestError("image config: os and architecture must be strings")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, Mapping) or rootfs.get("type") != "layers":
        raise InvalidManifestError('image config: rootfs.type must be "layers"')
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidManifestError("image config: rootfs.diff_ids must be a list of digests")
    for d in diff_ids:
        validate_digest(d)
    variant = doc.get("variant") or ""
    return ImageConfig(os_name, arch, str(variant), tuple(diff_ids), doc)


def children(desc: Descriptor, data: bytes) -> list[Descriptor]:
    """What a blob points at: an index's manifests, a manifest's config and layers.

    Other blobs (configs, layers, unknown types) have none. This is the edge list that an
    import walks and that garbage collection keeps alive.
    """
    if mt.is_index(desc.media_type):
        return list(parse_index(data, desc.media_type).manifests)
    if mt.is_manifest(desc.media_type):
        m = parse_manifest(data, desc.media_type)
        return [m.config, *m.layers]
    if mt.base(desc.media_type) in mt.SCHEMA1:
        raise UnsupportedMediaTypeError(
            f"{desc.digest}: Docker schema 1 manifests are not supported"
        )
    return []


def select_platform(
    manifests: Sequence[Descriptor], platform: Platform | str | PlatformMatcher | None = None
) -> Descriptor:
    """The index entry that best fits `platform` (the host when None).

    Ties go to the entry listed first, as the image spec asks ("the first match wins").
    Entries that are neither manifests nor indexes (artifacts) are never chosen.
    """
    matcher = platform if isinstance(platform, PlatformMatcher) else PlatformMatcher(platform)
    best: tuple[int, int] | None = None
    chosen: Descriptor | None = None
    for i, desc in enumerate(manifests):
        if not (mt.is_manifest(desc.media_type) or mt.is_index(desc.media_type)):
            continue
        rank = matcher.rank(desc.platform)
        if rank is None:
            continue
        if best is None or (rank, i) < best:
            best, chosen = (rank, i), desc
    if chosen is None:
        listed = ", ".join(str(d.platform) for d in manifests if d.platform) or "none"
        raise PlatformNotFoundError(
            f"no manifest for platform {matcher} (the index lists: {listed})"
        )
    return chosen


def resolve_manifest(
    fetch: Callable[[Descriptor], bytes],
    desc: Descriptor,
    platform: Platform | str | PlatformMatcher | None = None,
) -> tuple[Descriptor, Manifest]:
    """Follows indexes (nested ones too) down to the manifest for `platform`.

    `fetch` returns a blob's verified bytes (from a content store or an archive).
    """
    seen: set[str] = set()
    while mt.is_index(desc.media_type):
        if desc.digest in seen:
            raise InvalidManifestError(f"index {desc.digest} refers to itself")
        seen.add(desc.digest)
        index = parse_index(fetch(desc), desc.media_type)
        desc = select_platform(index.manifests, platform)
    if not mt.is_manifest(desc.media_type):
        raise UnsupportedMediaTypeError(f"{desc.digest}: not an image manifest ({desc.media_type})")
    return desc, parse_manifest(fetch(desc), desc.media_type)
