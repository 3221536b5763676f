"""What every snapshotter offers: the kinds, the info record and the protocol.

A snapshot is a directory tree a container runs on. `prepare` makes a writable ACTIVE
snapshot on top of a COMMITTED parent, `view` a read-only VIEW, `commit` freezes an ACTIVE
one into a COMMITTED one that others can use as parent. The caller never sees paths, only
the mounts that assemble the tree (containerd's `core/snapshots/snapshotter.go`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

from containerd_py.snapshots.mount import Mount


class Kind(enum.Enum):
    # The values are containerd's spellings, used by filters ("kind==Committed").
    VIEW = "View"
    ACTIVE = "Active"
    COMMITTED = "Committed"


@dataclass(frozen=True, slots=True)
class Info:
    name: str
    kind: Kind
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Usage(NamedTuple):
    size: int  # bytes on disk (blocks), hard links counted once
    inodes: int


@runtime_checkable
class Snapshotter(Protocol):
    def stat(self, key: str) -> Info: ...

    def update(self, info: Info, fieldpaths: Sequence[str] | None = None) -> Info: ...

    def usage(self, key: str) -> Usage: ...

    def mounts(self, key: str) -> list[Mount]: ...

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]: ...

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]: ...

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None: ...

    def remove(self, key: str) -> None: ...

    def walk(self, *filters: str) -> Iterator[Info]: ...

    def cleanup(self) -> None: ...

    def close(self) -> None: ...
