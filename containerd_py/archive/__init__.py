"""Layer tars: applying one onto a snapshot directory, and writing one from a snapshot.

`apply_layer` is what the overlay and native snapshotters' unpack step runs; `write_layer` is
the diff that a container commit or export needs. Neither knows about images or content:
callers hand in streams.
"""

from __future__ import annotations

from containerd_py.archive.apply import WhiteoutMode, apply_layer
from containerd_py.archive.compression import Compression, detect_compression, open_decompressed
from containerd_py.archive.diff import write_layer
from containerd_py.archive.errors import (
    ArchiveError,
    DiffIDMismatchError,
    UnsafeArchiveError,
    UnsupportedCompressionError,
)

__all__ = [
    "ArchiveError",
    "Compression",
    "DiffIDMismatchError",
    "UnsafeArchiveError",
    "UnsupportedCompressionError",
    "WhiteoutMode",
    "apply_layer",
    "detect_compression",
    "open_decompressed",
    "write_layer",
]
