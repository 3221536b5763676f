"""Our exports read by skopeo, and skopeo's layouts read by our importer.

skopeo (Debian package) is containers/image's command line: if it accepts our OCI layouts,
OCI archives and docker-save archives byte for byte (same digests), so will the other
tools built on the same specs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from containerd_py.images import (
    export_docker_archive,
    export_oci_archive,
    export_oci_layout,
    import_archive,
    import_oci_layout,
    parse_config,
    parse_manifest,
)
from mkimage import build_image, write_docker_archive, write_oci_layout
from mkimage.busybox import DEFAULT_BUSYBOX
from tests.unit.test_images_fakes import MemoryContentStore

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"

pytestmark = [
    pytest.mark.skipif(
        not os.access(SKOPEO, os.X_OK), reason="skopeo not installed (Debian package skopeo)"
    ),
    pytest.mark.skipif(
        not DEFAULT_BUSYBOX.exists(), reason="needs /bin/busybox (Debian package busybox-static)"
    ),
]

NAME = "docker.io/library/busybox:latest"


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    # --insecure-policy: the test must not depend on the host's /etc/containers/policy.json.
    proc = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_dir_copy(copy: Path, store: MemoryContentStore, manifest_digest: str) -> None:
    """skopeo's dir: transport keeps the manifest bytes and names blobs by their hex."""
    manifest_bytes = (copy / "manifest.json").read_bytes()
    assert sha256(manifest_bytes) == manifest_digest
    manifest = json.loads(manifest_bytes)
    for desc in [manifest["config"], *manifest["layers"]]:
        data = (copy / desc["digest"].removeprefix("sha256:")).read_bytes()
        assert sha256(data) == desc["digest"]
        assert data == store.blobs[desc["digest"]]


@pytest.fixture(scope="module")
def image():
    return build_image()


@pytest.fixture
def oci_store(tmp_path: Path):
    store = MemoryContentStore()
    write_oci_layout(tmp_path / "src")
    return store, import_archive(store, tmp_path / "src")


@pytest.fixture
def docker_store(tmp_path: Path):
    store = MemoryContentStore()
    write_docker_archive(tmp_path / "src.tar")
    return store, import_archive(store, tmp_path / "src.tar")


@pytest.mark.parametrize("origin", ["oci_store", "docker_store"])
def test_skopeo_reads_our_oci_layout(origin: str, request, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, images = request.getfixturevalue(origin)
    export_oci_layout(store, images, tmp_path / "layout")
    skopeo("copy", f"oci:{tmp_path / 'layout'}:latest", f"dir:{tmp_path / 'copy'}")
    check_dir_copy(tmp_path / "copy", store, images[0].target.digest)


def test_skopeo_reads_our_oci_archive(oci_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, images = oci_store
    export_oci_archive(store, images, tmp_path / "oci.tar")
    skopeo("copy", f"oci-archive:{tmp_path / 'oci.tar'}:latest", f"dir:{tmp_path / 'copy'}")
    check_dir_copy(tmp_path / "copy", store, images[0].target.digest)


def test_skopeo_reads_our_docker_archive(oci_store, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, images = oci_store
    export_docker_archive(store, images, tmp_path / "docker.tar")
    ref = f"docker-archive:{tmp_path / 'docker.tar'}"
    config: dict[str, Any] = json.loads(skopeo("inspect", "--config", ref).stdout)
    assert config["rootfs"]["diff_ids"] == [image.diff_id]
    info = json.loads(skopeo("inspect", ref).stdout)
    assert info["RepoTags"] == [] or "latest" in info["RepoTags"]
    # and what skopeo makes of it comes back in with the same layer content
    skopeo("copy", ref, f"oci:{tmp_path / 'back'}:latest")
    again = MemoryContentStore()
    back = import_oci_layout(again, tmp_path / "back", base_name="busybox")
    manifest = parse_manifest(again.blobs[back[0].target.digest], back[0].target.media_type)
    assert parse_config(again.blobs[manifest.config.digest]).diff_ids == (image.diff_id,)


def test_we_read_what_skopeo_makes_of_a_docker_archive(image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_docker_archive(tmp_path / "docker.tar")
    skopeo("copy", f"docker-archive:{tmp_path / 'docker.tar'}", f"oci:{tmp_path / 'oci'}:latest")
    store = MemoryContentStore()
    images = import_oci_layout(store, tmp_path / "oci", base_name="busybox")
    assert [i.name for i in images] == [NAME]
    manifest = parse_manifest(store.blobs[images[0].target.digest], images[0].target.media_type)
    config = parse_config(store.blobs[manifest.config.digest])
    assert config.diff_ids == (image.diff_id,)
    assert len(manifest.layers) == 1
    # and it goes out again unchanged
    export_oci_layout(store, images, tmp_path / "out")
    skopeo("copy", f"oci:{tmp_path / 'out'}:latest", f"dir:{tmp_path / 'copy'}")
    check_dir_copy(tmp_path / "copy", store, images[0].target.digest)
