"""Registry credentials: the caller's, else a docker-style config.json's `auths`.

An `auths` entry holds `auth` (base64 of "user:password"), or `username` and `password`,
and may hold an `identitytoken` (an OAuth refresh token, sent to the token server instead
of the password). Keys are matched as the docker CLI writes them:

| registry  | keys that match                                                      |
|-----------|----------------------------------------------------------------------|
| host:port | `host:port`, `https://host:port`, `http://host:port`, with any path  |
| docker.io | `https://index.docker.io/v1/`, `index.docker.io`, `docker.io`,       |
|           | `registry-1.docker.io`                                               |

Credential helpers (`credsStore`, `credHelpers`) are not run: the daemon must not exec
programs named by a file it was pointed at.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from containerd_py.errdefs import InvalidArgument

DOCKER_IO_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")
_DOCKER_IO_HOSTS = frozenset({"index.docker.io", "docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token)

    def basic(self) -> str | None:
        """The `Authorization: Basic` value, or None without a username and password."""
        if not self.username or not self.password:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def _key_host(key: str) -> str:
    """ "https://host:port/v1/" -> "host:port"."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    return key.split("/", 1)[0].lower()


def _entry(value: object, where: str) -> Credentials:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{where}: an auths entry must be an object")
    username = value.get("username") or ""
    password = value.get("password") or ""
    encoded = value.get("auth") or ""
    token = value.get("identitytoken") or ""
    if not all(isinstance(v, str) for v in (username, password, encoded, token)):
        raise InvalidArgument(f"{where}: auth, username, password, identitytoken are strings")
    if encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument(f"{where}: auth is not base64 of user:password") from None
        user, sep, pw = decoded.partition(":")
        if not sep:
            raise InvalidArgument(f"{where}: auth is not base64 of user:password")
        username, password = user, pw
    return Credentials(username, password, token)


@dataclass(frozen=True)
class DockerConfig:
    """The `auths` section of a docker config.json, keyed as written."""

    auths: Mapping[str, Credentials] = field(default_factory=dict)
    path: str = ""

    @classmethod
    def parse(cls, data: bytes | str, path: str = "config.json") -> DockerConfig:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"{path}: not JSON: {e}") from None
        if not isinstance(doc, Mapping):
            raise InvalidArgument(f"{path}: must be a JSON object")
        auths = doc.get("auths")
        if auths is None:
            auths = {}
        if not isinstance(auths, Mapping):
            raise InvalidArgument(f"{path}: auths must be an object")
        return cls({str(k): _entry(v, f"{path}: auths[{k!r}]") for k, v in auths.items()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DockerConfig:
        """The file's auths; an absent file is an empty config, an unreadable one an error."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return cls({}, str(path))
        except OSError as e:
            raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None
        return cls.parse(data, str(path))

    def lookup(self, registry: str) -> Credentials | None:
        """The entry for a registry name (as in image references: docker.io, h:5000)."""
        registry = registry.lower()
        if registry in _DOCKER_IO_HOSTS:
            exact: tuple[str, ...] = DOCKER_IO_KEYS
        else:
            exact = (registry, f"https://{registry}", f"http://{registry}")
        for key in exact:
            if key in self.auths:
                return self.auths[key]
        wanted = _DOCKER_IO_HOSTS if registry in _DOCKER_IO_HOSTS else {registry}
        for key, creds in self.auths.items():
            if _key_host(key) in wanted:
                return creds
        return None


def default_config_path() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json (the docker CLI's rule)."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


@dataclass(frozen=True)
class CredentialStore:
    """What a registry client asks: caller-given credentials win over the config file."""

    config: DockerConfig = field(default_factory=DockerConfig)
    given: Mapping[str, Credentials] = field(default_factory=dict)

    def for_registry(self, registry: str) -> Credentials | None:
        creds = self.given.get(registry) or self.given.get(registry.lower())
        if creds is not None and not creds.empty:
            return creds
        return self.config.lookup(registry)
