"""The write side of the registry client against a real docker-registry in every mode: blob
uploads (monolithic and chunked), cross-repository mounts and manifests, read back by skopeo
so that our own reader is not the judge."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from containerd_py import errdefs
from containerd_py.content.descriptor import OCI_MANIFEST
from containerd_py.remotes import Credentials
from tests.integration.remotes_common import client, repo, seeded, stored_blob
from tests.registry import Mode, RegistryServer

pytestmark = pytest.mark.slow


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(reg: RegistryServer, path: str, *, chunk_size: int | None) -> tuple[str, bytes]:
    """Pushes an image of our own making (random layer) with the client; returns the
    manifest digest and the layer."""
    layer = os.urandom(300_000)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    r = repo(reg, path, push=True)
    for blob in (layer, config):
        r.upload_blob(sha256(blob), len(blob), io.BytesIO(blob), chunk_size=chunk_size)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    assert r.put_manifest("v1", OCI_MANIFEST, manifest) == sha256(manifest)
    return sha256(manifest), layer


@pytest.mark.parametrize("chunk_size", [None, 64 * 1024], ids=["monolithic", "chunked"])
def test_uploaded_image_reads_back_with_skopeo(
    registry: RegistryServer, tmp_path: Path, chunk_size: int | None
) -> None:
    digest, layer = push_image(registry, "pushed/app", chunk_size=chunk_size)
    assert sha256(registry.inspect_raw("pushed/app:v1")) == digest
    copy = registry.copy_out(f"pushed/app@{digest}", tmp_path / "copy")
    assert (copy / sha256(layer).removeprefix("sha256:")).read_bytes() == layer
    assert stored_blob(registry, sha256(layer)).read_bytes() == layer


def test_chunk_boundaries(registry_plain: RegistryServer) -> None:
    r = repo(registry_plain, "chunks/edge", push=True)
    for size, chunk in [(0, 10), (1, 10), (10, 10), (11, 10), (4096, 1000)]:
        blob = os.urandom(size)
        r.upload_blob(sha256(blob), size, io.BytesIO(blob), chunk_size=chunk)
        assert r.blob_size(sha256(blob)) == size
        assert stored_blob(registry_plain, sha256(blob)).read_bytes() == blob


def test_mount_across_repositories(registry: RegistryServer) -> None:
    image = seeded(registry)
    target = repo(registry, "mounted/copy", push=True)
    assert target.blob_size(image.layer["digest"]) is None
    assert target.mount_blob(image.layer["digest"], "library/busybox") is True
    assert target.blob_size(image.layer["digest"]) == image.layer["size"]
    # A blob the source does not have: no mount, and the session opened instead is gone.
    absent = sha256(b"not there")
    assert target.mount_blob(absent, "library/busybox") is False
    assert target.blob_size(absent) is None
    if registry.token_server is not None:
        asked = [r.scopes for r in registry.token_server.requests]
        assert ("repository:library/busybox:pull", "repository:mounted/copy:pull,push") in asked


def test_put_manifest_by_digest_and_mismatches(registry_plain: RegistryServer) -> None:
    image = seeded(registry_plain)
    r = repo(registry_plain, "library/busybox", push=True)
    raw = registry_plain.inspect_raw("library/busybox:latest")
    assert r.put_manifest(image.manifest_digest, OCI_MANIFEST, raw) == image.manifest_digest
    with pytest.raises(errdefs.FailedPrecondition, match="digest mismatch"):
        r.put_manifest("sha256:" + "2" * 64, OCI_MANIFEST, raw)
    # A manifest whose blobs were never pushed is refused by the registry.
    other = repo(registry_plain, "empty/repo", push=True)
    with pytest.raises(errdefs.FailedPrecondition, match="blob unknown") as err:
        other.put_manifest("v1", OCI_MANIFEST, raw)
    assert str(err.value).startswith(f"{registry_plain.host}/empty/repo:v1: pushing manifest: ")


def test_upload_with_the_wrong_digest_is_refused_and_not_stored(
    registry: RegistryServer,
) -> None:
    r = repo(registry, "bad/upload", push=True)
    blob = b"x" * 5000
    wrong = sha256(b"y" * 5000)
    for chunk_size in (None, 2000):
        with pytest.raises(errdefs.FailedPrecondition, match="digest mismatch"):
            r.upload_blob(wrong, len(blob), io.BytesIO(blob), chunk_size=chunk_size)
        assert r.blob_size(wrong) is None
        assert r.blob_size(sha256(blob)) is None


def test_short_source_is_refused(registry_plain: RegistryServer) -> None:
    r = repo(registry_plain, "bad/short", push=True)
    blob = b"z" * 1000
    for chunk_size in (None, 300):
        with pytest.raises(errdefs.FailedPrecondition, match="200 bytes short"):
            r.upload_blob(sha256(blob + b"z" * 200), 1200, io.BytesIO(blob), chunk_size=chunk_size)
        assert r.blob_size(sha256(blob + b"z" * 200)) is None
    # The client still works after an aborted request on its connection.
    r.upload_blob(sha256(blob), 1000, io.BytesIO(blob))
    assert r.blob_size(sha256(blob)) == 1000


def test_readonly_user_cannot_push(registry_factory) -> None:
    reg = registry_factory(Mode.TOKEN, token_options={"readonly": frozenset({"bob"})})
    seeded(reg)
    r = client(reg).repository(
        f"{reg.host}/library/busybox", credentials=Credentials("bob", reg.users["bob"])
    )
    assert r.resolve("latest").media_type == OCI_MANIFEST
    blob = b"nope"
    with pytest.raises(errdefs.PermissionDenied) as err:
        r.upload_blob(sha256(blob), len(blob), io.BytesIO(blob))
    assert "access denied for user 'bob'" in str(err.value)
    assert str(err.value).startswith(f"{reg.host}/library/busybox@{sha256(blob)}: uploading blob")
