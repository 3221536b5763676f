"""The per-namespace cgroup parent that tasks leave behind, removed once it is empty.

A task's cgroup is `/<namespace>/<id>` (containerd's convention, set by `oci_spec`); the
runtime's delete removes `<id>` and leaves `/<namespace>` in every hierarchy. The task
manager removes it when the last task of the namespace is deleted, with these rules:

- Only the parent of that conventional path. A caller that chose its own cgroupsPath owns
  its parents, and so does an operator who set PYCONTAINERD_CGROUP_PARENT (the path is then
  `/<parent>/<namespace>-<id>`, which does not have the shape): neither is touched.
- Only if empty: a plain rmdir(2), which the kernel refuses (EBUSY, ENOTEMPTY) while the
  cgroup has a child or a process. There is no recursive removal here.
- Never while a create in the same namespace is in flight in this daemon (the caller holds
  a lock that creates also take, see TaskManager). Otherwise the runtime's `mkdir -p` could
  find `/<namespace>` and then fail to make `<id>` in it a moment later, when the parent
  was removed in between. A second daemon sharing the namespace's cgroup (two stacks on one
  host with the same namespace and no PYCONTAINERD_CGROUP_PARENT) has no such lock: its
  create may fail in that window. Stacks that share a host should set distinct parents.
"""

from __future__ import annotations

import errno
import logging
import os

log = logging.getLogger("containerd_py.runtime")

CGROUP_ROOT = "/sys/fs/cgroup"
# rmdir answers for a cgroup that is still in use or already gone.
_IN_USE_OR_GONE = {errno.EBUSY, errno.ENOTEMPTY, errno.ENOENT}


def default_parent(cgroups_path: object, namespace: str, task_id: str) -> str | None:
    """`/<namespace>` when cgroups_path is the conventional `/<namespace>/<id>`, else None."""
    if cgroups_path != f"/{namespace}/{task_id}" or "/" in namespace or namespace in ("", ".."):
        return None
    return f"/{namespace}"


def hierarchy_dirs(
    path: str, *, root: str = CGROUP_ROOT, mountinfo: str | None = None
) -> list[str]:
    """path's directory in every hierarchy (each v1 mount and the v2 tree), or [] if none."""
    from oci_runtime.cgroups import CgroupError, new_manager

    try:
        mgr = new_manager(path, root=root, mountinfo=mountinfo, warn=lambda _: None)
    except (CgroupError, ValueError, OSError):
        return []
    return sorted(set(mgr.paths().values()))


def remove_if_empty(
    path: str, *, root: str = CGROUP_ROOT, mountinfo: str | None = None
) -> list[str]:
    """rmdir path in every hierarchy where it exists and is empty; the dirs removed."""
    removed = []
    for d in hierarchy_dirs(path, root=root, mountinfo=mountinfo):
        try:
            os.rmdir(d)
        except OSError as e:
            if e.errno not in _IN_USE_OR_GONE:
                log.warning("removing cgroup %s: %s", d, e)
            continue
        removed.append(d)
    return removed
