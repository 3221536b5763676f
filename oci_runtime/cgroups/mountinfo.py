"""/proc/<pid>/mountinfo parsing, as pure functions over its text.

A line reads (proc(5))::

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)

(7) is zero or more optional fields ended by the "-" separator (8). Paths escape space, tab,
newline and backslash as octal (\\040, \\011, \\012, \\134).

A cgroup v1 hierarchy is a mount of type "cgroup" whose super options (11) name its
controllers: "rw,cpu,cpuacct" is one hierarchy holding cpu and cpuacct, "rw,name=systemd" a
named hierarchy with no controller. A mount of type "cgroup2" is the unified hierarchy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Hierarchy", "MountInfo", "cgroup_hierarchies", "parse_mountinfo"]

_OCTAL = re.compile(r"\\([0-7]{3})")

# Super options of a cgroup mount that are flags, not controllers.
_NON_CONTROLLER_OPTIONS = frozenset(
    {
        "rw",
        "ro",
        "noprefix",
        "xattr",
        "clone_children",
        "cpuset_v2_mode",
        "favordynmods",
        "nofavordynmods",
        "none",
        "all",
        "nsdelegate",
        "memory_localevents",
        "memory_recursiveprot",
        "memory_hugetlb_accounting",
        "pids_localevents",
    }
)

#: The controller key for the cgroup2 hierarchy, as in `CgroupManager.paths()`.
UNIFIED = ""


@dataclass(frozen=True, slots=True)
class MountInfo:
    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mountpoint: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: str


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy: v1 with its controllers, or v2 with {UNIFIED}."""

    mountpoint: Path
    controllers: frozenset[str]
    version: int


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Every well-formed line of `text`; malformed lines are skipped, not fatal, because a
    runtime must not fail over a mount it does not care about."""
    mounts: list[MountInfo] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4 or sep < 6:
            continue
        try:
            major, minor = (int(x) for x in fields[2].split(":"))
            mounts.append(
                MountInfo(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    major=major,
                    minor=minor,
                    root=_unescape(fields[3]),
                    mountpoint=_unescape(fields[4]),
                    options=fields[5],
                    optional=tuple(fields[6:sep]),
                    fstype=fields[sep + 1],
                    source=_unescape(fields[sep + 2]),
                    super_options=fields[sep + 3],
                )
            )
        except ValueError:
            continue
    return mounts


def controllers_of(super_options: str) -> frozenset[str]:
    """The controllers (and "name=X" hierarchy names) in a cgroup v1 mount's super options."""
    out = set()
    for opt in super_options.split(","):
        named = opt.startswith("name=")
        if named or (opt and "=" not in opt and opt not in _NON_CONTROLLER_OPTIONS):
            out.add(opt)
    return frozenset(out)


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def cgroup_hierarchies(mounts: list[MountInfo], root: Path) -> list[Hierarchy]:
    """The cgroup hierarchies mounted at or below `root`, one per controller set.

    When a hierarchy is mounted twice (a bind mount), the first mount wins, which is the one
    the mount table lists first and the one runc picks too.
    """
    found: list[Hierarchy] = []
    seen: set[frozenset[str]] = set()
    for m in mounts:
        mountpoint = Path(m.mountpoint)
        if not _is_under(mountpoint, root):
            continue
        if m.fstype == "cgroup":
            controllers = controllers_of(m.super_options)
            version = 1
        elif m.fstype == "cgroup2":
            controllers = frozenset({UNIFIED})
            version = 2
        else:
            continue
        if not controllers or controllers in seen:
            continue
        seen.add(controllers)
        found.append(Hierarchy(mountpoint=mountpoint, controllers=controllers, version=version))
    return found
