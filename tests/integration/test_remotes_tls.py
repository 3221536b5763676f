"""TLS and plain http against real registries: a CA given through a docker-style certs.d,
refusal without it, insecure registries, the loopback http fallback, unreachable ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from containerd_py import errdefs
from containerd_py.remotes import Hosts, Registry
from containerd_py.remotes.hosts import Scheme
from tests.integration.remotes_common import seeded
from tests.registry import RegistryServer, free_port

pytestmark = pytest.mark.slow


def test_verified_with_the_ca_from_certs_dir(registry_tls: RegistryServer, tmp_path: Path):
    image = seeded(registry_tls)
    certs = tmp_path / "certs.d"
    (certs / registry_tls.host).mkdir(parents=True)
    assert registry_tls.ca_file is not None
    (certs / registry_tls.host / "ca.crt").write_bytes(registry_tls.ca_file.read_bytes())
    r = Registry(Hosts(certs_dir=certs)).repository(f"{registry_tls.host}/library/busybox")
    r.ping()
    assert r.resolve("latest").digest == image.manifest_digest
    # The certificate also names localhost.
    port = registry_tls.port
    (certs / f"localhost:{port}").mkdir()
    (certs / f"localhost:{port}" / "ca.crt").write_bytes(registry_tls.ca_file.read_bytes())
    r = Registry(Hosts(certs_dir=certs)).repository(f"localhost:{port}/library/busybox")
    assert r.resolve("latest").digest == image.manifest_digest


def test_refused_without_the_ca(registry_tls: RegistryServer, tmp_path: Path) -> None:
    r = Registry(Hosts(certs_dir=tmp_path / "empty")).repository(
        f"{registry_tls.host}/library/busybox"
    )
    for call in (r.ping, lambda: r.resolve("latest")):
        with pytest.raises(errdefs.Unavailable) as err:
            call()
        message = str(err.value)
        assert f"TLS: certificate verification failed for {registry_tls.host}" in message
        assert "\n" not in message
    # Another host's CA is no help, and there is no falling back to http for a TLS registry.
    other = tmp_path / "certs.d" / "127.0.0.1:1"
    other.mkdir(parents=True)
    assert registry_tls.ca_file is not None
    (other / "ca.crt").write_bytes(registry_tls.ca_file.read_bytes())
    r = Registry(Hosts(certs_dir=tmp_path / "certs.d")).repository(
        f"{registry_tls.host}/library/busybox"
    )
    with pytest.raises(errdefs.Unavailable, match="certificate verification failed"):
        r.resolve("latest")


def test_insecure_registry_skips_verification(registry_tls: RegistryServer, tmp_path: Path):
    image = seeded(registry_tls)
    hosts = Hosts(certs_dir=tmp_path / "empty", insecure=(registry_tls.host,))
    r = Registry(hosts).repository(f"{registry_tls.host}/library/busybox")
    assert r.resolve("latest").digest == image.manifest_digest
    assert r.transport.scheme(r.config) is Scheme.HTTPS


def test_loopback_plain_registry_falls_back_to_http(registry_plain: RegistryServer, tmp_path):
    image = seeded(registry_plain)
    r = Registry(Hosts(certs_dir=tmp_path)).repository(f"{registry_plain.host}/library/busybox")
    assert r.config.scheme is Scheme.HTTPS
    assert r.resolve("latest").digest == image.manifest_digest
    assert r.transport.scheme(r.config) is Scheme.HTTP
    # Asked for directly, plain http needs no https attempt at all.
    r = Registry(Hosts(certs_dir=tmp_path)).repository(
        f"{registry_plain.host}/library/busybox", plain_http=True
    )
    assert r.config.scheme is Scheme.HTTP
    assert r.resolve("latest").digest == image.manifest_digest


def test_plain_http_to_a_tls_registry_fails_cleanly(registry_tls: RegistryServer, tmp_path):
    r = Registry(Hosts(certs_dir=tmp_path)).repository(
        f"{registry_tls.host}/library/busybox", plain_http=True
    )
    with pytest.raises(errdefs.PyContainerdError) as err:
        r.resolve("latest")
    assert str(err.value).startswith(f"{registry_tls.host}/library/busybox:latest: resolving: ")
    assert "\n" not in str(err.value)


def test_plain_http_refused_for_other_hosts() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="plain http refused for registry"):
        Registry().repository("registry.example:5000/app", plain_http=True)


def test_unreachable_port(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    for plain in (False, True):
        r = Registry(Hosts(certs_dir=tmp_path)).repository(f"{host}/app", plain_http=plain)
        with pytest.raises(errdefs.Unavailable) as err:
            r.resolve("latest")
        assert str(err.value) == (
            f"{host}/app:latest: resolving: registry {host} unreachable: connection refused"
        )
        with pytest.raises(errdefs.Unavailable, match=f"{host}: ping: registry {host} unreachable"):
            r.ping()
