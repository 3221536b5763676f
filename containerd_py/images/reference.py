"""Docker-style image references: parsing, validation and normalization.

The grammar is docker's (distribution/reference), rewritten from its documentation:

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [ domain "/" ] path-component { "/" path-component }
    domain      := host [ ":" port ]     host: DNS labels, or an IPv6 address in brackets
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest      := algorithm ":" hex     (sha256: exactly 64 lowercase hex digits)

Normalization, as `docker pull` and containerd's CRI do it:

| written                          | normalized                                  |
|----------------------------------|---------------------------------------------|
| `busybox`                        | `docker.io/library/busybox:latest`          |
| `user/app:1`                     | `docker.io/user/app:1`                      |
| `index.docker.io/busybox`        | `docker.io/library/busybox:latest`          |
| `localhost/app`                  | `localhost/app:latest`                      |
| `host:5000/a/b:tag`              | `host:5000/a/b:tag`                         |
| `busybox@sha256:<hex>`           | `docker.io/library/busybox@sha256:<hex>`    |
| `busybox:1@sha256:<hex>`         | `docker.io/library/busybox@sha256:<hex>` (the digest wins) |

The first component is a registry only when it could not be a path component: it holds a
`.` or a `:`, is `localhost`, or has an uppercase letter (which a path never has).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from containerd_py.images.errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_DOMAIN_NAME = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
)
_IPV6 = re.compile(r"\[[a-fA-F0-9:]+\]")
_PORT = re.compile(r"[0-9]+")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`docker.io/library/busybox`: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def familiar_name(self) -> str:
        """`busybox`, as docker shows it: the default registry and library/ left out."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX) and self.path.count("/") == 1:
            return self.path[len(OFFICIAL_REPO_PREFIX) :]
        return self.path

    @property
    def familiar(self) -> str:
        """`busybox:latest`: the familiar name with its tag and digest."""
        out = self.familiar_name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> Reference:
        if not _TAG.fullmatch(tag):
            raise InvalidReferenceError(f"invalid tag format: {tag!r}")
        return Reference(self.domain, self.path, tag, None)


def _validate_domain(domain: str, text: str) -> None:
    host, port = domain, None
    if domain.startswith("["):
        end = domain.find("]")
        host, rest = domain[: end + 1], domain[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidReferenceError(f"invalid reference format: {text!r}")
            port = rest[1:]
        if end < 0 or not _IPV6.fullmatch(host):
            raise InvalidReferenceError(f"invalid reference format: {text!r}")
    else:
        if ":" in domain:
            host, port = domain.split(":", 1)
        if not _DOMAIN_NAME.fullmatch(host):
            raise InvalidReferenceError(f"invalid reference format: {text!r}")
    if port is not None and not _PORT.fullmatch(port):
        raise InvalidReferenceError(f"invalid reference format: {text!r}")


def _validate_digest(digest: str, text: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise InvalidReferenceError(f"invalid reference format: {text!r}: bad digest")
    algorithm, hex_part = digest.split(":", 1)
    if algorithm == "sha256" and not _SHA256_HEX.fullmatch(hex_part):
        raise InvalidReferenceError(
            f"invalid reference format: {text!r}: sha256 needs 64 lowercase hex digits"
        )


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        return DEFAULT_DOMAIN, name
    return first, rest


def parse_normalized(text: str) -> Reference:
    """Parses and normalizes a reference; the tag stays None when none was written."""
    if not text:
        raise InvalidReferenceError("invalid reference format: empty name")
    if _SHA256_HEX.fullmatch(text):
        raise InvalidReferenceError(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        _validate_digest(digest, text)
    tag = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReferenceError(f"invalid reference format: {text!r}: bad tag {tag!r}")
    domain, path = _split_domain(rest)
    _validate_domain(domain, text)
    if path.lower() != path:
        raise InvalidReferenceError(
            f"invalid reference format: repository name ({path}) must be lowercase"
        )
    if not path or not all(_PATH_COMPONENT.fullmatch(c) for c in path.split("/")):
        raise InvalidReferenceError(f"invalid reference format: {text!r}")
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(
            f"invalid reference format: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters"
        )
    return Reference(domain, path, tag, digest)


def parse_docker_ref(text: str) -> Reference:
    """The name an image is stored under: `latest` when no tag nor digest was given, and
    only the digest when both were (as containerd's ParseDockerRef does)."""
    ref = parse_normalized(text)
    if ref.digest is not None:
        return Reference(ref.domain, ref.path, None, ref.digest)
    if ref.tag is None:
        return Reference(ref.domain, ref.path, DEFAULT_TAG, None)
    return ref


def normalize(text: str) -> str:
    """`busybox` -> `docker.io/library/busybox:latest`."""
    return str(parse_docker_ref(text))


def is_valid_tag(text: str) -> bool:
    return _TAG.fullmatch(text) is not None
