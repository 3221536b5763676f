"""Which scheme and TLS settings a registry host gets, as Docker decides them.

| host is                                   | tried                                  | fallback to http           |
|-------------------------------------------|----------------------------------------|----------------------------|
| anything (default)                        | https, verified                        | never                      |
| loopback (127.0.0.0/8, ::1, localhost)    | https, verified                        | only on a TLS handshake error (the server speaks plain http); a certificate that fails verification is an error |
| listed as insecure (host[:port] or CIDR)  | https, verification off (Docker's way) | on any connection or TLS error |
| plain_http asked by the caller            | http                                   | - (refused unless loopback or insecure) |

Verification uses the system CAs plus every `*.crt` in `<certs_dir>/<host[:port]>/`
(`ca.crt` by convention); a `*.cert` with the `*.key` of the same name there is the client
certificate, as Docker reads `/etc/docker/certs.d`. The default certs_dir is
`/etc/pydocker/certs.d`.

`docker.io` is a name, not a host: its API is served by `registry-1.docker.io`.
"""  # noqa: E501

from __future__ import annotations

import enum
import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from containerd_py.errdefs import InvalidArgument

DEFAULT_CERTS_DIR = Path("/etc/pydocker/certs.d")
DOCKER_IO = "docker.io"
DOCKER_IO_API_HOST = "registry-1.docker.io"


class Scheme(enum.Enum):
    HTTPS = "https"
    HTTP = "http"


class Fallback(enum.Enum):
    """When a host tried over https may be retried over plain http."""

    NEVER = "never"
    TLS_HANDSHAKE_ERROR = "tls-handshake-error"
    ANY_ERROR = "any-error"


@dataclass(frozen=True)
class HostConfig:
    """How to reach one registry host: `host` is what goes on the wire ("h:port")."""

    name: str  # as written in the image reference (docker.io, 127.0.0.1:5000)
    host: str
    scheme: Scheme
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    fallback: Fallback = Fallback.NEVER
    insecure: bool = False

    def base_url(self, scheme: Scheme | None = None) -> str:
        return f"{(scheme or self.scheme).value}://{self.host}"


def split_host(host: str) -> tuple[str, int | None]:
    """("h", port or None) from "h", "h:5000", "[::1]:5000" (brackets kept off)."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1 :]
        return name, int(rest[1:]) if rest.startswith(":") else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def is_loopback(host: str) -> bool:
    name = split_host(host)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Hosts:
    """The daemon's registry settings; `config(name)` decides for one host."""

    certs_dir: Path = DEFAULT_CERTS_DIR
    insecure: tuple[str, ...] = ()  # "host[:port]" or CIDRs, like dockerd's --insecure-registry

    def __post_init__(self) -> None:
        for entry in self.insecure:
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise InvalidArgument(f"invalid insecure registry CIDR {entry!r}") from None

    def is_insecure(self, host: str) -> bool:
        name = split_host(host)[0]
        for entry in self.insecure:
            if "/" in entry:
                try:
                    if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
            elif entry in (host, name):
                return True
        return False

    def config(self, name: str, *, plain_http: bool = False) -> HostConfig:
        host = DOCKER_IO_API_HOST if name == DOCKER_IO else name
        insecure = self.is_insecure(name) or self.is_insecure(host)
        loopback = is_loopback(host)
        if plain_http:
            if not (loopback or insecure):
                raise InvalidArgument(
                    f"plain http refused for registry {name}: "
                    "only loopback hosts and insecure registries may use it"
                )
            return HostConfig(name, host, Scheme.HTTP, None, Fallback.NEVER, insecure)
        context = self.ssl_context(name, verify=not insecure)
        if insecure:
            fallback = Fallback.ANY_ERROR
        elif loopback:
            fallback = Fallback.TLS_HANDSHAKE_ERROR
        else:
            fallback = Fallback.NEVER
        return HostConfig(name, host, Scheme.HTTPS, context, fallback, insecure)

    def cert_dirs(self, name: str) -> list[Path]:
        """`<certs_dir>/<name>`; for a bracketed IPv6 host also the unbracketed form."""
        dirs = [self.certs_dir / name]
        if name.startswith("["):
            hostname, port = split_host(name)
            dirs.append(self.certs_dir / (hostname if port is None else f"{hostname}:{port}"))
        return dirs

    def ssl_context(self, name: str, *, verify: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        for d in self.cert_dirs(name):
            _load_cert_dir(context, d, name)
        return context


def _load_cert_dir(context: ssl.SSLContext, d: Path, name: str) -> None:
    try:
        entries = sorted(d.iterdir())
    except FileNotFoundError:
        return
    except OSError as e:
        raise InvalidArgument(f"cannot read certificates for registry {name} in {d}: {e}") from e
    for path in _with_suffix(entries, ".crt"):
        try:
            context.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as e:
            raise InvalidArgument(f"bad CA certificate {path} for registry {name}: {e}") from e
    for cert in _with_suffix(entries, ".cert"):
        key = cert.with_suffix(".key")
        if not key.exists():
            raise InvalidArgument(f"client certificate {cert} for registry {name} has no {key}")
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as e:
            raise InvalidArgument(f"bad client certificate {cert} for registry {name}: {e}") from e
    for key in _with_suffix(entries, ".key"):
        if not key.with_suffix(".cert").exists():
            raise InvalidArgument(f"client key {key} for registry {name} has no matching .cert")


def _with_suffix(entries: Iterable[Path], suffix: str) -> list[Path]:
    return [p for p in entries if p.suffix == suffix and p.is_file()]
