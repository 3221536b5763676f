"""A task's cgroup statistics, read by the shim itself from the cgroup files.

Stats used to run `<runtime> events --stats` on every call: a process spawn (about 30 ms
with pyrunc's launcher, 8 ms with runc) for counters that are files the shim can read.
The readers are pyrunc's (`oci_runtime.cgroups.stats`, a lower layer, imported on the
first Stats only: an idle shim never pays for it). They return runc's `events --stats`
"data" object, so what a client sees does not depend on how the numbers were read, and
`shim.service.stats_from_runtime` converts both.

Where the cgroup is, found once per task (`locate`):

    bundle config.json linux.cgroupsPath     the cgroup
    ---------------------------------------  ------------------------------------------------
    absolute path ("/default/web")           that path under each hierarchy: every v1 mount
                                             at /sys/fs/cgroup, or the unified tree (v2)
    relative, systemd ("slice:prefix:name"), the init's own, from /proc/<pid>/cgroup: each
    or none                                  runtime resolves those its own way

A cgroup that cannot be found (or is gone) gives None, and the caller asks the runtime.
Every path is injectable (`root`, `mountinfo`, `proc`), so the tests run v2 on a fake tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from oci_runtime.cgroups.files import UNIFIED  # the key of the v2 directory in `paths`

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True, slots=True)
class TaskCgroup:
    """One container's cgroup: v1 as controller → directory, v2 as {UNIFIED: directory}."""

    version: int
    paths: dict[str, str] = field(default_factory=dict)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.paths.values())

    def stats(self) -> dict[str, Any]:
        """runc's `events --stats` "data" object for this cgroup."""
        from oci_runtime.cgroups import stats

        if self.version == 2:
            return stats.v2_stats(self.paths[UNIFIED])
        return stats.v1_stats(self.paths)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _join(mountpoint: str, mount_root: str, rel: str) -> str:
    # A hierarchy mounted from a sub-cgroup (mount root "/x") shows "/x/y" as "y".
    rel = "/" + rel.strip("/")
    root = mount_root.rstrip("/")
    if root and (rel == root or rel.startswith(root + "/")):
        rel = rel[len(root) :]
    return os.path.normpath(os.path.join(mountpoint, rel.lstrip("/")))


def from_cgroups_path(
    cgroups_path: str, *, root: str = CGROUP_ROOT, mountinfo: str | None = None
) -> TaskCgroup | None:
    """The cgroup an absolute `linux.cgroupsPath` names; None when it names none here."""
    from oci_runtime.cgroups import CgroupError, new_manager

    try:
        mgr = new_manager(cgroups_path, root=root, mountinfo=mountinfo, warn=lambda _: None)
    except (CgroupError, ValueError, OSError):
        return None
    paths = mgr.paths()
    if mgr.is_v2:
        return TaskCgroup(2, {UNIFIED: paths[UNIFIED]})
    return TaskCgroup(1, {k: v for k, v in paths.items() if k != UNIFIED})


def from_pid(
    pid: int, *, root: str = CGROUP_ROOT, mountinfo: str | None = None, proc: str = "/proc"
) -> TaskCgroup | None:
    """The cgroup pid is in (as containerd's shim finds its container's)."""
    from oci_runtime.cgroups.mountinfo import cgroup_mounts, controllers_of

    own = _read(f"{proc}/{pid}/cgroup")
    if mountinfo is None:
        mountinfo = _read(f"{proc}/self/mountinfo")
    if own is None or mountinfo is None:
        return None
    top = os.path.normpath(root)
    mounts = [
        m
        for m in cgroup_mounts(mountinfo)
        if m.mountpoint == top or m.mountpoint.startswith(top.rstrip("/") + "/")
    ]
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in own.splitlines():
        hid, sep, rest = line.partition(":")
        controllers, sep2, rel = rest.partition(":")
        if not sep or not sep2:
            continue
        if hid == "0" and not controllers:
            m2 = next((m for m in mounts if m.fstype == "cgroup2"), None)
            if m2 is not None:
                v2 = _join(m2.mountpoint, m2.root, rel)
            continue
        names = {c for c in controllers.split(",") if c and not c.startswith("name=")}
        for m in mounts:
            if m.fstype == "cgroup" and names and names <= controllers_of(m.super_options):
                for c in sorted(names):
                    v1.setdefault(c, _join(m.mountpoint, m.root, rel))
                break
    if v1:
        return TaskCgroup(1, v1)
    if v2 is not None and os.path.exists(os.path.join(top, "cgroup.controllers")):
        return TaskCgroup(2, {UNIFIED: v2})
    return None


def locate(
    config: dict[str, Any],
    pid: int,
    *,
    systemd: bool = False,
    root: str = CGROUP_ROOT,
    mountinfo: str | None = None,
    proc: str = "/proc",
) -> TaskCgroup | None:
    """The task's cgroup (see the module doc); None if it cannot be found or is gone.

    config is the bundle's config.json; systemd: the runtime was told `--systemd-cgroup`,
    so cgroupsPath is "slice:prefix:name", not a path.
    """
    linux = config.get("linux") if isinstance(config, dict) else None
    path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
    found = None
    if isinstance(path, str) and path.startswith("/") and not systemd:
        found = from_cgroups_path(path, root=root, mountinfo=mountinfo)
    if (found is None or not found.exists()) and pid > 0:
        found = from_pid(pid, root=root, mountinfo=mountinfo, proc=proc)
    return found if found is not None and found.exists() else None
