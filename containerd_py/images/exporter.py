"""Exporting images from a content store: to an OCI image layout (a directory or a tar of
one) and to a `docker save` archive.

| output           | what is written                                                          |
|------------------|--------------------------------------------------------------------------|
| OCI layout       | oci-layout, index.json (one entry per name, annotated with the full name |
|                  | as `io.containerd.image.name` and the tag as `org.opencontainers.image.  |
|                  | ref.name`, so `skopeo ... oci:DIR:TAG` finds it), blobs/<alg>/<hex>:     |
|                  | every blob below each image, as stored (an index keeps the platforms the |
|                  | store has whole; a missing foreign layer is left out, it is fetched from |
|                  | its urls)                                                                |
| docker archive   | per image (one platform: the host's unless told), <config hex>.json,     |
|                  | <diff_id hex>/layer.tar uncompressed (docker load wants plain tars), a   |
|                  | manifest.json entry with the RepoTags, and `repositories`                |

Every blob read from the store is verified against its descriptor on the way out, and every
layer.tar against its diff_id. Outputs are deterministic (sorted entries, epoch mtimes, root
owner) and appear whole or not at all: a directory or file path is written under a temporary
name and renamed.
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
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from containerd_py.archive.compression import open_decompressed
from containerd_py.archive.errors import ArchiveError
from containerd_py.images import mediatypes as mt
from containerd_py.images.digests import encoded, validate_digest
from containerd_py.images.errors import BlobNotFoundError, CorruptBlobError, InvalidManifestError
from containerd_py.images.manifest import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Descriptor,
    parse_config,
    parse_index,
    parse_manifest,
    resolve_manifest,
)
from containerd_py.images.platforms import Platform, PlatformMatcher
from containerd_py.images.reference import parse_normalized
from containerd_py.images.store import ContentStore, open_blob, read_blob

_CHUNK = 1 << 20
OCI_LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'

ImageList = Sequence[tuple[str, Descriptor]]


# -- OCI layouts ----------------------------------------------------------------------------


def _blob_path(digest: str) -> str:
    algorithm, _, hex_part = validate_digest(digest).partition(":")
    return f"blobs/{algorithm}/{hex_part}"


def _collect(
    store: ContentStore, desc: Descriptor, matcher: PlatformMatcher | None, out: dict[str, int]
) -> None:
    """Adds the digests (and sizes) of `desc` and of everything below it to `out`.

    In an index, the entries for `matcher` must be whole (all of them when it is None);
    the others come along when the store holds them whole.
    """
    if desc.digest in out:
        return
    if mt.is_index(desc.media_type):
        index = parse_index(read_blob(store, desc, MAX_MANIFEST_SIZE), desc.media_type)
        for child in index.manifests:
            required = matcher is None or matcher.matches(child.platform)
            if required or _complete(store, child):
                _collect(store, child, matcher, out)
    elif mt.is_manifest(desc.media_type):
        manifest = parse_manifest(read_blob(store, desc, MAX_MANIFEST_SIZE), desc.media_type)
        out[manifest.config.digest] = manifest.config.size
        for layer in manifest.layers:
            if not store.exists(layer.digest):
                if mt.is_foreign(layer.media_type):
                    continue
                raise BlobNotFoundError(f"layer {layer.digest} of {desc.digest} not found")
            out[layer.digest] = layer.size
    elif not store.exists(desc.digest):
        raise BlobNotFoundError(f"content {desc.digest} not found")
    out[desc.digest] = desc.size


def _complete(store: ContentStore, desc: Descriptor) -> bool:
    if not store.exists(desc.digest):
        return False
    if mt.is_index(desc.media_type):
        index = parse_index(read_blob(store, desc, MAX_MANIFEST_SIZE), desc.media_type)
        return all(_complete(store, d) for d in index.manifests)
    if mt.is_manifest(desc.media_type):
        m = parse_manifest(read_blob(store, desc, MAX_MANIFEST_SIZE), desc.media_type)
        return all(
            store.exists(d.digest) or mt.is_foreign(d.media_type) for d in (m.config, *m.layers)
        )
    return True


def _index_json(images: ImageList) -> bytes:
    entries = []
    for name, desc in images:
        ref = parse_normalized(name)
        annotations = {ANNOTATION_IMAGE_NAME: str(ref)}
        if ref.tag is not None:
            annotations[ANNOTATION_REF_NAME] = ref.tag
        entries.append(desc.with_annotations(annotations).to_dict())
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    return json.dumps(index, separators=(",", ":")).encode()


def _layout_blobs(
    store: ContentStore, images: ImageList, platform: Platform | str | None, all_platforms: bool
) -> dict[str, int]:
    matcher = None if all_platforms else PlatformMatcher(platform)
    blobs: dict[str, int] = {}
    for _, desc in images:
        _collect(store, desc, matcher, blobs)
    return blobs


def export_oci_layout(
    store: ContentStore,
    images: ImageList,
    dest: str | os.PathLike[str],
    *,
    platform: Platform | str | None = None,
    all_platforms: bool = False,
) -> None:
    """Writes an OCI image layout directory at `dest` (absent, or an empty directory).

    Of a multi-platform index, the manifest for `platform` (the host's by default) must be
    in the store whole, and the others are written when the store holds them whole; with
    `all_platforms` every one is required. The index itself is written as it is.
    """
    path = os.path.abspath(os.fspath(dest))
    if os.path.lexists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise FileExistsError(f"{path} exists and is not an empty directory")
    blobs = _layout_blobs(store, images, platform, all_platforms)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
    try:
        os.chmod(tmp, 0o755)
        _write_file(os.path.join(tmp, "oci-layout"), OCI_LAYOUT_FILE)
        for digest in sorted(blobs):
            target = os.path.join(tmp, *_blob_path(digest).split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            desc = Descriptor("application/octet-stream", digest, blobs[digest])
            with open_blob(store, desc) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        _write_file(os.path.join(tmp, "index.json"), _index_json(images))
        if os.path.isdir(path):
            os.rmdir(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


class _TarWriter:
    """A deterministic tar: epoch mtimes, root owner, no user names, dirs before contents."""

    def __init__(self, out: BinaryIO) -> None:
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.dirs: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.size = size
        info.mtime = 0
        info.uname = info.gname = ""
        return info

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self.tar.addfile(self._info(d, tarfile.DIRTYPE, 0o755))

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))

    def add_stream(self, name: str, stream: BinaryIO, size: int) -> None:
        self._parents(name)
        self.tar.addfile(self._info(name, tarfile.REGTYPE, 0o644, size), stream)

    def close(self) -> None:
        self.tar.close()

    def abandon(self) -> None:
        """After an error: no end-of-archive blocks, now or from tarfile's __del__ writing
        to an output that is already closed (the partial output is being thrown away)."""
        self.tar.closed = True
        stream = self.tar.fileobj
        if stream is not None:
            stream.closed = True  # tarfile's _Stream, which would flush its buffer


@contextlib.contextmanager
def _tar(out: BinaryIO) -> Iterator[_TarWriter]:
    writer = _TarWriter(out)
    try:
        yield writer
    except BaseException:
        writer.abandon()
        raise
    writer.close()


@contextlib.contextmanager
def _output(out: BinaryIO | str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """The stream to write to: `out` itself, or a temporary file renamed onto the path."""
    if not isinstance(out, str | os.PathLike):
        yield out
        return
    path = os.path.abspath(os.fspath(out))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            yield f  # type: ignore[misc]
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def export_oci_archive(
    store: ContentStore,
    images: ImageList,
    out: BinaryIO | str | os.PathLike[str],
    *,
    platform: Platform | str | None = None,
    all_platforms: bool = False,
) -> None:
    """Writes the OCI image layout as one tar (skopeo's `oci-archive:`, `ctr export`);
    platforms as for export_oci_layout."""
    blobs = _layout_blobs(store, images, platform, all_platforms)
    index = _index_json(images)
    with _output(out) as stream, _tar(stream) as tar:
        tar.add_bytes("oci-layout", OCI_LAYOUT_FILE)
        tar.add_bytes("index.json", index)
        for digest in sorted(blobs):
            desc = Descriptor("application/octet-stream", digest, blobs[digest])
            with open_blob(store, desc) as src:
                tar.add_stream(_blob_path(digest), src, blobs[digest])


# -- docker save archives -------------------------------------------------------------------


def export_docker_archive(
    store: ContentStore,
    images: ImageList,
    out: BinaryIO | str | os.PathLike[str],
    *,
    platform: Platform | str | None = None,
    tmpdir: str | None = None,
) -> None:
    """Writes a `docker save` archive of the images (one platform each, the host's unless
    `platform` says otherwise); names of one manifest share its manifest.json entry."""

    def fetch(desc: Descriptor) -> bytes:
        return read_blob(store, desc, MAX_MANIFEST_SIZE)

    entries: dict[str, dict[str, object]] = {}
    configs: dict[str, bytes] = {}
    layers: dict[str, Descriptor] = {}  # diff_id -> the stored blob
    repositories: dict[str, dict[str, str]] = {}
    for name, desc in images:
        mdesc, manifest = resolve_manifest(fetch, desc, platform)
        config_bytes = read_blob(store, manifest.config, MAX_CONFIG_SIZE)
        config = parse_config(config_bytes)
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidManifestError(
                f"{mdesc.digest}: {len(manifest.layers)} layers but "
                f"{len(config.diff_ids)} diff_ids in its config"
            )
        for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
            layers.setdefault(diff_id, layer)
        config_name = f"{encoded(manifest.config.digest)}.json"
        configs[config_name] = config_bytes
        layer_names = [f"{encoded(d)}/layer.tar" for d in config.diff_ids]
        # One entry per config (docker's image ID), however many manifests lead to it.
        entry = entries.setdefault(
            config_name, {"Config": config_name, "RepoTags": [], "Layers": layer_names}
        )
        ref = parse_normalized(name)
        if ref.tag is not None:
            tags = entry["RepoTags"]
            assert isinstance(tags, list)
            if ref.familiar not in tags:
                tags.append(ref.familiar)
            if config.diff_ids:
                repositories.setdefault(ref.familiar_name, {})[ref.tag] = encoded(
                    config.diff_ids[-1]
                )
    manifest_json = json.dumps(list(entries.values()), separators=(",", ":")).encode()
    repositories_json = json.dumps(repositories, separators=(",", ":"), sort_keys=True).encode()
    with (
        tempfile.TemporaryDirectory(dir=tmpdir) as work,
        _output(out) as stream,
        _tar(stream) as tar,
    ):
        for diff_id in sorted(layers):
            spooled = os.path.join(work, encoded(diff_id))
            size = _uncompressed_layer(store, layers[diff_id], diff_id, spooled)
            with open(spooled, "rb") as f:
                tar.add_stream(f"{encoded(diff_id)}/layer.tar", f, size)  # type: ignore[arg-type]
            os.unlink(spooled)
        for name in sorted(configs):
            tar.add_bytes(name, configs[name])
        tar.add_bytes("manifest.json", manifest_json)
        tar.add_bytes("repositories", repositories_json)


def _uncompressed_layer(store: ContentStore, desc: Descriptor, diff_id: str, dest: str) -> int:
    """Writes the layer as a plain tar to `dest`; checks it against the config's diff_id."""
    digest = hashlib.sha256()
    size = 0
    with open_blob(store, desc) as blob, open(dest, "wb") as out:
        try:
            plain, _ = open_decompressed(blob)
            while chunk := plain.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        except ArchiveError as e:
            raise CorruptBlobError(f"layer {desc.digest}: {e}") from None
    actual = "sha256:" + digest.hexdigest()
    if actual != diff_id:
        raise CorruptBlobError(
            f"layer {desc.digest} unpacks to {actual}, but the image config says {diff_id}"
        )
    return size
