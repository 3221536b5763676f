"""The content store as the importer and exporter see it, and blob verification.

`ContentStore` is the seam to the real store (containerd_py/content), written beside this
package: four calls, by digest. The importer never trusts a blob's bytes: every stream it
hands to `ingest` is a `VerifyingReader`, which fails the read that would complete a blob
whose bytes do not hash to the expected digest, or that runs past the expected size. So a
store that writes to a temporary file and commits at the end never commits a corrupt blob,
and the store's own check is a second line, not the only one.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Protocol, cast

from containerd_py.images.digests import new_hasher
from containerd_py.images.errors import BlobNotFoundError, CorruptBlobError
from containerd_py.images.manifest import Descriptor

_CHUNK = 1 << 20


class BlobInfo(Protocol):
    @property
    def size(self) -> int: ...


class ContentStore(Protocol):
    """What the images package needs from a content store."""

    def ingest(self, stream: BinaryIO, expected_digest: str, expected_size: int) -> object:
        """Stores the stream's bytes under their digest (to a temporary place, committed
        when the digest and size check out). May raise an already-exists error; what it
        returns (containerd_py.content returns the blob's Info) is not used."""
        ...

    def open(self, digest: str) -> BinaryIO: ...

    def info(self, digest: str) -> BlobInfo: ...

    def exists(self, digest: str) -> bool: ...


class VerifyingReader(io.RawIOBase):
    """Passes a blob's bytes through, failing before the last one if they are wrong."""

    def __init__(self, inner: BinaryIO, digest: str, size: int, what: str = "") -> None:
        self._inner = inner
        self._digest = digest
        self._size = size
        self._hash = new_hasher(digest)
        self._seen = 0
        self._what = what or digest
        self._verified = size == 0 and self._check_empty()

    def _check_empty(self) -> bool:
        if self._hash.hexdigest() != self._digest.partition(":")[2]:
            raise CorruptBlobError(f"{self._what}: empty, but digest {self._digest} says not")
        return True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        want = len(view)
        if want == 0:
            return 0
        if self._verified:
            # Past the end of the blob: there must be nothing more.
            if self._inner.read(1):
                raise CorruptBlobError(f"{self._what}: longer than its size {self._size}")
            return 0
        data = self._inner.read(min(want, self._size - self._seen))
        if not data:
            raise CorruptBlobError(f"{self._what}: truncated at {self._seen} of {self._size} bytes")
        self._seen += len(data)
        self._hash.update(data)
        if self._seen == self._size:
            actual = f"{self._digest.partition(':')[0]}:{self._hash.hexdigest()}"
            if actual != self._digest:
                raise CorruptBlobError(
                    f"{self._what}: content has digest {actual}, expected {self._digest}"
                )
            self._verified = True
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def verified(stream: BinaryIO, digest: str, size: int, what: str = "") -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(VerifyingReader(stream, digest, size, what), _CHUNK))


def ingest_verified(
    store: ContentStore, stream: BinaryIO, digest: str, size: int, what: str = ""
) -> bool:
    """Ingests a blob, verifying it on the way; False when the store already had it.

    A blob already present is not read again. An already-exists error from `ingest` (such as
    errdefs.AlreadyExists, when a concurrent import of the same blob won) counts as success
    once the store shows the blob with the right size.
    """
    if store.exists(digest):
        return False
    try:
        store.ingest(verified(stream, digest, size, what), digest, size)
    except CorruptBlobError:
        raise
    except Exception:
        # AlreadyExists (errdefs), FileExistsError, or a store's own flavour of it: what
        # matters is whether the blob is there now, whole.
        if store.exists(digest) and store.info(digest).size == size:
            return False
        raise
    return True


def ingest_bytes(store: ContentStore, data: bytes, digest: str, what: str = "") -> bool:
    return ingest_verified(store, io.BytesIO(data), digest, len(data), what)


def open_blob(store: ContentStore, desc: Descriptor) -> BinaryIO:
    """A stream of the blob that fails if the store's copy does not match `desc`."""
    if not store.exists(desc.digest):
        raise BlobNotFoundError(f"content {desc.digest} ({desc.media_type}) not found")
    return verified(store.open(desc.digest), desc.digest, desc.size, desc.digest)


def read_blob(store: ContentStore, desc: Descriptor, limit: int) -> bytes:
    """The whole (small) blob, verified against its descriptor."""
    if desc.size > limit:
        raise CorruptBlobError(f"{desc.digest}: {desc.size} bytes is over the {limit} limit")
    with open_blob(store, desc) as f:
        return f.read()
