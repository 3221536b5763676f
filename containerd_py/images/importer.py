"""Importing images from an OCI image layout (a directory, or a tar of one) and from
`docker save` archives into a content store.

What gets stored, and under which names:

| source            | blobs stored                           | names                            |
|-------------------|----------------------------------------|----------------------------------|
| OCI layout        | index.json's entries and all below     | `io.containerd.image.name`, else |
| (dir or tar)      | them (other platforms' subtrees only   | `org.opencontainers.image.       |
|                   | when the layout holds them whole)      | ref.name` (a bare tag is joined  |
|                   |                                        | to `base_name`)                  |
| docker-save tar   | the config, each layer.tar as it is    | RepoTags, normalized             |
|                   | (gzipped with compress_layers), and an |                                  |
|                   | OCI manifest made for them (Docker     |                                  |
|                   | schema 2 with media_types="docker")    |                                  |

The manifest made for a docker archive is an OCI one by default, as docker 25+ writes them
itself: an OCI layout exported later lists only OCI types in its index.json, and
containers/image (skopeo, podman) skips index entries of Docker types there. The config and
layer bytes are kept as saved either way, so the diff_ids and the image ID do not change.

An image with no usable name is returned as `<base_name>@<digest>`, or as its bare manifest
digest when there is no base name; the caller decides whether to record it.

Nothing is trusted: each blob is checked against the digest and size that name it while it
streams into the store (see store.py), a docker layer must hash to its config's diff_id,
and a docker config to the digest in its file name. Blobs go in children first, so a
manifest is never stored before what it points at; when an import fails half-way, what is
left are whole, verified blobs that nothing refers to, for garbage collection.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, Literal, NamedTuple, Protocol

from containerd_py.archive.compression import (
    Compression,
    detect_compression,
    gzip_compress,
    open_decompressed,
)
from containerd_py.archive.errors import ArchiveError
from containerd_py.images import mediatypes as mt
from containerd_py.images.digests import sha256_digest, validate_digest
from containerd_py.images.errors import (
    CorruptBlobError,
    InvalidArchiveError,
    InvalidManifestError,
    InvalidReferenceError,
)
from containerd_py.images.manifest import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Descriptor,
    parse_config,
    parse_index,
    parse_manifest,
)
from containerd_py.images.platforms import Platform, PlatformMatcher
from containerd_py.images.reference import is_valid_tag, parse_docker_ref, parse_normalized
from containerd_py.images.store import ContentStore, ingest_bytes, ingest_verified, verified

_CHUNK = 1 << 20

MediaTypes = Literal["oci", "docker"]


class ImportedImage(NamedTuple):
    """An image to record: its normalized name and the descriptor of its index/manifest."""

    name: str
    target: Descriptor


# -- sources: a layout directory or an archive, read by relative name -----------------------


class _Source(Protocol):
    def exists(self, name: str) -> bool: ...

    def open(self, name: str) -> BinaryIO: ...


def _clean_name(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        return None
    return "/".join(parts)


class _DirSource:
    def __init__(self, root: str) -> None:
        self.root = root

    def _path(self, name: str) -> str:
        clean = _clean_name(name)
        if clean is None or not clean:
            raise InvalidArchiveError(f"{name!r}: not a path inside the layout")
        return os.path.join(self.root, *clean.split("/"))

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def open(self, name: str) -> BinaryIO:
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InvalidArchiveError(f"{name} is missing from the layout") from None
        except OSError as e:
            raise InvalidArchiveError(f"{name}: cannot read: {e.strerror}") from None
        return os.fdopen(fd, "rb")


class _TarSource:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            clean = _clean_name(m.name)
            if clean and (m.isreg() or m.islnk() or m.issym()):
                self.members[clean] = m

    def exists(self, name: str) -> bool:
        return _clean_name(name) in self.members

    def open(self, name: str) -> BinaryIO:
        member = self.members.get(_clean_name(name) or "")
        if member is None:
            raise InvalidArchiveError(f"{name} is missing from the archive")
        try:
            f = self.tar.extractfile(member)
        except (KeyError, tarfile.TarError) as e:
            raise InvalidArchiveError(f"{name}: cannot read from the archive: {e}") from None
        if f is None:
            raise InvalidArchiveError(f"{name}: not a file in the archive")
        return f  # type: ignore[return-value]


def _read_small(src: _Source, name: str, limit: int) -> bytes:
    with src.open(name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidArchiveError(f"{name}: larger than {limit} bytes")
    return data


def _spool(stream: BinaryIO, tmpdir: str | None) -> BinaryIO:
    spool = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115 (the caller closes it)
    shutil.copyfileobj(stream, spool, _CHUNK)
    spool.seek(0)
    return spool  # type: ignore[return-value]


@contextlib.contextmanager
def open_source(
    source: str | os.PathLike[str] | BinaryIO, *, tmpdir: str | None = None
) -> Iterator[_Source]:
    """A layout directory, or an archive (path or stream; plain, or compressed as
    `docker save | gzip` makes it), as a set of files read by name."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, str | os.PathLike):
            path = os.fspath(source)
            if os.path.isdir(path):
                yield _DirSource(path)
                return
            try:
                stream: BinaryIO = stack.enter_context(open(path, "rb"))
            except OSError as e:
                raise InvalidArchiveError(f"{path}: {e.strerror}") from None
        else:
            stream = source
        seekable = stream.seekable()
        if seekable:
            pos = stream.tell()
            head = stream.read(8)
            stream.seek(pos)
        else:
            head = b""
        if not seekable or detect_compression(head) is not Compression.NONE:
            # Random access is needed (manifest.json may come last): spool what cannot seek,
            # and decompress a compressed archive once rather than on every seek.
            try:
                plain, _ = open_decompressed(stream)
                stream = stack.enter_context(_spool(plain, tmpdir))
            except ArchiveError as e:
                raise InvalidArchiveError(f"archive: {e}") from None
        try:
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r:"))
            src = _TarSource(tar)
        except tarfile.TarError as e:
            raise InvalidArchiveError(f"not a tar archive: {e}") from None
        yield src


# -- entry points ---------------------------------------------------------------------------


def import_archive(
    store: ContentStore,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    base_name: str | None = None,
    platform: Platform | str | None = None,
    all_platforms: bool = False,
    compress_layers: bool = False,
    media_types: MediaTypes = "oci",
    tmpdir: str | None = None,
) -> list[ImportedImage]:
    """Imports whatever `source` is: an OCI layout (directory or tar, including the
    OCI-plus-manifest.json archives docker 25+ saves) or a classic docker-save tar."""
    with open_source(source, tmpdir=tmpdir) as src:
        if src.exists("index.json"):
            return _OCIImporter(store, src, base_name, platform, all_platforms).run()
        if src.exists("manifest.json"):
            return _DockerImporter(store, src, compress_layers, media_types, tmpdir).run()
    raise InvalidArchiveError(
        "neither an OCI image layout (no index.json) nor a docker-save archive (no manifest.json)"
    )


def import_oci_layout(
    store: ContentStore,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    base_name: str | None = None,
    platform: Platform | str | None = None,
    all_platforms: bool = False,
    tmpdir: str | None = None,
) -> list[ImportedImage]:
    """Imports an OCI image layout, a directory or a tar of one.

    Each index.json entry is imported whole for the matching platform (`platform`, the
    host by default; every platform with `all_platforms`): a missing blob there is an
    error. Other platforms' manifests come along when the layout holds all of their blobs.
    """
    with open_source(source, tmpdir=tmpdir) as src:
        return _OCIImporter(store, src, base_name, platform, all_platforms).run()


def import_docker_archive(
    store: ContentStore,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    compress_layers: bool = False,
    media_types: MediaTypes = "oci",
    tmpdir: str | None = None,
) -> list[ImportedImage]:
    """Imports a `docker save` archive: one manifest (OCI, or Docker schema 2 with
    media_types="docker") per manifest.json entry, layers stored uncompressed as saved
    (gzip, deterministic, with compress_layers)."""
    with open_source(source, tmpdir=tmpdir) as src:
        return _DockerImporter(store, src, compress_layers, media_types, tmpdir).run()


# -- OCI layouts ----------------------------------------------------------------------------


def _blob_name(digest: str) -> str:
    algorithm, _, hex_part = validate_digest(digest).partition(":")
    return f"blobs/{algorithm}/{hex_part}"


class _OCIImporter:
    def __init__(
        self,
        store: ContentStore,
        src: _Source,
        base_name: str | None,
        platform: Platform | str | None,
        all_platforms: bool,
    ) -> None:
        self.store = store
        self.src = src
        self.base = None if base_name is None else parse_normalized(base_name)
        if self.base is not None and (self.base.tag or self.base.digest):
            raise InvalidReferenceError(f"base name {base_name!r} must have no tag or digest")
        self.matcher = PlatformMatcher(platform)
        self.all_platforms = all_platforms
        self.done: set[str] = set()

    def run(self) -> list[ImportedImage]:
        if self.src.exists("oci-layout"):
            try:
                layout = json.loads(_read_small(self.src, "oci-layout", 4096))
                version = layout["imageLayoutVersion"]
            except (ValueError, KeyError, TypeError):
                raise InvalidArchiveError("oci-layout: not a valid layout file") from None
            if not isinstance(version, str) or not version.startswith("1."):
                raise InvalidArchiveError(f"oci-layout: unsupported version {version!r}")
        try:
            index = parse_index(
                _read_small(self.src, "index.json", MAX_MANIFEST_SIZE), mt.OCI_INDEX
            )
        except InvalidManifestError as e:
            raise InvalidArchiveError(f"index.json: {e}") from None
        repo_tags = self._docker_repo_tags()
        images: list[ImportedImage] = []
        for desc in index.manifests:
            self.import_desc(desc, required=True)
            target = Descriptor(
                desc.media_type, desc.digest, desc.size, {}, desc.platform, desc.urls
            )
            for name in self.names_for(desc, repo_tags):
                images.append(ImportedImage(name, target))
        return images

    def _docker_repo_tags(self) -> dict[str, list[str]]:
        """Docker 25+ saves an OCI layout plus a manifest.json: RepoTags by config path."""
        if not self.src.exists("manifest.json"):
            return {}
        try:
            entries = json.loads(_read_small(self.src, "manifest.json", MAX_MANIFEST_SIZE))
            return {
                str(e["Config"]): [str(t) for t in e.get("RepoTags") or ()]
                for e in entries
                if isinstance(e, dict)
            }
        except (ValueError, KeyError, TypeError):
            return {}

    def names_for(self, desc: Descriptor, repo_tags: Mapping[str, list[str]]) -> list[str]:
        full = desc.annotations.get(ANNOTATION_IMAGE_NAME)
        if full:
            return [str(parse_docker_ref(full))]
        ref_name = desc.annotations.get(ANNOTATION_REF_NAME)
        if ref_name:
            if not any(c in ref_name for c in "/:@") and is_valid_tag(ref_name):
                # A bare tag, as skopeo and BuildKit write it: it needs a repository.
                if self.base is not None:
                    return [str(self.base.with_tag(ref_name))]
            else:
                return [str(parse_docker_ref(ref_name))]
        if repo_tags and mt.is_manifest(desc.media_type):
            manifest = parse_manifest(self.read(desc, MAX_MANIFEST_SIZE), desc.media_type)
            tags = repo_tags.get(_blob_name(manifest.config.digest), [])
            if tags:
                return [str(parse_docker_ref(t)) for t in tags]
        if self.base is not None:
            return [f"{self.base.name}@{desc.digest}"]
        return [desc.digest]

    def present(self, desc: Descriptor) -> bool:
        return self.store.exists(desc.digest) or self.src.exists(_blob_name(desc.digest))

    def read(self, desc: Descriptor, limit: int) -> bytes:
        if desc.size > limit:
            raise InvalidArchiveError(f"blob {desc.digest}: {desc.size} bytes is over {limit}")
        name = _blob_name(desc.digest)
        if not self.src.exists(name):
            raise InvalidArchiveError(f"blob {desc.digest} ({desc.media_type}) is missing")
        with self.src.open(name) as f:
            return verified(f, desc.digest, desc.size, f"blob {desc.digest}").read()

    def complete(self, desc: Descriptor) -> bool:
        """Whether every blob below `desc` is in the layout (or already stored)."""
        if not self.src.exists(_blob_name(desc.digest)):
            # Already stored by an earlier import, which stored its children first.
            return self.store.exists(desc.digest)
        if mt.is_index(desc.media_type):
            index = parse_index(self.read(desc, MAX_MANIFEST_SIZE), desc.media_type)
            return all(self.complete(d) for d in index.manifests)
        if mt.is_manifest(desc.media_type):
            m = parse_manifest(self.read(desc, MAX_MANIFEST_SIZE), desc.media_type)
            return all(
                self.present(d) or mt.is_foreign(d.media_type) for d in (m.config, *m.layers)
            )
        return True

    def import_desc(self, desc: Descriptor, *, required: bool) -> None:
        if desc.digest in self.done:
            return
        name = _blob_name(desc.digest)
        if not self.src.exists(name):
            if self.store.exists(desc.digest):
                self.done.add(desc.digest)
                return
            if mt.is_foreign(desc.media_type):
                return  # non-distributable: pulled from its urls when needed
            raise InvalidArchiveError(f"blob {desc.digest} ({desc.media_type}) is missing")
        what = f"blob {desc.digest}"
        if mt.is_index(desc.media_type):
            data = self.read(desc, MAX_MANIFEST_SIZE)
            for child in parse_index(data, desc.media_type).manifests:
                wanted = required and (self.all_platforms or self.matcher.matches(child.platform))
                if wanted:
                    self.import_desc(child, required=True)
                elif self.complete(child):
                    self.import_desc(child, required=False)
            ingest_bytes(self.store, data, desc.digest, what)
        elif mt.is_manifest(desc.media_type):
            data = self.read(desc, MAX_MANIFEST_SIZE)
            manifest = parse_manifest(data, desc.media_type)
            config = self.read(manifest.config, MAX_CONFIG_SIZE)
            if mt.is_config(manifest.config.media_type):
                parse_config(config)
            ingest_bytes(self.store, config, manifest.config.digest, f"config {what}")
            self.done.add(manifest.config.digest)
            for layer in manifest.layers:
                self.import_desc(layer, required=required)
            ingest_bytes(self.store, data, desc.digest, what)
        else:
            with self.src.open(name) as f:
                ingest_verified(self.store, f, desc.digest, desc.size, what)
        self.done.add(desc.digest)


# -- docker save archives -------------------------------------------------------------------


class _HashingReader:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _measure(stream: BinaryIO) -> tuple[str, int, Compression, str]:
    """(digest, size, compression, diff_id) of a layer file, in one pass."""
    raw = _HashingReader(stream)
    try:
        plain, kind = open_decompressed(raw)  # type: ignore[arg-type]
        plain_hash = hashlib.sha256()
        while chunk := plain.read(_CHUNK):
            plain_hash.update(chunk)
    except ArchiveError as e:
        raise CorruptBlobError(str(e)) from None
    while raw.read(_CHUNK):
        pass
    return raw.digest, raw.size, kind, "sha256:" + plain_hash.hexdigest()


def _digest_in_name(path: str) -> str | None:
    """docker names a config `<hex>.json`, and docker 25+ puts blobs at blobs/sha256/<hex>."""
    base = path.rsplit("/", 1)[-1].removesuffix(".json")
    if len(base) == 64 and all(c in "0123456789abcdef" for c in base):
        return "sha256:" + base
    return None


class _DockerImporter:
    def __init__(
        self,
        store: ContentStore,
        src: _Source,
        compress: bool,
        media_types: MediaTypes,
        tmpdir: str | None,
    ) -> None:
        if media_types not in ("oci", "docker"):
            raise ValueError(f"media_types must be 'oci' or 'docker', not {media_types!r}")
        self.store = store
        self.src = src
        self.compress = compress
        self.docker = media_types == "docker"
        self.tmpdir = tmpdir
        self.layers: dict[str, Descriptor] = {}

    def run(self) -> list[ImportedImage]:
        try:
            entries = json.loads(_read_small(self.src, "manifest.json", MAX_MANIFEST_SIZE))
        except ValueError:
            raise InvalidArchiveError("manifest.json: not valid JSON") from None
        if not isinstance(entries, list):
            raise InvalidArchiveError("manifest.json: must be a list")
        images: list[ImportedImage] = []
        for i, entry in enumerate(entries):
            images.extend(self.import_entry(entry, f"manifest.json[{i}]"))
        return images

    def import_entry(self, entry: Any, where: str) -> list[ImportedImage]:
        if not isinstance(entry, dict):
            raise InvalidArchiveError(f"{where}: must be an object")
        config_path, layer_paths = entry.get("Config"), entry.get("Layers")
        repo_tags = entry.get("RepoTags") or []
        if not isinstance(config_path, str):
            raise InvalidArchiveError(f"{where}: Config must be a string")
        if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
            raise InvalidArchiveError(f"{where}: Layers must be a list of paths")
        if not isinstance(repo_tags, list) or not all(isinstance(t, str) for t in repo_tags):
            raise InvalidArchiveError(f"{where}: RepoTags must be a list of names")
        config_bytes = _read_small(self.src, config_path, MAX_CONFIG_SIZE)
        config_digest = sha256_digest(config_bytes)
        named = _digest_in_name(config_path)
        if named is not None and named != config_digest:
            raise CorruptBlobError(
                f"{config_path}: content has digest {config_digest}, its name says {named}"
            )
        try:
            config = parse_config(config_bytes)
        except InvalidManifestError as e:
            raise InvalidArchiveError(f"{config_path}: {e}") from None
        if len(config.diff_ids) != len(layer_paths):
            raise InvalidArchiveError(
                f"{where}: {len(layer_paths)} layers, but the config lists "
                f"{len(config.diff_ids)} diff_ids"
            )
        names = [str(parse_docker_ref(t)) for t in repo_tags]  # bad names fail before storing
        layers = [self.layer(p, d) for p, d in zip(layer_paths, config.diff_ids, strict=True)]
        ingest_bytes(self.store, config_bytes, config_digest, config_path)
        manifest_type = mt.DOCKER_MANIFEST if self.docker else mt.OCI_MANIFEST
        config_desc = {
            "mediaType": mt.DOCKER_CONFIG if self.docker else mt.OCI_CONFIG,
            "size": len(config_bytes),
            "digest": config_digest,
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_desc,
            "layers": [
                {"mediaType": d.media_type, "size": d.size, "digest": d.digest} for d in layers
            ],
        }
        data = json.dumps(manifest, indent=3).encode()
        digest = sha256_digest(data)
        ingest_bytes(self.store, data, digest, f"{where} manifest")
        target = Descriptor(manifest_type, digest, len(data))
        return [ImportedImage(n, target) for n in names] or [ImportedImage(digest, target)]

    def layer(self, path: str, diff_id: str) -> Descriptor:
        if diff_id in self.layers:
            return self.layers[diff_id]
        with self.src.open(path) as f:
            digest, size, kind, actual_diff_id = _measure(f)
        if actual_diff_id != diff_id:
            raise CorruptBlobError(
                f"{path}: layer content has diff_id {actual_diff_id}, the config says {diff_id}"
            )
        named = _digest_in_name(path)
        if named is not None and named != digest:
            raise CorruptBlobError(f"{path}: content has digest {digest}, its name says {named}")
        if kind in (Compression.NONE, Compression.GZIP, Compression.ZSTD) and not (
            self.compress and kind is Compression.NONE
        ):
            with self.src.open(path) as f:
                ingest_verified(self.store, f, digest, size, path)
            desc = Descriptor(mt.layer_type(kind, docker=self.docker), digest, size)
        else:
            desc = self.transformed(path, diff_id)
        self.layers[diff_id] = desc
        return desc

    def transformed(self, path: str, diff_id: str) -> Descriptor:
        """The layer re-encoded: gzip (compress_layers), or plain for bzip2/xz layers,
        which image manifests have no media type for."""
        with tempfile.TemporaryFile(dir=self.tmpdir) as spool:
            out = _HashingWriter(spool)
            with self.src.open(path) as f:
                plain, _ = open_decompressed(f)
                if self.compress:
                    gzip_compress(plain, out)  # type: ignore[arg-type]
                    kind = Compression.GZIP
                else:
                    shutil.copyfileobj(plain, out, _CHUNK)  # type: ignore[misc]
                    kind = Compression.NONE
            spool.seek(0)
            digest = out.digest
            ingest_verified(self.store, spool, digest, out.size, path)  # type: ignore[arg-type]
        return Descriptor(mt.layer_type(kind, docker=self.docker), digest, out.size)


class _HashingWriter(io.RawIOBase):
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.inner.write(b)
        self.hash.update(b)
        self.size += len(b)
        return len(b)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


__all__ = [
    "ImportedImage",
    "import_archive",
    "import_docker_archive",
    "import_oci_layout",
    "open_source",
]
