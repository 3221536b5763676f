"""The daemon's registries: `containerd_py.remotes` behind the `RemoteRepository` seam.

One `remotes.Registry` per daemon (its connections and token caches are shared by every
transfer), plus one per host a caller asked to reach with --skip-verify. Credentials are
looked up at each transfer: the caller's, else the daemon's docker-style auth file (read
again each time, so a `docker login` meanwhile is seen), else none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from containerd_py import errdefs
from containerd_py.distribution.remote import RemoteRepository
from containerd_py.images.manifest import Descriptor
from containerd_py.images.reference import Reference
from containerd_py.remotes import Credentials, DockerConfig, Hosts, Registry, Repository


@dataclass(frozen=True, slots=True)
class Access:
    """How a caller asks to reach a registry for one transfer."""

    username: str = ""
    password: str = field(default="", repr=False)
    plain_http: bool = False  # loopback and insecure registries only
    skip_verify: bool = False


# (reference, access, push?) -> the repository to transfer with
RepositoryFactory = Callable[[Reference, Access, bool], RemoteRepository]


class RegistryRepository:
    """A `remotes.Repository` as pull and push use it (see remote.RemoteRepository)."""

    def __init__(self, repo: Repository, host: str) -> None:
        self._repo = repo
        self._host = host

    @property
    def host(self) -> str:
        return self._host

    @property
    def name(self) -> str:
        return self._repo.path

    def resolve(self, reference: str) -> Descriptor:
        d = self._repo.resolve(reference)
        return Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        return self._repo.fetch_manifest(desc.digest).data

    def open_blob(self, desc: Descriptor, offset: int = 0) -> BinaryIO:
        # The content store checks the digest when the fetch commits: not twice.
        return self._repo.open_blob(desc.digest, offset, desc.size, verify=False)  # type: ignore[return-value]

    def blob_exists(self, desc: Descriptor) -> bool:
        return self._repo.blob_size(desc.digest) is not None

    def mount_blob(self, desc: Descriptor, source: str) -> bool:
        return self._repo.mount_blob(desc.digest, source)

    def upload_blob(
        self,
        desc: Descriptor,
        stream: BinaryIO,
        *,
        chunk_size: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        reader = _Counting(stream, progress) if progress is not None else stream
        self._repo.upload_blob(desc.digest, desc.size, reader, chunk_size or None)  # type: ignore[arg-type]

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        return self._repo.put_manifest(reference, media_type, data)


class _Counting:
    """A reader that reports how many bytes were read through it."""

    def __init__(self, inner: BinaryIO, progress: Callable[[int], None]) -> None:
        self._inner = inner
        self._progress = progress
        self._count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._count += len(data)
        self._progress(self._count)
        return data


class Registries:
    """Repositories for transfers, with the daemon's certs dir, insecure list and auth file."""

    def __init__(self, certs_dir: Path, auth_file: Path, insecure: tuple[str, ...]) -> None:
        self.certs_dir = certs_dir
        self.auth_file = auth_file
        self.insecure = insecure
        self._registry = Registry(Hosts(certs_dir=certs_dir, insecure=insecure))
        self._unverified: dict[str, Registry] = {}
        self._lock = threading.Lock()

    def _for(self, host: str, skip_verify: bool) -> Registry:
        if not skip_verify:
            return self._registry
        with self._lock:
            reg = self._unverified.get(host)
            if reg is None:
                # --skip-verify makes this one host insecure, as dockerd's list would.
                hosts = Hosts(certs_dir=self.certs_dir, insecure=(*self.insecure, host))
                reg = self._unverified[host] = Registry(hosts)
            return reg

    def repository(self, ref: Reference, access: Access, push: bool = False) -> RemoteRepository:
        if access.password and not access.username:
            raise errdefs.InvalidArgument("a password was given without a user name")
        creds: Credentials | None = None
        if access.username:
            creds = Credentials(access.username, access.password)
        else:
            creds = DockerConfig.load(self.auth_file).lookup(ref.domain)
        registry = self._for(ref.domain, access.skip_verify)
        repo = registry.repository(ref, credentials=creds, plain_http=access.plain_http, push=push)
        return RegistryRepository(repo, ref.domain)
