"""`CgroupManager`, the interface both implementations offer, and `CgroupMode`.

Apart from `oci_runtime.cgroups` itself so that the commands that only load a manager from
state.json pay for neither enum nor typing.Protocol; the package exports both lazily.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from oci_runtime.cgroups.resources import Resources

__all__ = ["CgroupManager", "CgroupMode"]


class CgroupMode(enum.Enum):
    LEGACY = "legacy"
    HYBRID = "hybrid"
    UNIFIED = "unified"


@runtime_checkable
class CgroupManager(Protocol):
    """One container's cgroup, in every hierarchy the host has."""

    @property
    def is_v2(self) -> bool: ...

    def apply(self, pid: int, *, single_thread: bool = False) -> None:
        """Create the cgroup dirs (idempotent) and move `pid` in; pid <= 0 only creates.
        With `single_thread` (the caller knows pid has one thread) v1 may take a cheaper
        per-thread move."""
        ...

    def set(self, resources: Resources) -> None:
        """Write the limits `resources` gives; absent fields are left as they are."""
        ...

    def freeze(self, frozen: bool) -> None:
        """Freeze or thaw, returning once the kernel reports it done."""
        ...

    def is_frozen(self) -> bool: ...

    def pids(self) -> list[int]:
        """Every process in the cgroup or below it, sorted."""
        ...

    def stats(self) -> dict[str, Any]:
        """runc's `events --stats` "data" object, filled from what the files give."""
        ...

    def exists(self) -> bool:
        """Whether the cgroup dir exists in any hierarchy."""
        ...

    def destroy(self) -> None:
        """Remove the cgroup (and cgroups below it), deepest first; its parents stay."""
        ...

    def paths(self) -> dict[str, str]:
        """controller → host dir (v2 and v1-hybrid's cgroup2 tree: key ""), for state.json."""
        ...

    def mounts(self) -> list[tuple[str, str]]:
        """(name under /sys/fs/cgroup, host dir) for the container's cgroup mounts."""
        ...

    def oom_kill_count(self) -> int: ...
