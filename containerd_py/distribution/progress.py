"""What a transfer reports while it runs: one record per blob, and a line for people.

The workers of a pull or push update it from their threads; the service thread that
streams progress to the caller waits for a change (or a tick) and sends a snapshot. A
snapshot is the whole state, not a delta, so a caller that misses messages redraws from
the next one. Offsets are updated per chunk: the cost is a lock and an assignment.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from enum import Enum

from containerd_py.images import mediatypes as mt
from containerd_py.images.manifest import Descriptor


class BlobKind(Enum):
    INDEX = "index"
    MANIFEST = "manifest"
    CONFIG = "config"
    LAYER = "layer"

    @classmethod
    def of(cls, media_type: str) -> BlobKind:
        if mt.is_index(media_type):
            return cls.INDEX
        if mt.is_manifest(media_type):
            return cls.MANIFEST
        if mt.is_config(media_type):
            return cls.CONFIG
        return cls.LAYER


class BlobStatus(Enum):
    WAITING = "waiting"
    TRANSFERRING = "transferring"
    DONE = "done"
    EXISTS = "exists"
    MOUNTED = "mounted"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (BlobStatus.DONE, BlobStatus.EXISTS, BlobStatus.MOUNTED)


@dataclass(frozen=True, slots=True)
class BlobState:
    descriptor: Descriptor
    kind: BlobKind
    status: BlobStatus = BlobStatus.WAITING
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    status: str
    blobs: tuple[BlobState, ...]


class Progress:
    """Thread-safe; blobs keep the order in which they were first added."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._blobs: dict[str, BlobState] = {}
        self._status = ""
        self._version = 0

    def set_status(self, status: str) -> None:
        with self._cond:
            self._status = status
            self._changed()

    def add(self, desc: Descriptor, status: BlobStatus = BlobStatus.WAITING) -> None:
        """Announce a blob (again: a blob reached twice keeps its first record)."""
        with self._cond:
            if desc.digest not in self._blobs:
                self._blobs[desc.digest] = BlobState(desc, BlobKind.of(desc.media_type), status)
                self._changed()

    def update(
        self, digest: str, status: BlobStatus | None = None, offset: int | None = None
    ) -> None:
        with self._cond:
            state = self._blobs.get(digest)
            if state is None:
                return
            new = replace(
                state,
                status=state.status if status is None else status,
                offset=state.offset if offset is None else offset,
            )
            if new != state:
                self._blobs[digest] = new
                self._changed()

    def finish(self, digest: str, status: BlobStatus) -> None:
        """A blob is through: its offset is its size."""
        with self._cond:
            state = self._blobs.get(digest)
            if state is not None:
                self._blobs[digest] = replace(state, status=status, offset=state.descriptor.size)
                self._changed()

    def snapshot(self) -> Snapshot:
        with self._cond:
            return Snapshot(self._version, self._status, tuple(self._blobs.values()))

    def wait(self, after: int, timeout: float) -> bool:
        """Until the version passes `after` (True) or `timeout` seconds go by (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._version > after, timeout)

    def wake(self) -> None:
        """Wake a waiter without a change (the transfer ended)."""
        with self._cond:
            self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._cond.notify_all()
