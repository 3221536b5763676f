"""Cgroups for pyrunc: one `CgroupManager` interface, a v1 and a v2 implementation.

Which one is used is decided at run time from the cgroup root (`detect`):

| mode | mounted at /sys/fs/cgroup | implementation |
|---|---|---|
| UNIFIED | cgroup2 itself (root/cgroup.controllers exists) | `v2.CgroupV2` |
| HYBRID | v1 hierarchies, and cgroup2 at root/unified | `v1.CgroupV1`, joining cgroup2 too |
| LEGACY | v1 hierarchies only | `v1.CgroupV1` |

Typical use by the runtime::

    mgr = new_manager(spec.linux.cgroups_path)   # "/pydocker/<id>"
    mgr.apply(pid)                               # create the cgroups, move the init in
    mgr.set(Resources.from_dict(spec_resources))
    state["cgroup_paths"] = mgr.paths()          # saved in state.json
    ...
    mgr = load_manager(state["cgroup_paths"])    # a later pyrunc command
    mgr.freeze(True); mgr.pids(); mgr.destroy()

Every path can be rooted elsewhere (`root=`, `mountinfo=`), which is how the unit tests drive
both implementations over fake trees in a temporary directory.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from oci_runtime.cgroups.files import CgroupError, cgroup_relpath
from oci_runtime.cgroups.mountinfo import UNIFIED, cgroup_hierarchies, parse_mountinfo
from oci_runtime.cgroups.resources import Resources
from oci_runtime.cgroups.v1 import CgroupV1
from oci_runtime.cgroups.v2 import CgroupV2

__all__ = [
    "DEFAULT_ROOT",
    "CgroupError",
    "CgroupManager",
    "CgroupMode",
    "CgroupV1",
    "CgroupV2",
    "Resources",
    "detect",
    "load_manager",
    "new_manager",
]

DEFAULT_ROOT = Path("/sys/fs/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")


class CgroupMode(enum.Enum):
    LEGACY = "legacy"
    HYBRID = "hybrid"
    UNIFIED = "unified"


@runtime_checkable
class CgroupManager(Protocol):
    """One container's cgroup, in every hierarchy the host has."""

    @property
    def is_v2(self) -> bool: ...

    def apply(self, pid: int) -> None:
        """Create the cgroup dirs (idempotent) and move `pid` in; pid <= 0 only creates."""
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


def detect(root: Path = DEFAULT_ROOT) -> CgroupMode:
    if (root / "cgroup.controllers").exists():
        return CgroupMode.UNIFIED
    if (root / "unified" / "cgroup.controllers").exists():
        return CgroupMode.HYBRID
    return CgroupMode.LEGACY


def new_manager(
    cgroups_path: str, *, root: Path = DEFAULT_ROOT, mountinfo: str | None = None
) -> CgroupManager:
    """The manager for `cgroups_path` (OCI linux.cgroupsPath, relative to each hierarchy
    root whether or not it starts with "/"). Nothing is created until `apply`.

    On v1 the hierarchies come from `mountinfo` (the text of /proc/self/mountinfo when not
    given); only cgroup mounts at or below `root` count.
    """
    rel = cgroup_relpath(cgroups_path)
    if detect(root) is CgroupMode.UNIFIED:
        return CgroupV2(root, root / rel)
    if mountinfo is None:
        mountinfo = MOUNTINFO.read_text()
    hierarchies = cgroup_hierarchies(parse_mountinfo(mountinfo), root)
    if not any(h.version == 1 for h in hierarchies):
        raise CgroupError(f"no cgroup v1 hierarchy is mounted under {root}")
    paths: dict[str, Path] = {}
    for h in hierarchies:
        for controller in sorted(h.controllers):
            paths.setdefault(controller, h.mountpoint / rel)
    return CgroupV1(root, paths)


def _checked_path(key: str, value: str, root: Path, min_depth: int) -> Path:
    # state.json is trusted no more than any file on disk: destroy() rmdirs these paths, so
    # they must stay inside the cgroup tree and below a hierarchy root.
    if not isinstance(value, str):
        raise ValueError(f"cgroup path for {key!r}: expected string, got {type(value).__name__}")
    path = Path(value)
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError(f"cgroup path for {key!r}: {value!r} is not a clean absolute path")
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise ValueError(f"cgroup path for {key!r}: {value!r} is not under {root}") from None
    if len(rel.parts) < min_depth:
        raise ValueError(f"cgroup path for {key!r}: {value!r} is a hierarchy root")
    return path


def load_manager(paths: Mapping[str, str], *, root: Path = DEFAULT_ROOT) -> CgroupManager:
    """Rebuild the manager that returned `paths` from its `paths()`."""
    if not paths:
        raise ValueError("no cgroup paths to load")
    if detect(root) is CgroupMode.UNIFIED:
        if set(paths) != {UNIFIED}:
            raise ValueError(
                f"cgroup paths {sorted(paths)} are from a cgroup v1 host, but {root} is cgroup v2"
            )
        return CgroupV2(root, _checked_path(UNIFIED, paths[UNIFIED], root, 1))
    checked = {key: _checked_path(key, value, root, 2) for key, value in paths.items()}
    if set(checked) == {UNIFIED}:
        raise ValueError(f"cgroup paths are from a cgroup v2 host, but {root} is cgroup v1")
    return CgroupV1(root, checked)
