"""Authentication against real registries: htpasswd basic auth and bearer tokens from the
test's token server (scopes, caching, refresh tokens), credentials from the caller and from a
docker config.json."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from containerd_py import errdefs
from containerd_py.remotes import Credentials, CredentialStore, DockerConfig, Hosts, Registry
from tests.integration.remotes_common import client, seeded
from tests.registry import SERVICE, Mode, RegistryServer

pytestmark = pytest.mark.slow


def registry_with_config(reg: RegistryServer, tmp_path: Path, auths: dict[str, object]) -> Registry:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    return Registry(Hosts(certs_dir=tmp_path / "certs.d"), CredentialStore(DockerConfig.load(path)))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("mode", [Mode.BASIC, Mode.TOKEN], ids=["basic", "token"])
def test_refused_without_or_with_wrong_credentials(registry_factory, mode: Mode) -> None:
    reg = registry_factory(mode)
    seeded(reg)
    name = f"{reg.host}/library/busybox"
    anonymous = client(reg).repository(name)
    anonymous.ping()  # reachable; nothing to log in with
    with pytest.raises(errdefs.Unauthenticated, match="authentication required") as err:
        anonymous.resolve("latest")
    assert str(err.value).startswith(f"{name}:latest: resolving: ")

    wrong = client(reg).repository(name, credentials=Credentials("alice", "wrong"))
    with pytest.raises(errdefs.Unauthenticated, match="authentication failed for user 'alice'"):
        wrong.ping()
    with pytest.raises(errdefs.Unauthenticated, match="authentication failed for user 'alice'"):
        wrong.resolve("latest")

    right = client(reg).repository(name, credentials=Credentials("alice", reg.users["alice"]))
    right.ping()
    assert right.resolve("latest").size > 0


def test_basic_credentials_from_config_json(registry_basic: RegistryServer, tmp_path: Path):
    image = seeded(registry_basic)
    host = registry_basic.host
    password = registry_basic.users["alice"]
    for key in (host, f"https://{host}", f"http://{host}/v2/"):
        r = registry_with_config(
            registry_basic, tmp_path, {key: {"auth": b64(f"alice:{password}")}}
        )
        assert r.repository(f"{host}/library/busybox").resolve("latest").digest == (
            image.manifest_digest
        )
    # The caller's credentials win over the file's, both ways.
    r = registry_with_config(registry_basic, tmp_path, {host: {"auth": b64("alice:stale")}})
    good = Credentials("alice", password)
    assert r.repository(f"{host}/library/busybox", credentials=good).resolve("latest")
    r = registry_with_config(
        registry_basic, tmp_path, {host: {"username": "alice", "password": password}}
    )
    with pytest.raises(errdefs.Unauthenticated, match="user 'bob'"):
        r.repository(f"{host}/library/busybox", credentials=Credentials("bob", "wrong")).resolve(
            "latest"
        )


def test_token_scopes_service_and_user(registry_token: RegistryServer) -> None:
    image = seeded(registry_token)
    server = registry_token.token_server
    assert server is not None
    before = len(server.requests)
    reg = client(registry_token)
    alice = Credentials("alice", registry_token.users["alice"])
    pull = reg.repository(f"{registry_token.host}/library/busybox", credentials=alice)
    pull.resolve("latest")
    pull.fetch_manifest("latest")
    with pull.open_blob(image.layer["digest"]) as blob:
        blob.read()
    target = reg.repository(f"{registry_token.host}/team/app", credentials=alice)
    assert target.mount_blob(image.layer["digest"], "library/busybox")
    target.upload_blob(
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        5,
        io.BytesIO(b"hello"),
    )
    got = [(r.user, r.service, r.scopes) for r in server.requests[before:]]
    assert got == [
        ("alice", SERVICE, ("repository:library/busybox:pull",)),
        ("alice", SERVICE, ("repository:library/busybox:pull", "repository:team/app:pull,push")),
        ("alice", SERVICE, ("repository:team/app:pull,push",)),
    ]


def test_token_cached_until_expiry(registry_token: RegistryServer) -> None:
    seeded(registry_token)
    server = registry_token.token_server
    assert server is not None
    reg = client(registry_token)
    alice = Credentials("alice", registry_token.users["alice"])
    r = reg.repository(f"{registry_token.host}/library/busybox", credentials=alice)
    now = [1000.0]
    r.authorizer.clock = lambda: now[0]
    before = len(server.requests)
    for _ in range(3):
        r.resolve("latest")
    assert len(server.requests) == before + 1
    now[0] += server.expires_in  # past expiry (less the renewal margin)
    r.resolve("latest")
    assert len(server.requests) == before + 2


def test_access_token_field_and_anonymous_pull(registry_factory) -> None:
    reg = registry_factory(
        Mode.TOKEN, token_options={"token_field": "access_token", "anonymous": frozenset({"pull"})}
    )
    image = seeded(reg)
    anonymous = client(reg).repository(f"{reg.host}/library/busybox")
    assert anonymous.resolve("latest").digest == image.manifest_digest
    assert reg.token_server is not None
    assert reg.token_server.requests[-1].user is None
    with pytest.raises(errdefs.Unauthenticated, match="authentication required"):
        anonymous.upload_blob(
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            5,
            io.BytesIO(b"hello"),
        )


def test_identity_token_from_config_json(registry_token: RegistryServer, tmp_path: Path) -> None:
    image = seeded(registry_token)
    server = registry_token.token_server
    assert server is not None
    server.refresh_tokens["refresh-123"] = "bob"
    host = registry_token.host
    r = registry_with_config(
        registry_token, tmp_path, {host: {"auth": b64("<token>:"), "identitytoken": "refresh-123"}}
    )
    assert r.repository(f"{host}/library/busybox").resolve("latest").digest == (
        image.manifest_digest
    )
    assert server.requests[-1].user == "bob"
    bad = registry_with_config(
        registry_token, tmp_path, {host: {"auth": b64("<token>:"), "identitytoken": "stale"}}
    )
    with pytest.raises(errdefs.Unauthenticated, match="authentication failed"):
        bad.repository(f"{host}/library/busybox").resolve("latest")
