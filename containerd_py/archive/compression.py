"""Telling compressed layers apart by their first bytes, and undoing the compression.

The bytes decide, not the media type: registries and old tools mislabel layers (a
`tar.gzip` media type on a plain tar is common), and containerd and dockerd both sniff.
zstd comes from the `zstandard` package, since Python 3.11 has no zstd in its stdlib; it is
imported only when a zstd layer shows up.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from enum import Enum
from typing import BinaryIO, cast

from containerd_py.archive.errors import ArchiveError, UnsupportedCompressionError

_CHUNK = 1 << 20


class Compression(Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b\x08", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
)
_MAGIC_LEN = max(len(m) for m, _ in _MAGIC)


def detect_compression(head: bytes) -> Compression:
    """The compression whose magic number `head` starts with; NONE for anything else."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


class _Prefixed(io.RawIOBase):
    """Puts back the bytes read to sniff the format in front of a stream that cannot seek."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _read_head(stream: BinaryIO) -> bytes:
    head = b""
    while len(head) < _MAGIC_LEN:
        chunk = stream.read(_MAGIC_LEN - len(head))
        if not chunk:
            break
        head += chunk
    return head


class _DecompressErrors(io.RawIOBase):
    """Turns the decompressors' own errors (OSError, EOFError, zstd's) into ArchiveError."""

    def __init__(self, inner: BinaryIO, kind: Compression) -> None:
        self._inner = inner
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        try:
            data = self._inner.read(len(view))
        except ArchiveError:
            raise
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
            raise ArchiveError(f"corrupt {self._kind.value} stream: {e}") from None
        except Exception as e:  # zstandard.ZstdError derives from Exception only
            if type(e).__name__ == "ZstdError":
                raise ArchiveError(f"corrupt zstd stream: {e}") from None
            raise
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def open_decompressed(stream: BinaryIO) -> tuple[BinaryIO, Compression]:
    """A readable stream of the uncompressed bytes, and the compression that was found.

    Closing the result does not close `stream`; the caller owns it.
    """
    head = _read_head(stream)
    kind = detect_compression(head)
    raw = cast(BinaryIO, io.BufferedReader(_Prefixed(head, stream), _CHUNK))
    inner: BinaryIO
    if kind is Compression.NONE:
        return raw, kind
    if kind is Compression.GZIP:
        inner = cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
    elif kind is Compression.BZIP2:
        inner = cast(BinaryIO, bz2.BZ2File(raw, "rb"))
    elif kind is Compression.XZ:
        inner = cast(BinaryIO, lzma.LZMAFile(raw, "rb"))  # noqa: SIM115 (returned open)
    else:
        inner = _zstd_reader(raw)
    wrapped = io.BufferedReader(_DecompressErrors(inner, kind), _CHUNK)
    return cast(BinaryIO, wrapped), kind


def _zstd_reader(raw: BinaryIO) -> BinaryIO:
    try:
        import zstandard
    except ImportError:
        raise UnsupportedCompressionError(
            "zstd layer, but the zstandard package is not installed"
        ) from None
    # read_across_frames: layers written in several frames (zstd:chunked) are one stream.
    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
    return cast(BinaryIO, reader)


def gzip_compress(src: BinaryIO, dst: BinaryIO) -> None:
    """gzip with mtime 0 and no file name: the same tar always gives the same blob digest."""
    with gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=6) as gz:
        while chunk := src.read(_CHUNK):
            gz.write(chunk)


def zstd_compress(src: BinaryIO, dst: BinaryIO, *, level: int = 3) -> None:
    try:
        import zstandard
    except ImportError:
        raise UnsupportedCompressionError(
            "zstd requested, but the zstandard package is not installed"
        ) from None
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=False)
    with cctx.stream_writer(dst, closefd=False) as writer:
        while chunk := src.read(_CHUNK):
            writer.write(chunk)
