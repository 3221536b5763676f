"""The importer and exporter against the real content store (containerd_py.content), not
the test double: the Protocol in containerd_py/images/store.py is what binds them."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pytest

from containerd_py.content.store import ContentStore as DiskContentStore
from containerd_py.errdefs import NotFound
from containerd_py.images import export_oci_archive, import_archive
from containerd_py.images.errors import CorruptBlobError
from containerd_py.images.store import ContentStore
from mkimage import build_image, write_docker_archive, write_oci_layout
from mkimage.busybox import DEFAULT_BUSYBOX

pytestmark = pytest.mark.skipif(
    not DEFAULT_BUSYBOX.exists(), reason="needs /bin/busybox (Debian package busybox-static)"
)


class Namespaced:
    """The disk store seen through the images Protocol. exists() is derived from info()
    where the store has no exists() of its own."""

    def __init__(self, store: DiskContentStore) -> None:
        self.store = store

    def ingest(self, stream: BinaryIO, expected_digest: str, expected_size: int) -> object:
        return self.store.ingest(stream, expected_digest, expected_size)

    def open(self, digest: str) -> BinaryIO:
        return self.store.open(digest)

    def info(self, digest: str):  # type: ignore[no-untyped-def]
        return self.store.info(digest)

    def exists(self, digest: str) -> bool:
        own = getattr(self.store, "exists", None)
        if own is not None:
            return bool(own(digest))
        try:
            self.store.info(digest)
        except NotFound:
            return False
        return True


@pytest.fixture
def store(tmp_path: Path):
    disk = DiskContentStore(tmp_path / "root")
    try:
        yield Namespaced(disk)
    finally:
        disk.close()


def test_round_trip_through_the_disk_store(store: ContentStore, tmp_path: Path) -> None:
    image = build_image()
    write_oci_layout(tmp_path / "layout")
    write_docker_archive(tmp_path / "docker.tar")
    oci = import_archive(store, tmp_path / "layout")
    assert oci[0].target.digest == image.manifest.digest
    assert store.info(image.layer.digest).size == image.layer.size
    docker = import_archive(store, tmp_path / "docker.tar")
    assert store.exists(image.diff_id)  # the uncompressed layer.tar, as saved
    # importing again is a no-op, not an error
    assert import_archive(store, tmp_path / "layout") == oci
    export_oci_archive(store, oci + docker, tmp_path / "out.tar")
    assert import_archive(store, tmp_path / "out.tar") == oci + docker


def test_a_corrupt_blob_never_lands_in_the_disk_store(store: ContentStore, tmp_path: Path) -> None:
    image = build_image()
    write_oci_layout(tmp_path / "layout")
    blob = tmp_path / "layout/blobs/sha256" / image.layer.hex
    blob.write_bytes(image.layer.data[:-1] + bytes([image.layer.data[-1] ^ 1]))
    with pytest.raises(CorruptBlobError):
        import_archive(store, tmp_path / "layout")
    assert not store.exists(image.layer.digest)
    assert not store.exists(image.manifest.digest)
