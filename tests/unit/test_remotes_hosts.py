"""Which scheme, TLS settings and fallback a registry host gets."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from containerd_py.errdefs import InvalidArgument
from containerd_py.remotes.hosts import (
    DEFAULT_CERTS_DIR,
    Fallback,
    Hosts,
    Scheme,
    is_loopback,
    split_host,
)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("registry.example", False),
        ("localhost.example:5000", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_split_host() -> None:
    assert split_host("h:5000") == ("h", 5000)
    assert split_host("h") == ("h", None)
    assert split_host("[::1]:5000") == ("::1", 5000)
    assert split_host("[::1]") == ("::1", None)


def test_default_is_verified_https_without_fallback() -> None:
    cfg = Hosts().config("registry.example")
    assert Hosts().certs_dir == DEFAULT_CERTS_DIR == Path("/etc/pydocker/certs.d")
    assert cfg.scheme is Scheme.HTTPS
    assert cfg.fallback is Fallback.NEVER
    assert cfg.ssl_context is not None
    assert cfg.ssl_context.verify_mode is ssl.CERT_REQUIRED
    assert cfg.ssl_context.check_hostname


def test_docker_io_is_served_by_registry_1() -> None:
    cfg = Hosts().config("docker.io")
    assert (cfg.name, cfg.host) == ("docker.io", "registry-1.docker.io")


def test_loopback_falls_back_only_on_handshake_errors() -> None:
    cfg = Hosts().config("127.0.0.1:5000")
    assert cfg.scheme is Scheme.HTTPS
    assert cfg.fallback is Fallback.TLS_HANDSHAKE_ERROR
    assert cfg.ssl_context is not None and cfg.ssl_context.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize("listed", ["reg.example:5000", "10.0.0.0/8", "10.1.2.3"])
def test_insecure_registries_skip_verification_and_fall_back(listed: str) -> None:
    host = "reg.example:5000" if listed == "reg.example:5000" else "10.1.2.3:5000"
    cfg = Hosts(insecure=(listed,)).config(host)
    assert cfg.insecure
    assert cfg.fallback is Fallback.ANY_ERROR
    assert cfg.ssl_context is not None and cfg.ssl_context.verify_mode is ssl.CERT_NONE


def test_insecure_list_does_not_leak_to_other_hosts() -> None:
    hosts = Hosts(insecure=("reg.example:5000", "10.0.0.0/8"))
    assert not hosts.is_insecure("reg.example:5001")
    assert not hosts.is_insecure("11.0.0.1")
    assert not hosts.config("other.example").insecure


def test_plain_http_only_for_loopback_and_insecure() -> None:
    assert Hosts().config("127.0.0.1:5000", plain_http=True).scheme is Scheme.HTTP
    assert Hosts().config("localhost", plain_http=True).scheme is Scheme.HTTP
    cfg = Hosts(insecure=("reg.example",)).config("reg.example", plain_http=True)
    assert cfg.scheme is Scheme.HTTP
    with pytest.raises(InvalidArgument, match=r"plain http refused for registry reg.example"):
        Hosts().config("reg.example", plain_http=True)


def test_bad_insecure_cidr() -> None:
    with pytest.raises(InvalidArgument, match=r"invalid insecure registry CIDR"):
        Hosts(insecure=("10.0.0.0/99",))


def _make_ca(d: Path, name: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ),
            *("-nodes", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.crt")),
            *("-days", "1", "-subj", f"/CN={name}"),
        ],
        check=True,
        capture_output=True,
    )
    return d / f"{name}.crt"


def test_certs_dir_cas_and_client_cert_are_loaded(tmp_path: Path) -> None:
    host_dir = tmp_path / "reg.example:5000"
    ca = _make_ca(tmp_path / "gen", "ca")
    host_dir.mkdir()
    (host_dir / "ca.crt").write_bytes(ca.read_bytes())
    ctx = Hosts(certs_dir=tmp_path).config("reg.example:5000").ssl_context
    assert ctx is not None
    subjects = [dict(x[0] for x in c["subject"]) for c in ctx.get_ca_certs()]
    assert {"commonName": "ca"} in subjects
    # Another host's directory is not this one's.
    other = Hosts(certs_dir=tmp_path).config("reg.example:5001").ssl_context
    assert other is not None
    assert {"commonName": "ca"} not in [
        dict(x[0] for x in c["subject"]) for c in other.get_ca_certs()
    ]
    # A client certificate: NAME.cert with NAME.key.
    client = _make_ca(tmp_path / "gen", "client")
    (host_dir / "client.cert").write_bytes(client.read_bytes())
    (host_dir / "client.key").write_bytes((tmp_path / "gen" / "client.key").read_bytes())
    Hosts(certs_dir=tmp_path).config("reg.example:5000")


def test_bad_certs_are_one_line_errors(tmp_path: Path) -> None:
    host_dir = tmp_path / "reg.example"
    host_dir.mkdir()
    (host_dir / "ca.crt").write_text("not a certificate\n")
    with pytest.raises(
        InvalidArgument, match=r"bad CA certificate .*ca.crt for registry reg.example"
    ):
        Hosts(certs_dir=tmp_path).config("reg.example")
    (host_dir / "ca.crt").unlink()
    (host_dir / "client.cert").write_text("x")
    with pytest.raises(InvalidArgument, match=r"has no .*client.key"):
        Hosts(certs_dir=tmp_path).config("reg.example")
    (host_dir / "client.cert").unlink()
    (host_dir / "client.key").write_text("x")
    with pytest.raises(InvalidArgument, match=r"no matching .cert"):
        Hosts(certs_dir=tmp_path).config("reg.example")
