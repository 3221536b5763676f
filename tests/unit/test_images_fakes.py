"""TEST DOUBLE: an in-memory content store, standing in for containerd_py.content.

The images package talks to the store through the `ContentStore` Protocol
(containerd_py/images/store.py); the real, on-disk store is built separately. This double
behaves as that store is specified to: `ingest` reads the whole stream to a private buffer,
checks digest and size, and only then commits; an existing blob raises AlreadyExists.
The tests below pin down that behaviour, so the importer's tests rest on something known.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import BinaryIO

import pytest

from containerd_py.errdefs import AlreadyExists, FailedPrecondition, NotFound
from containerd_py.images.store import ContentStore


@dataclass(frozen=True)
class FakeInfo:
    digest: str
    size: int


@dataclass
class MemoryContentStore:
    """Test double for the content store (see the module docstring)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    ingested: list[str] = field(default_factory=list)

    def ingest(self, stream: BinaryIO, expected_digest: str, expected_size: int) -> None:
        if expected_digest in self.blobs:
            raise AlreadyExists(f"content {expected_digest}: already exists")
        staged = io.BytesIO()  # "temp": nothing is visible until the checks pass
        while chunk := stream.read(1 << 16):
            staged.write(chunk)
        data = staged.getvalue()
        if len(data) != expected_size:
            raise FailedPrecondition(f"unexpected commit size {len(data)}, {expected_size}")
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != expected_digest:
            raise FailedPrecondition(f"unexpected commit digest {actual}, {expected_digest}")
        self.blobs[expected_digest] = data
        self.ingested.append(expected_digest)

    def open(self, digest: str) -> BinaryIO:
        try:
            return io.BytesIO(self.blobs[digest])
        except KeyError:
            raise NotFound(f"content {digest}: not found") from None

    def info(self, digest: str) -> FakeInfo:
        try:
            return FakeInfo(digest, len(self.blobs[digest]))
        except KeyError:
            raise NotFound(f"content {digest}: not found") from None

    def exists(self, digest: str) -> bool:
        return digest in self.blobs


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_fake_satisfies_the_protocol() -> None:
    store: ContentStore = MemoryContentStore()
    store.ingest(io.BytesIO(b"abc"), _digest(b"abc"), 3)
    assert store.exists(_digest(b"abc"))
    assert store.info(_digest(b"abc")).size == 3
    assert store.open(_digest(b"abc")).read() == b"abc"


def test_fake_commits_nothing_on_mismatch_and_refuses_duplicates() -> None:
    store = MemoryContentStore()
    with pytest.raises(FailedPrecondition):
        store.ingest(io.BytesIO(b"abd"), _digest(b"abc"), 3)
    assert not store.blobs
    store.ingest(io.BytesIO(b"abc"), _digest(b"abc"), 3)
    with pytest.raises(AlreadyExists):
        store.ingest(io.BytesIO(b"abc"), _digest(b"abc"), 3)
