"""Importing pymkimage's OCI layouts and docker-save archives into a content store, exporting
them back, and refusing corrupt archives. The store is the in-memory test double."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from containerd_py.archive import apply_layer
from containerd_py.errdefs import AlreadyExists
from containerd_py.images import (
    export_docker_archive,
    export_oci_archive,
    export_oci_layout,
    host_platform,
    import_archive,
    import_docker_archive,
    import_oci_layout,
    parse_config,
    parse_manifest,
)
from containerd_py.images import mediatypes as mt
from containerd_py.images.errors import (
    BlobNotFoundError,
    CorruptBlobError,
    InvalidArchiveError,
    PlatformNotFoundError,
)
from containerd_py.images.manifest import Descriptor
from mkimage import build_image, write_docker_archive, write_oci_archive, write_oci_layout
from mkimage.busybox import DEFAULT_BUSYBOX
from tests.unit.test_archive_apply import E, tar_layer
from tests.unit.test_images_fakes import MemoryContentStore

pytestmark = pytest.mark.skipif(
    not DEFAULT_BUSYBOX.exists(), reason="needs /bin/busybox (Debian package busybox-static)"
)

NAME = "docker.io/library/busybox:latest"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def image():
    return build_image()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    write_oci_layout(root / "layout")
    write_oci_archive(root / "oci.tar")
    write_docker_archive(root / "docker.tar")
    return {"layout": root / "layout", "oci_tar": root / "oci.tar", "docker": root / "docker.tar"}


def config_of(store: MemoryContentStore, target: Descriptor):
    manifest = parse_manifest(store.blobs[target.digest], target.media_type)
    return manifest, parse_config(store.blobs[manifest.config.digest])


@pytest.mark.parametrize("kind", ["layout", "oci_tar"])
def test_import_oci_layout(kind: str, sources: dict[str, Path], image) -> None:
    store = MemoryContentStore()
    images = import_oci_layout(store, sources[kind])
    assert [(i.name, i.target.digest) for i in images] == [(NAME, image.manifest.digest)]
    assert set(store.blobs) == {image.manifest.digest, image.config.digest, image.layer.digest}
    # Children are stored before what points at them.
    assert store.ingested[-1] == image.manifest.digest


def test_oci_round_trip_keeps_the_manifest_digest(
    sources: dict[str, Path], image, tmp_path: Path
) -> None:
    store = MemoryContentStore()
    images = import_archive(store, sources["layout"])
    export_oci_layout(store, images, tmp_path / "out")
    export_oci_archive(store, images, tmp_path / "out.tar")
    index = json.loads((tmp_path / "out/index.json").read_bytes())
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": NAME,
        "org.opencontainers.image.ref.name": "latest",
    }
    for exported in (tmp_path / "out", tmp_path / "out.tar"):
        again = MemoryContentStore()
        back = import_archive(again, exported)
        assert [(i.name, i.target.digest) for i in back] == [(NAME, image.manifest.digest)]
        assert again.blobs == store.blobs
    # Deterministic: the same images give the same archive bytes.
    export_oci_archive(store, images, tmp_path / "again.tar")
    assert (tmp_path / "again.tar").read_bytes() == (tmp_path / "out.tar").read_bytes()


def test_docker_archive_round_trip_keeps_diff_ids(
    sources: dict[str, Path], image, tmp_path: Path
) -> None:
    store = MemoryContentStore()
    images = import_docker_archive(store, sources["docker"])
    assert [i.name for i in images] == [NAME]
    target = images[0].target
    assert target.media_type == mt.OCI_MANIFEST
    manifest, config = config_of(store, target)
    assert config.diff_ids == (image.diff_id,)
    assert manifest.config.digest == image.config.digest  # the config bytes are kept as saved
    assert manifest.config.media_type == mt.OCI_CONFIG
    assert manifest.layers[0].media_type == mt.OCI_LAYER
    assert manifest.layers[0].digest == image.diff_id  # stored uncompressed, as saved

    export_docker_archive(store, images, tmp_path / "out.tar")
    again = MemoryContentStore()
    back = import_archive(again, tmp_path / "out.tar")
    assert [i.name for i in back] == [NAME]
    assert config_of(again, back[0].target)[1].diff_ids == (image.diff_id,)
    assert back[0].target.digest == target.digest  # the conversion is deterministic

    # docker -> OCI layout -> import keeps the manifest too
    export_oci_layout(store, images, tmp_path / "layout")
    assert import_archive(MemoryContentStore(), tmp_path / "layout")[0].target == target


def test_docker_export_of_an_oci_image_decompresses_layers(
    sources: dict[str, Path], image, tmp_path: Path
) -> None:
    store = MemoryContentStore()
    images = import_archive(store, sources["layout"])
    export_docker_archive(store, images, tmp_path / "d.tar")
    with tarfile.open(tmp_path / "d.tar") as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
        layer = tar.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    hex_id = image.diff_id.removeprefix("sha256:")
    assert manifest == [
        {
            "Config": f"{image.config.hex}.json",
            "RepoTags": ["busybox:latest"],
            "Layers": [f"{hex_id}/layer.tar"],
        }
    ]
    assert repositories == {"busybox": {"latest": hex_id}}
    assert sha256(layer) == image.diff_id
    assert f"{image.config.hex}.json" in names
    back = MemoryContentStore()
    assert config_of(back, import_archive(back, tmp_path / "d.tar")[0].target)[1].diff_ids == (
        image.diff_id,
    )


def test_compressed_archives_streams_and_compress_layers(
    sources: dict[str, Path], image, tmp_path: Path
) -> None:
    gz = tmp_path / "docker.tar.gz"
    gz.write_bytes(gzip.compress(sources["docker"].read_bytes()))
    store = MemoryContentStore()
    assert [i.name for i in import_archive(store, gz)] == [NAME]

    class Pipe(io.RawIOBase):  # a stream that cannot seek, like a request body
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
            data = self.inner.read(len(b))
            b[: len(data)] = data
            return len(data)

    piped = import_archive(MemoryContentStore(), Pipe(sources["oci_tar"].read_bytes()))  # type: ignore[arg-type]
    assert piped[0].target.digest == image.manifest.digest

    packed = MemoryContentStore()
    images = import_docker_archive(packed, sources["docker"], compress_layers=True)
    manifest, config = config_of(packed, images[0].target)
    assert manifest.layers[0].media_type == mt.OCI_LAYER_GZIP
    assert config.diff_ids == (image.diff_id,)
    # docker archives hold plain tars: the export undoes the compression
    export_docker_archive(packed, images, tmp_path / "plain.tar")
    with tarfile.open(tmp_path / "plain.tar") as tar:
        layer = tar.extractfile(f"{image.diff_id[7:]}/layer.tar").read()  # type: ignore[union-attr]
    assert sha256(layer) == image.diff_id


def test_docker_media_types_on_request(sources: dict[str, Path], image) -> None:
    store = MemoryContentStore()
    images = import_docker_archive(store, sources["docker"], media_types="docker")
    manifest, config = config_of(store, images[0].target)
    assert images[0].target.media_type == manifest.media_type == mt.DOCKER_MANIFEST
    assert manifest.config.media_type == mt.DOCKER_CONFIG
    assert manifest.layers[0].media_type == mt.DOCKER_LAYER
    assert config.diff_ids == (image.diff_id,)


def test_imported_layer_unpacks(sources: dict[str, Path], image, tmp_path: Path) -> None:
    store = MemoryContentStore()
    images = import_archive(store, sources["layout"])
    manifest, config = config_of(store, images[0].target)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    layer = manifest.layers[0]
    size = apply_layer(
        store.open(layer.digest),
        str(rootfs),
        media_type=layer.media_type,
        expected_diff_id=config.diff_ids[0],
        same_owner=os.geteuid() == 0,
    )
    assert size == len(image.layer_tar)
    assert os.access(rootfs / "bin/busybox", os.X_OK)
    assert os.stat(rootfs / "bin/sh").st_ino == os.stat(rootfs / "bin/busybox").st_ino


# -- corruption --------------------------------------------------------------------------


def copy_layout(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def test_corrupt_blob_in_a_layout_stores_nothing_of_it(
    sources: dict[str, Path], image, tmp_path: Path
) -> None:
    layout = copy_layout(sources["layout"], tmp_path / "bad")
    blob = layout / "blobs/sha256" / image.layer.hex
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    store = MemoryContentStore()
    with pytest.raises(CorruptBlobError, match=image.layer.digest):
        import_oci_layout(store, layout)
    assert image.layer.digest not in store.blobs
    assert image.manifest.digest not in store.blobs  # nothing points at missing content

    blob.write_bytes(image.layer.data[:-10])  # truncated
    with pytest.raises(CorruptBlobError, match="truncated"):
        import_oci_layout(MemoryContentStore(), layout)
    blob.write_bytes(image.layer.data + b"junk")  # too long
    with pytest.raises(CorruptBlobError, match="longer"):
        import_oci_layout(MemoryContentStore(), layout)
    blob.unlink()
    with pytest.raises(InvalidArchiveError, match="missing"):
        import_oci_layout(MemoryContentStore(), layout)


def rewrite_tar(src: Path, dest: Path, change) -> Path:  # type: ignore[no-untyped-def]
    with tarfile.open(src) as tin, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
            m, data = change(m, data)
            if m is None:
                continue
            if data is not None:
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
    return dest


def test_corrupt_docker_archives(sources: dict[str, Path], image, tmp_path: Path) -> None:
    def flip_layer(m: tarfile.TarInfo, data: bytes | None):  # type: ignore[no-untyped-def]
        if m.name.endswith("layer.tar") and data is not None:
            data = data[:600] + bytes([data[600] ^ 1]) + data[601:]
        return m, data

    bad = rewrite_tar(sources["docker"], tmp_path / "bad-layer.tar", flip_layer)
    store = MemoryContentStore()
    with pytest.raises(CorruptBlobError, match="diff_id"):
        import_docker_archive(store, bad)
    assert store.blobs == {}

    def edit_config(m: tarfile.TarInfo, data: bytes | None):  # type: ignore[no-untyped-def]
        if m.name.endswith(".json") and m.name != "manifest.json" and data is not None:
            data = data.replace(b'"sh"', b'"ash"')
        return m, data

    bad = rewrite_tar(sources["docker"], tmp_path / "bad-config.tar", edit_config)
    with pytest.raises(CorruptBlobError, match="its name says"):
        import_docker_archive(MemoryContentStore(), bad)

    def drop_layer(m: tarfile.TarInfo, data: bytes | None):  # type: ignore[no-untyped-def]
        return (None, None) if m.name.endswith("layer.tar") else (m, data)

    bad = rewrite_tar(sources["docker"], tmp_path / "no-layer.tar", drop_layer)
    with pytest.raises(InvalidArchiveError, match="missing"):
        import_docker_archive(MemoryContentStore(), bad)
    with pytest.raises(InvalidArchiveError):
        import_archive(MemoryContentStore(), sources["layout"] / "oci-layout")


def test_export_verifies_what_the_store_holds(sources: dict[str, Path], image, tmp_path) -> None:
    store = MemoryContentStore()
    images = import_archive(store, sources["layout"])
    store.blobs[image.layer.digest] = image.layer.data[:-1] + bytes([image.layer.data[-1] ^ 1])
    with pytest.raises(CorruptBlobError):
        export_oci_archive(store, images, tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()
    del store.blobs[image.layer.digest]
    with pytest.raises(BlobNotFoundError):
        export_oci_layout(store, images, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_an_already_exists_race_is_tolerated(sources: dict[str, Path], image) -> None:
    class RacingStore(MemoryContentStore):
        """exists() says no, then another writer wins: ingest raises AlreadyExists."""

        def ingest(self, stream, expected_digest, expected_size):  # type: ignore[no-untyped-def]
            super().ingest(stream, expected_digest, expected_size)
            raise AlreadyExists(f"content {expected_digest}: already exists")

    store = RacingStore()
    assert import_archive(store, sources["layout"])[0].target.digest == image.manifest.digest


# -- hand-made layouts: several platforms, names ------------------------------------------


def blob(data: bytes, media_type: str, **extra) -> tuple[dict, bytes]:  # type: ignore[no-untyped-def]
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}, data


def platform_image(arch: str, content: bytes) -> tuple[dict, dict[str, bytes]]:
    layer_tar = tar_layer(E("arch", data=content))
    layer_desc, layer = blob(gzip.compress(layer_tar, mtime=0), mt.OCI_LAYER_GZIP)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        }
    ).encode()
    config_desc, _ = blob(config, mt.OCI_CONFIG)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": config_desc,
            "layers": [layer_desc],
        }
    ).encode()
    manifest_desc, _ = blob(
        manifest, mt.OCI_MANIFEST, platform={"os": "linux", "architecture": arch}
    )
    blobs = {layer_desc["digest"]: layer, config_desc["digest"]: config}
    blobs[manifest_desc["digest"]] = manifest
    return manifest_desc, blobs


def write_layout(dest: Path, manifests: list[dict], blobs: dict[str, bytes]) -> Path:
    (dest / "blobs/sha256").mkdir(parents=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    for digest, data in blobs.items():
        (dest / "blobs/sha256" / digest[7:]).write_bytes(data)
    return dest


def multi_platform(tmp_path: Path, *, drop_other_layer: bool) -> tuple[Path, str, str]:
    host = host_platform().architecture
    other = "s390x" if host != "s390x" else "amd64"
    host_desc, host_blobs = platform_image(host, b"host")
    other_desc, other_blobs = platform_image(other, b"other")
    if drop_other_layer:
        layer = next(d for d, b in other_blobs.items() if b.startswith(b"\x1f\x8b"))
        del other_blobs[layer]
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [host_desc, other_desc]}
    ).encode()
    index_desc, _ = blob(
        index, mt.OCI_INDEX, annotations={"io.containerd.image.name": "example.com/multi:1"}
    )
    layout = write_layout(
        tmp_path / "multi", [index_desc], {**host_blobs, **other_blobs, index_desc["digest"]: index}
    )
    return layout, host_desc["digest"], other_desc["digest"]


def test_multi_platform_layout_imports_what_the_host_needs(tmp_path: Path) -> None:
    layout, host_manifest, other_manifest = multi_platform(tmp_path, drop_other_layer=True)
    store = MemoryContentStore()
    images = import_oci_layout(store, layout)
    assert [i.name for i in images] == ["example.com/multi:1"]
    assert images[0].target.media_type == mt.OCI_INDEX
    assert host_manifest in store.blobs
    assert other_manifest not in store.blobs  # incomplete in the layout: left out
    with pytest.raises(InvalidArchiveError, match="missing"):
        import_oci_layout(MemoryContentStore(), layout, all_platforms=True)
    # Asking for the other platform makes its missing layer an error.
    other = "s390x" if host_platform().architecture != "s390x" else "amd64"
    with pytest.raises(InvalidArchiveError, match="missing"):
        import_oci_layout(MemoryContentStore(), layout, platform=f"linux/{other}")
    # Export keeps the index and the host's manifest; the docker form picks the host's.
    export_oci_layout(store, images, tmp_path / "out")
    assert import_oci_layout(MemoryContentStore(), tmp_path / "out")[0].target == images[0].target
    with pytest.raises(BlobNotFoundError):
        export_oci_layout(store, images, tmp_path / "all", all_platforms=True)
    export_docker_archive(store, images, tmp_path / "d.tar")
    with pytest.raises((PlatformNotFoundError, BlobNotFoundError)):
        export_docker_archive(store, images, tmp_path / "e.tar", platform="linux/ppc64le")


def test_complete_multi_platform_layout_imports_every_platform(tmp_path: Path) -> None:
    layout, host_manifest, other_manifest = multi_platform(tmp_path, drop_other_layer=False)
    store = MemoryContentStore()
    import_oci_layout(store, layout)
    assert {host_manifest, other_manifest} <= set(store.blobs)


def test_names_from_annotations(tmp_path: Path) -> None:
    desc, blobs = platform_image(host_platform().architecture, b"x")
    tagged = {**desc, "annotations": {"org.opencontainers.image.ref.name": "v2"}}
    full = {**desc, "annotations": {"org.opencontainers.image.ref.name": "quay.io/a/b:c"}}
    layout = write_layout(tmp_path / "names", [tagged, full, desc], blobs)
    got = [i.name for i in import_oci_layout(MemoryContentStore(), layout, base_name="myrepo")]
    assert got == [
        "docker.io/library/myrepo:v2",
        "quay.io/a/b:c",
        f"docker.io/library/myrepo@{desc['digest']}",
    ]
    # Without a base name, a bare tag names nothing: the digest stands in.
    got = [i.name for i in import_oci_layout(MemoryContentStore(), layout)]
    assert got == [desc["digest"], "quay.io/a/b:c", desc["digest"]]


def test_hostile_archive_paths_are_not_followed(tmp_path: Path) -> None:
    # A digest is checked before it becomes a path: no blobs/sha256/../../ lookups.
    desc = {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:../../../etc/passwd", "size": 1}
    layout = write_layout(tmp_path / "bad-digest", [desc], {})
    with pytest.raises(InvalidArchiveError):
        import_oci_layout(MemoryContentStore(), layout)
    # docker-save paths that climb out of the archive (or the directory) are not read.
    for config in ("../../etc/passwd", "/etc/passwd"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = json.dumps([{"Config": config, "RepoTags": [], "Layers": []}]).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        with pytest.raises(InvalidArchiveError, match="missing"):
            import_docker_archive(MemoryContentStore(), buf)
