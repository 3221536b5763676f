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

Every pyrunc command is a fresh interpreter, and most (start, state, kill, delete, pause) only
`load_manager` and read or remove a few files. So this package imports only what a v1
`load_manager(...).destroy()` needs: the v2 implementation, `Resources`, mountinfo parsing,
statistics, `CgroupMode` and `CgroupManager` are imported when first used (the last four
names are exported lazily, through the module `__getattr__`).
"""

from __future__ import annotations

import os

from oci_runtime.cgroups import files
from oci_runtime.cgroups.files import UNIFIED, CgroupError, cgroup_relpath, relative_to
from oci_runtime.cgroups.v1 import CgroupV1

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    from oci_runtime.cgroups.interface import CgroupManager, CgroupMode
    from oci_runtime.cgroups.resources import Resources
    from oci_runtime.cgroups.v2 import CgroupV2

    DEFAULT_ROOT: Path
    StrPath = str | os.PathLike[str]
    Warn = Callable[[str], None]

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

_ROOT = "/sys/fs/cgroup"
MOUNTINFO = "/proc/self/mountinfo"


def __getattr__(name: str) -> Any:
    # The lazily exported names (see the module docstring), cached once looked up.
    value: Any
    if name == "CgroupMode":
        from oci_runtime.cgroups.interface import CgroupMode as value
    elif name == "CgroupManager":
        from oci_runtime.cgroups.interface import CgroupManager as value
    elif name == "CgroupV2":
        from oci_runtime.cgroups.v2 import CgroupV2 as value
    elif name == "Resources":
        from oci_runtime.cgroups.resources import Resources as value
    elif name == "DEFAULT_ROOT":
        from pathlib import Path

        value = Path(_ROOT)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def _mode(root: str) -> str:
    """A `CgroupMode` value, without importing enum for it."""
    if os.path.exists(f"{root}/cgroup.controllers"):
        return "unified"
    if os.path.exists(f"{root}/unified/cgroup.controllers"):
        return "hybrid"
    return "legacy"


def detect(root: StrPath = _ROOT) -> CgroupMode:
    from oci_runtime.cgroups.interface import CgroupMode

    return CgroupMode(_mode(os.fspath(root)))


def new_manager(
    cgroups_path: str,
    *,
    root: StrPath = _ROOT,
    mountinfo: str | None = None,
    warn: Warn | None = None,
) -> CgroupManager:
    """The manager for `cgroups_path` (OCI linux.cgroupsPath, relative to each hierarchy
    root whether or not it starts with "/"). Nothing is created until `apply`.

    On v1 the hierarchies come from `mountinfo` (the text of /proc/self/mountinfo when not
    given); only cgroup mounts at or below `root` count. `warn` receives best-effort failures,
    one line each (stderr when not given).
    """
    rel = cgroup_relpath(cgroups_path)
    top = os.path.normpath(os.fspath(root))
    if _mode(top) == "unified":
        from oci_runtime.cgroups.v2 import CgroupV2

        return CgroupV2(top, os.path.join(top, rel), warn=warn)
    from oci_runtime.cgroups.mountinfo import cgroup_hierarchies, cgroup_mounts

    if mountinfo is None:
        mountinfo = files.read_text(MOUNTINFO)
    hierarchies = cgroup_hierarchies(cgroup_mounts(mountinfo), top)
    if not any(h.version == 1 for h in hierarchies):
        raise CgroupError(f"no cgroup v1 hierarchy is mounted under {top}")
    paths: dict[str, str] = {}
    for h in hierarchies:
        d = os.path.join(h.mountpoint, rel)
        for controller in sorted(h.controllers):
            paths.setdefault(controller, d)
    return CgroupV1(top, paths, warn=warn)


def _checked_path(key: str, value: str, root: str, min_depth: int) -> str:
    # state.json is trusted no more than any file on disk: destroy() rmdirs these paths, so
    # they must stay inside the cgroup tree and below a hierarchy root.
    if not isinstance(value, str):
        raise ValueError(f"cgroup path for {key!r}: expected string, got {type(value).__name__}")
    if not value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"cgroup path for {key!r}: {value!r} is not a clean absolute path")
    path = os.path.normpath(value)
    try:
        rel = relative_to(path, root)
    except ValueError:
        raise ValueError(f"cgroup path for {key!r}: {value!r} is not under {root}") from None
    if (rel.count("/") + 1 if rel else 0) < min_depth:
        raise ValueError(f"cgroup path for {key!r}: {value!r} is a hierarchy root")
    return path


def load_manager(
    paths: Mapping[str, str], *, root: StrPath = _ROOT, warn: Warn | None = None
) -> CgroupManager:
    """Rebuild the manager that returned `paths` from its `paths()`."""
    if not paths:
        raise ValueError("no cgroup paths to load")
    top = os.path.normpath(os.fspath(root))
    if _mode(top) == "unified":
        if set(paths) != {UNIFIED}:
            raise ValueError(
                f"cgroup paths {sorted(paths)} are from a cgroup v1 host, but {top} is cgroup v2"
            )
        from oci_runtime.cgroups.v2 import CgroupV2

        return CgroupV2(top, _checked_path(UNIFIED, paths[UNIFIED], top, 1), warn=warn)
    checked = {key: _checked_path(key, value, top, 2) for key, value in paths.items()}
    if set(checked) == {UNIFIED}:
        raise ValueError(f"cgroup paths are from a cgroup v2 host, but {top} is cgroup v1")
    return CgroupV1(top, checked, warn=warn)
