"""The daemon's configuration: defaults, then the TOML file, then command-line flags.

The file uses containerd's keys for what we share with it, so an operator's habits carry
over (unknown keys are logged and ignored, as a newer config on an older daemon should be):

    version = 2
    root = "/var/lib/pycontainerd"
    state = "/run/pycontainerd"

    [grpc]
    address = "/run/pycontainerd/pycontainerd.sock"
    max_recv_message_size = 16777216
    max_send_message_size = 16777216
    max_workers = 64              # ours: the gRPC thread pool (a Subscribe holds one)

    [debug]
    level = "info"                # trace, debug, info, warn, error, fatal, panic

    [timeouts]
    shutdown = 10.0               # ours: seconds in-flight calls get on SIGTERM

    [registry]                    # ours: pulls and pushes (containerd has hosts.toml files)
    certs_dir = "/etc/pydocker/certs.d"   # <host[:port]>/ca.crt, client.cert + client.key
    auth_file = "/root/.docker/config.json"  # docker-style auths, read at each pull/push
    insecure = ["127.0.0.1:5000", "10.0.0.0/8"]  # https unverified, then http (dockerd's)
    max_concurrent_downloads = 3  # blobs a pull fetches at once (containerd's default)
    max_concurrent_uploads = 3

    [plugins]                     # kept as parsed, for the plugins that read their section
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from containerd_py.errdefs import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "/run/pycontainerd/pycontainerd.sock"
DEFAULT_ROOT = "/var/lib/pycontainerd"
DEFAULT_STATE = "/run/pycontainerd"
# containerd's gRPC message size limit, both ways.
DEFAULT_MAX_MESSAGE = 16 << 20


def grpc_target(address: str) -> str:
    """The grpc target of a socket path (absolute, so the cwd never matters)."""
    return "unix:" + os.path.abspath(address)


# containerd's level names (logrus), mapped onto Python's.
LOG_LEVELS: dict[str, int] = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}

# A unix socket path is limited by sockaddr_un.sun_path (108 bytes with the NUL).
MAX_SOCKET_PATH = 107
# Registries: the certs.d dir docker uses (ours under /etc/pydocker), and the credentials
# file root's `docker login` writes, so that a pull as root sees the same logins.
DEFAULT_CERTS_DIR = "/etc/pydocker/certs.d"
DEFAULT_AUTH_FILE = "/root/.docker/config.json"
DEFAULT_CONCURRENCY = 3


class ConfigError(InvalidArgument):
    """A config file or flag the daemon cannot start with."""


@dataclass(frozen=True, slots=True)
class Config:
    address: str = DEFAULT_ADDRESS
    root: Path = Path(DEFAULT_ROOT)
    state: Path = Path(DEFAULT_STATE)
    log_level: str = "info"
    max_workers: int = 64
    max_recv_message_size: int = DEFAULT_MAX_MESSAGE
    max_send_message_size: int = DEFAULT_MAX_MESSAGE
    shutdown_timeout: float = 10.0
    certs_dir: Path = Path(DEFAULT_CERTS_DIR)
    auth_file: Path = Path(DEFAULT_AUTH_FILE)
    insecure_registries: tuple[str, ...] = ()
    max_concurrent_downloads: int = DEFAULT_CONCURRENCY
    max_concurrent_uploads: int = DEFAULT_CONCURRENCY
    plugins: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.address:
            raise ConfigError("address must not be empty")
        if len(os.fsencode(self.address)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"socket address {self.address!r} is longer than {MAX_SOCKET_PATH} bytes"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"unknown log level {self.log_level!r} (one of {', '.join(LOG_LEVELS)})"
            )
        if self.max_workers < 4:
            # Below that, a couple of subscribers would leave no thread for other calls.
            raise ConfigError(f"grpc.max_workers must be at least 4, not {self.max_workers}")
        if self.shutdown_timeout < 0:
            raise ConfigError("timeouts.shutdown must not be negative")
        for key in ("max_concurrent_downloads", "max_concurrent_uploads"):
            if not 1 <= getattr(self, key) <= 64:
                raise ConfigError(f"registry.{key} must be between 1 and 64")
        if not all(isinstance(h, str) and h for h in self.insecure_registries):
            raise ConfigError("registry.insecure must be a list of host[:port] or CIDR strings")

    @property
    def metadata_path(self) -> Path:
        """The SQLite metadata database."""
        return self.root / "metadata.db"

    @property
    def log_level_number(self) -> int:
        return LOG_LEVELS[self.log_level]

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with the given fields replaced; None values are ignored (unset flags)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        # Absolute, so that a later chdir (or a shim's cwd) never changes what they mean.
        for key in ("root", "state", "certs_dir", "auth_file"):
            if key in given:
                given[key] = Path(os.path.abspath(given[key]))
        if given.get("address"):
            given["address"] = os.path.abspath(given["address"])
        return replace(self, **given)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        """Parse a TOML config file; ConfigError says what is wrong and where."""
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from e
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> Config:
        reader = _Reader(data, source)
        values: dict[str, Any] = {}
        reader.take(values, "root", "root", str)
        reader.take(values, "state", "state", str)
        reader.take(values, "address", "grpc.address", str)
        reader.take(values, "max_recv_message_size", "grpc.max_recv_message_size", int)
        reader.take(values, "max_send_message_size", "grpc.max_send_message_size", int)
        reader.take(values, "max_workers", "grpc.max_workers", int)
        reader.take(values, "log_level", "debug.level", str)
        reader.take(values, "shutdown_timeout", "timeouts.shutdown", (int, float))
        reader.take(values, "certs_dir", "registry.certs_dir", str)
        reader.take(values, "auth_file", "registry.auth_file", str)
        reader.take(values, "insecure_registries", "registry.insecure", list)
        reader.take(values, "max_concurrent_downloads", "registry.max_concurrent_downloads", int)
        reader.take(values, "max_concurrent_uploads", "registry.max_concurrent_uploads", int)
        if "insecure_registries" in values:
            values["insecure_registries"] = tuple(values["insecure_registries"])
        plugins = reader.section("plugins")
        reader.take(values, "", "version", int)  # accepted, not needed: one format so far
        reader.warn_unknown()
        return cls().with_overrides(**values, plugins=plugins)


class _Reader:
    """Reads dotted keys out of the parsed TOML and remembers which ones were used."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source
        self.used: set[str] = set()

    def _get(self, dotted: str) -> tuple[Any, bool]:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None, False
            node = node[part]
        return node, True

    def take(self, out: dict[str, Any], name: str, dotted: str, kind: type | tuple) -> None:
        value, found = self._get(dotted)
        self.used.add(dotted)
        if not found:
            return
        # bool is an int in Python; a `true` where a number belongs is still a mistake.
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"{self.source}: {dotted} has the wrong type ({value!r})")
        if name:
            out[name] = value

    def section(self, dotted: str) -> dict[str, Any]:
        value, found = self._get(dotted)
        self.used.add(dotted)
        if found and not isinstance(value, Mapping):
            raise ConfigError(f"{self.source}: [{dotted}] must be a table")
        return dict(value) if found else {}

    def warn_unknown(self) -> None:
        for key, value in self.data.items():
            subkeys = value.keys() if isinstance(value, Mapping) else [None]
            for sub in subkeys:
                dotted = key if sub is None else f"{key}.{sub}"
                if dotted not in self.used and key not in self.used:
                    log.warning("%s: ignoring unknown key %s", self.source, dotted)
