"""Digest strings: the only form accepted is `sha256:` followed by 64 lowercase hex digits.

Digests become file names under blobs/sha256/, so anything looser (upper case, other
algorithms, a trailing newline that `$` would let through, `../`) is refused outright.
"""

from __future__ import annotations

import hashlib
import re

from containerd_py.errdefs import InvalidArgument

ALGORITHM = "sha256"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def validate(value: object) -> str:
    if not is_digest(value):
        raise InvalidArgument(f"invalid digest {value!r}: want sha256: and 64 lowercase hex")
    return value  # type: ignore[return-value]


def encoded(digest: str) -> str:
    """The hex part of a digest already validated."""
    return digest[len(ALGORITHM) + 1 :]


def from_bytes(data: bytes) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"
