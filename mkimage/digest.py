"""Content addressing: blobs and the descriptors that point at them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    # Sorted keys and no whitespace: the same document always hashes to the same digest.
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if annotations:
            desc["annotations"] = dict(annotations)
        return desc
