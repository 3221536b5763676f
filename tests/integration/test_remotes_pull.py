"""The read side of the registry client against a real docker-registry, in every mode
(plain http, htpasswd, TLS from a test CA, token auth): what a pull is made of."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from containerd_py import errdefs
from containerd_py.content.descriptor import OCI_MANIFEST
from tests.integration.remotes_common import corrupt, repo, seeded, stored_blob
from tests.registry import RegistryServer

pytestmark = pytest.mark.slow


def test_ping_resolve_fetch_manifest_and_blobs(registry: RegistryServer) -> None:
    image = seeded(registry)
    r = repo(registry)
    r.ping()

    desc = r.resolve("latest")
    assert desc.digest == image.manifest_digest
    assert desc.media_type == OCI_MANIFEST
    assert desc.size == len(registry.inspect_raw("library/busybox:latest"))
    assert r.resolve(image.manifest_digest) == desc

    data, media_type, digest = r.fetch_manifest("latest")
    assert (media_type, digest) == (OCI_MANIFEST, image.manifest_digest)
    assert json.loads(data) == image.manifest
    assert r.fetch_manifest(image.manifest_digest).data == data

    for blob in (image.config, image.layer):
        assert r.blob_size(blob["digest"]) == blob["size"]
        with r.open_blob(blob["digest"], size=blob["size"]) as reader:
            content = reader.read()
        assert hashlib.sha256(content).hexdigest() == blob["digest"].removeprefix("sha256:")
        assert content == stored_blob(registry, blob["digest"]).read_bytes()


def test_blob_resumes_from_an_offset(registry_plain: RegistryServer) -> None:
    image = seeded(registry_plain)
    r = repo(registry_plain)
    whole = stored_blob(registry_plain, image.layer["digest"]).read_bytes()
    for offset in (1, 4096, len(whole) - 1, len(whole)):
        with r.open_blob(image.layer["digest"], offset=offset, size=len(whole)) as reader:
            assert reader.offset == offset
            assert reader.read() == whole[offset:]


def test_concurrent_blob_downloads_share_one_client(registry_token: RegistryServer) -> None:
    image = seeded(registry_token)
    server = registry_token.token_server
    assert server is not None
    before = len(server.requests)  # skopeo's, while seeding
    r = repo(registry_token)
    wanted = [image.layer, image.config] * 4
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def fetch(i: int, blob: dict[str, object]) -> None:
        try:
            with r.open_blob(str(blob["digest"]), size=int(blob["size"])) as reader:  # type: ignore[arg-type]
                chunks = []
                while chunk := reader.read(65536):
                    chunks.append(chunk)
                results[i] = b"".join(chunks)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=fetch, args=(i, b)) for i, b in enumerate(wanted)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, blob in enumerate(wanted):
        assert "sha256:" + hashlib.sha256(results[i]).hexdigest() == blob["digest"]
    # One token for all of them: the threads that met the 401 together fetched it once.
    assert [r.scopes for r in server.requests[before:]] == [("repository:library/busybox:pull",)]


def test_unknown_repository_tag_and_blob(registry: RegistryServer) -> None:
    seeded(registry)
    r = repo(registry)
    host = registry.host
    with pytest.raises(errdefs.NotFound) as err:
        r.resolve("nosuchtag")
    assert str(err.value).startswith(f"{host}/library/busybox:nosuchtag: ")
    assert "manifest unknown" in str(err.value)
    with pytest.raises(errdefs.NotFound, match="manifest unknown"):
        r.fetch_manifest("sha256:" + "0" * 64)

    missing = repo(registry, "nobody/nothing")
    with pytest.raises(errdefs.NotFound) as err:
        missing.resolve("latest")
    assert str(err.value).startswith(f"{host}/nobody/nothing:latest: ")
    assert "\n" not in str(err.value)

    absent = "sha256:" + "1" * 64
    assert r.blob_size(absent) is None
    with pytest.raises(errdefs.NotFound) as err:
        r.open_blob(absent)
    assert str(err.value).startswith(f"{host}/library/busybox@{absent}: fetching blob: ")


def test_corrupted_blob_is_a_digest_mismatch(registry_plain: RegistryServer) -> None:
    image = seeded(registry_plain)
    corrupt(stored_blob(registry_plain, image.layer["digest"]))
    r = repo(registry_plain)
    reader = r.open_blob(image.layer["digest"], size=image.layer["size"])
    with pytest.raises(errdefs.FailedPrecondition, match="digest mismatch") as err, reader:
        while reader.read(65536):
            pass
    assert image.layer["digest"] in str(err.value)


def test_wrong_size_is_refused(registry_plain: RegistryServer) -> None:
    image = seeded(registry_plain)
    r = repo(registry_plain)
    with pytest.raises(errdefs.FailedPrecondition, match="size mismatch"):
        r.open_blob(image.config["digest"], size=int(image.config["size"]) + 1)  # type: ignore[call-overload]


def test_corrupted_manifest_is_a_digest_mismatch(registry_plain: RegistryServer) -> None:
    image = seeded(registry_plain)
    # Still a valid manifest (the registry parses what it serves), with other bytes.
    path = stored_blob(registry_plain, image.manifest_digest)
    digest = str(image.layer["digest"]).encode()
    other = digest[:-1] + (b"0" if digest[-1:] != b"0" else b"1")
    path.write_bytes(path.read_bytes().replace(digest, other))
    r = repo(registry_plain)
    with pytest.raises(errdefs.FailedPrecondition, match="digest mismatch"):
        r.fetch_manifest(image.manifest_digest)
    # By tag, the registry still announces the digest the tag points at.
    with pytest.raises(errdefs.FailedPrecondition, match="digest mismatch: registry said"):
        r.fetch_manifest("latest")


def test_list_tags(registry: RegistryServer) -> None:
    seeded(registry, "library/busybox:1")
    registry.seed("library/busybox:2")
    assert sorted(repo(registry).list_tags()) == ["1", "2"]


def test_bad_references_are_refused_before_any_request(registry_plain: RegistryServer) -> None:
    r = repo(registry_plain)
    with pytest.raises(errdefs.InvalidArgument, match="invalid tag or digest"):
        r.resolve("../etc")
    with pytest.raises(errdefs.InvalidArgument, match="invalid digest"):
        r.open_blob("sha256:abc")
