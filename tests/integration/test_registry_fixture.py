"""The registry fixtures are real registries that refuse what they should: the remotes
tests rely on a BASIC registry that really wants a password and a TLS one that really needs
its CA, or they would prove nothing."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from tests.registry import SERVICE, Mode, RegistryError, RegistryServer, sha256


def test_seeded_image_reads_back_with_skopeo(registry: RegistryServer, tmp_path: Path) -> None:
    digest = registry.seed("library/busybox:1")
    raw = registry.inspect_raw("library/busybox:1")
    assert sha256(raw) == digest
    out = registry.copy_out(f"library/busybox@{digest}", tmp_path / "copy")
    manifest = json.loads((out / "manifest.json").read_bytes())
    for desc in [manifest["config"], *manifest["layers"]]:
        assert sha256((out / desc["digest"].removeprefix("sha256:")).read_bytes()) == desc["digest"]


def test_basic_registry_refuses_anonymous_and_wrong_password(registry_basic: RegistryServer):
    conn = registry_basic.connection()
    try:
        conn.request("GET", "/v2/")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401
        assert resp.getheader("WWW-Authenticate", "").startswith("Basic ")
    finally:
        conn.close()
    user = next(iter(registry_basic.users))
    registry_basic.users[user] = "wrong"
    with pytest.raises(RegistryError, match=r"(?i)unauthorized|authentication"):
        registry_basic.seed()


def test_tls_registry_is_refused_without_its_ca(registry_tls: RegistryServer) -> None:
    assert registry_tls.url.startswith("https://")
    registry_tls.ca_file = None  # the system CAs only
    conn = registry_tls.connection()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            conn.request("GET", "/v2/")
    finally:
        conn.close()


def test_token_registry_challenges_and_grants_per_scope(registry_token: RegistryServer) -> None:
    conn = registry_token.connection()
    try:
        conn.request("GET", "/v2/library/busybox/tags/list")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 401
    challenge = resp.getheader("WWW-Authenticate", "")
    assert challenge.startswith("Bearer ")
    assert f'service="{SERVICE}"' in challenge
    assert 'scope="repository:library/busybox:pull"' in challenge
    registry_token.seed()
    # An anonymous token grants nothing by default; a reader gets pull only.
    server = registry_token.token_server
    assert server is not None
    body = server.issue(None, SERVICE, ["repository:library/busybox:pull"])
    assert server.requests[-1].granted == (
        {"type": "repository", "name": "library/busybox", "actions": []},
    )
    status = _get_with_token(registry_token, str(body["token"]))
    assert status == 401
    body = server.issue("alice", SERVICE, ["repository:library/busybox:pull"])
    assert _get_with_token(registry_token, str(body["token"])) == 200


def _get_with_token(reg: RegistryServer, token: str) -> int:
    conn = reg.connection()
    try:
        conn.request(
            "GET", "/v2/library/busybox/tags/list", headers={"Authorization": f"Bearer {token}"}
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_stop_removes_everything(registry_factory) -> None:
    reg = registry_factory(Mode.TOKEN)
    reg.stop()
    assert reg.proc.poll() is not None
    assert not reg.workdir.exists()
