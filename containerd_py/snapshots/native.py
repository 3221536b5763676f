"""The native snapshotter: every snapshot is a full copy of its parent, mounted with a bind.

Slow and space-hungry, but it works on any filesystem and needs no overlay support: the
fallback where overlay cannot run (inside an overlay without the right xattrs, some
rootless setups) and a simple reference for tests. `prepare` and `view` copy the parent's
tree, keeping owners, modes, xattrs, links and device nodes (fs.copy_tree); `commit` just
freezes the directory.
"""

from __future__ import annotations

from pathlib import Path

from containerd_py.snapshots import fs
from containerd_py.snapshots.base import DirSnapshotter
from containerd_py.snapshots.mount import Mount
from containerd_py.snapshots.snapshotter import Kind
from containerd_py.snapshots.storage import Snapshot


class NativeSnapshotter(DirSnapshotter):
    def _populate(self, tmp: Path, s: Snapshot) -> None:
        target = tmp / "fs"
        if s.parent_ids:
            fs.copy_tree(str(self.fs_path(s.parent_ids[0])), str(target))
        else:
            target.mkdir(0o755)

    def _mounts(self, s: Snapshot) -> list[Mount]:
        ro = "ro" if s.kind is Kind.VIEW else "rw"
        return [Mount("bind", str(self.fs_path(s.id)), (ro, "rbind"))]
