"""What pull and push need from a registry repository: the seam to `containerd_py.remotes`.

Kept as a Protocol beside its users, so that fetch and push read as what they do with a
registry (resolve, fetch, HEAD, mount, upload) and not how HTTP does it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Protocol

from containerd_py.images.manifest import Descriptor


class RemoteRepository(Protocol):
    @property
    def host(self) -> str:
        """The registry as image names spell it: "127.0.0.1:5000", "docker.io"."""
        ...

    @property
    def name(self) -> str:
        """The repository path: "library/busybox"."""
        ...

    def resolve(self, reference: str) -> Descriptor:
        """A tag or digest → the descriptor of the manifest or index it names."""
        ...

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        """The manifest or index bytes (the caller verifies them)."""
        ...

    def open_blob(self, desc: Descriptor, offset: int = 0) -> BinaryIO:
        """The blob's bytes from `offset` on, not checked against the digest: the content
        store the fetch writes to checks it when it commits."""
        ...

    def blob_exists(self, desc: Descriptor) -> bool:
        """Whether the repository has the blob (a HEAD)."""
        ...

    def mount_blob(self, desc: Descriptor, source: str) -> bool:
        """Ask the registry to link the blob from repository `source`; False when it
        would rather have it uploaded."""
        ...

    def upload_blob(
        self,
        desc: Descriptor,
        stream: BinaryIO,
        *,
        chunk_size: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Upload in one request (chunk_size 0) or in chunks; `progress` gets the bytes
        sent so far."""
        ...

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        """Store a manifest or index under a tag or its digest; returns its digest."""
        ...
