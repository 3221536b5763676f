"""Digest strings (`sha256:<hex>`): validation and hashing."""

from __future__ import annotations

import hashlib
import re

from containerd_py.images.errors import InvalidManifestError

# The algorithms the image spec registers, with the length of their hex encoding.
_ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")


def validate_digest(digest: str) -> str:
    """Returns the digest if it is well-formed and of an algorithm we can verify."""
    algorithm, sep, encoded = digest.partition(":")
    want = _ALGORITHMS.get(algorithm)
    if not sep or want is None or len(encoded) != want or not _HEX.fullmatch(encoded):
        raise InvalidManifestError(f"invalid or unsupported digest {digest!r}")
    return digest


def new_hasher(digest: str) -> hashlib._Hash:
    """A fresh hash object of the digest's algorithm."""
    return hashlib.new(validate_digest(digest).partition(":")[0])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def encoded(digest: str) -> str:
    """The hex part: what blob file names in a layout are."""
    return digest.partition(":")[2]


def algorithm(digest: str) -> str:
    return digest.partition(":")[0]
