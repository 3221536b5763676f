"""What the remotes tests share: a client configured for a test registry, the seeded
image's parts as the registry stores them, and a way to corrupt stored bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from containerd_py.remotes import Credentials, Hosts, Registry, Repository
from tests.registry import Mode, RegistryServer


def client(
    reg: RegistryServer,
    *,
    certs_dir: Path | None = None,
    insecure: tuple[str, ...] = (),
    registry: Registry | None = None,
) -> Registry:
    """A Registry client that trusts REG's CA through a docker-style certs.d (TLS mode)."""
    if registry is not None:
        return registry
    if certs_dir is None:
        certs_dir = reg.certs_dir or reg.workdir / "no-certs.d"
    return Registry(Hosts(certs_dir=certs_dir, insecure=insecure), timeout=30)


def creds(reg: RegistryServer, user: str | None = None) -> Credentials | None:
    if reg.mode not in (Mode.BASIC, Mode.TOKEN):
        return None
    user = user or next(iter(reg.users))
    return Credentials(user, reg.users[user])


def repo(
    reg: RegistryServer, path: str = "library/busybox", *, push: bool = False, **kw: object
) -> Repository:
    return client(reg, **kw).repository(  # type: ignore[arg-type]
        f"{reg.host}/{path}", credentials=creds(reg), push=push
    )


@dataclass(frozen=True)
class Seeded:
    manifest_digest: str
    manifest: dict[str, object]
    config: dict[str, object]
    layer: dict[str, object]


def seeded(reg: RegistryServer, name: str = "library/busybox:latest") -> Seeded:
    digest = reg.seed(name)
    doc = json.loads(reg.inspect_raw(name))
    return Seeded(digest, doc, doc["config"], doc["layers"][0])


def stored_blob(reg: RegistryServer, digest: str) -> Path:
    """Where docker-registry's filesystem driver keeps a blob (manifests included)."""
    hex_ = digest.removeprefix("sha256:")
    return reg.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def corrupt(path: Path, at: int = 100) -> None:
    """Flips one byte in place: same size, other content."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
