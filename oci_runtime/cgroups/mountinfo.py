"""/proc/<pid>/mountinfo parsing, as pure functions over its text.

A line reads (proc(5))::

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)

(7) is zero or more optional fields ended by the "-" separator (8). Paths escape space, tab,
newline and backslash as octal (\\040, \\011, \\012, \\134).

A cgroup v1 hierarchy is a mount of type "cgroup" whose super options (11) name its
controllers: "rw,cpu,cpuacct" is one hierarchy holding cpu and cpuacct, "rw,name=systemd" a
named hierarchy with no controller. A mount of type "cgroup2" is the unified hierarchy.

Only `new_manager` needs this module (every `pyrunc create`), so it is imported there.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would turn every string
# annotation into a ForwardRef and compile it, which doubles the cost of defining the class.

import os
from typing import NamedTuple

from oci_runtime.cgroups.files import UNIFIED

__all__ = ["Hierarchy", "MountInfo", "cgroup_hierarchies", "cgroup_mounts", "parse_mountinfo"]

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

_CGROUP_FSTYPES = ("cgroup", "cgroup2")


class MountInfo(NamedTuple):
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


class Hierarchy(NamedTuple):
    """One mounted cgroup hierarchy: v1 with its controllers, or v2 with {UNIFIED}."""

    mountpoint: str
    controllers: frozenset[str]
    version: int


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    # Rare (a mount point with a space in it), so the pattern is compiled on first use only;
    # json has imported re already in any pyrunc process.
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _parse_line(line: str) -> MountInfo | None:
    fields = line.split(" ")
    try:
        sep = fields.index("-", 6)
    except ValueError:
        return None
    if len(fields) < sep + 4:
        return None
    try:
        major, minor = (int(x) for x in fields[2].split(":"))
        return MountInfo(
            int(fields[0]),
            int(fields[1]),
            major,
            minor,
            _unescape(fields[3]),
            _unescape(fields[4]),
            fields[5],
            tuple(fields[6:sep]),
            fields[sep + 1],
            _unescape(fields[sep + 2]),
            fields[sep + 3],
        )
    except ValueError:
        return None


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Every well-formed line of `text`; malformed lines are skipped, not fatal, because a
    runtime must not fail over a mount it does not care about."""
    return [m for line in text.splitlines() if (m := _parse_line(line)) is not None]


def cgroup_mounts(text: str) -> list[MountInfo]:
    """The cgroup and cgroup2 mounts of `text`, as `parse_mountinfo` gives them.

    A host with many containers has thousands of other mounts; only lines that can be cgroup
    mounts are split. Paths and sources are escaped, so " - cgroup" occurs in a line only as
    the separator followed by the fstype.
    """
    out: list[MountInfo] = []
    for line in text.splitlines():
        if " - cgroup" in line:
            m = _parse_line(line)
            if m is not None and m.fstype in _CGROUP_FSTYPES:
                out.append(m)
    return out


def controllers_of(super_options: str) -> frozenset[str]:
    """The controllers (and "name=X" hierarchy names) in a cgroup v1 mount's super options."""
    out = set()
    for opt in super_options.split(","):
        named = opt.startswith("name=")
        if named or (opt and "=" not in opt and opt not in _NON_CONTROLLER_OPTIONS):
            out.add(opt)
    return frozenset(out)


def cgroup_hierarchies(mounts: list[MountInfo], root: str | os.PathLike[str]) -> list[Hierarchy]:
    """The cgroup hierarchies mounted at or below `root`, one per controller set.

    When a hierarchy is mounted twice (a bind mount), the first mount wins, which is the one
    the mount table lists first and the one runc picks too.
    """
    top = os.path.normpath(os.fspath(root))
    prefix = top if top.endswith("/") else top + "/"
    found: list[Hierarchy] = []
    seen: set[frozenset[str]] = set()
    for m in mounts:
        # The kernel prints mount points normalized, so comparing names is enough.
        mountpoint = m.mountpoint
        if mountpoint != top and not mountpoint.startswith(prefix):
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
        found.append(Hierarchy(mountpoint, controllers, version))
    return found
