"""Pull and push to registries that want credentials (htpasswd, bearer tokens) or TLS with
a private CA: the caller's --user, the daemon's docker-style auth file, refusals as one
line, and the certs dir the daemon is configured with."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci_images import sha256
from tests.registry import RegistryServer
from tests.transfer import (
    DaemonFactory,
    collect,
    content_digests,
    daemon_factory,
    fails,
    image_names,
    import_busybox,
    pyctr,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs /bin/busybox"),
]

BUSYBOX = "docker.io/library/busybox:latest"


@pytest.fixture
def daemons(short_tmp: Path) -> Iterator[DaemonFactory]:
    with daemon_factory(short_tmp) as factory:
        yield factory


def _login(reg: RegistryServer) -> tuple[str, str]:
    user = next(iter(reg.users))
    return user, reg.users[user]


def _auth_file(path: Path, host: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_credentials_from_the_caller_or_the_daemons_auth_file(
    mode: str, request: pytest.FixtureRequest, daemons: DaemonFactory, short_tmp: Path
) -> None:
    reg: RegistryServer = request.getfixturevalue(f"registry_{mode}")
    user, password = _login(reg)
    ref = f"{reg.host}/private/bb:1"
    a = daemons("a")
    digest = import_busybox(a, short_tmp)

    refused = fails(a, "images", "push", "--plain-http", ref, BUSYBOX)
    assert reg.host in refused and "authentication required" in refused
    pyctr(a, "images", "push", "--plain-http", "--user", f"{user}:{password}", ref, BUSYBOX)
    assert sha256(reg.inspect_raw("private/bb:1")) == digest

    b = daemons("b")
    wrong = fails(b, "images", "pull", "--plain-http", "--user", f"{user}:not-{password}", ref)
    assert f"authentication failed for user '{user}'" in wrong
    assert image_names(b) == []
    collect(b)
    assert content_digests(b) == set()
    pyctr(b, "images", "pull", "--plain-http", "--user", f"{user}:{password}", ref)
    assert pyctr(b, "run", "--rm", ref, "r1", "echo", "hi").stdout == "hi\n"

    # No --user: the daemon's auth file has the login.
    c = daemons("c", auth_file=_auth_file(short_tmp / "auth.json", reg.host, user, password))
    pyctr(c, "images", "pull", "--plain-http", ref)
    assert image_names(c) == [ref]
    if reg.token_server is not None:
        scopes = reg.token_server.scopes_asked()
        assert "repository:private/bb:pull" in scopes
        assert "repository:private/bb:pull,push" in scopes


def test_tls_with_the_ca_in_the_daemons_certs_dir(
    registry_tls: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    assert registry_tls.certs_dir is not None
    ref = f"{registry_tls.host}/secure/bb:1"
    a = daemons("a", certs_dir=registry_tls.certs_dir)
    digest = import_busybox(a, short_tmp)
    pyctr(a, "images", "push", ref, BUSYBOX)
    assert sha256(registry_tls.inspect_raw("secure/bb:1")) == digest
    pyctr(a, "images", "rm", ref)
    pyctr(a, "images", "pull", ref, ns="tls")
    assert pyctr(a, "run", "--rm", ref, "r1", "echo", "hi", ns="tls").stdout == "hi\n"

    # Without the CA the certificate is not trusted; nothing is stored.
    b = daemons("b")
    refused = fails(b, "images", "pull", ref)
    assert "certificate verification failed" in refused and registry_tls.host in refused
    assert image_names(b) == []
    # --skip-verify is the caller's way around it.
    pyctr(b, "images", "pull", "--skip-verify", ref)
    assert image_names(b) == [ref]
