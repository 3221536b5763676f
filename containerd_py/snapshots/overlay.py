"""The overlayfs snapshotter: each layer is a directory, stacked by the kernel at mount time.

    <root>/snapshots/<id>/fs     the layer's own files (an active snapshot's upperdir)
    <root>/snapshots/<id>/work   overlay's workdir, for active snapshots only

Mounts, as containerd's overlay snapshotter gives them:

    no parent, active   bind of fs, rw
    no parent, view     bind of fs, ro
    parents, active     overlay lowerdir=<parents' fs, nearest first>, upperdir=fs, workdir=work
    one parent, view    bind of the parent's fs, ro (overlay needs two lowers without an upper)
    parents, view       overlay lowerdir=<parents' fs> (read-only by construction)

Commit freezes the upper directory as is: whiteouts (0/0 character devices) and opaque
directories (trusted.overlay.opaque) written by overlay become part of the layer, so a file
deleted in a child stays deleted for the child's children. Long parent chains: see
mount.py (relative lowerdirs past one page of options).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from containerd_py.errdefs import Unavailable
from containerd_py.snapshots.base import DirSnapshotter
from containerd_py.snapshots.mount import Mount, MountSyscalls, default_syscalls, unmount
from containerd_py.snapshots.snapshotter import Kind
from containerd_py.snapshots.storage import Snapshot

_INDEX_PARAM = "/sys/module/overlay/parameters/index"


class OverlaySnapshotter(DirSnapshotter):
    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        mount_options: Sequence[str] = (),
        index_off: bool | None = None,
    ) -> None:
        super().__init__(root)
        self.mount_options = tuple(mount_options)
        # With the index feature on, a lower layer once used with another upper is refused
        # by later mounts; layers here are shared by design, so switch it off where the
        # kernel knows the option (containerd does the same).
        self.index_off = os.path.exists(_INDEX_PARAM) if index_off is None else index_off

    def _populate(self, tmp: Path, s: Snapshot) -> None:
        (tmp / "fs").mkdir(0o755)
        if s.kind is Kind.ACTIVE:
            (tmp / "work").mkdir(0o711)
        if s.parent_ids:
            # The mounted root directory is the upper one; it should carry the owner the
            # image gave its root, which lives in the parent layer.
            st = os.lstat(self.fs_path(s.parent_ids[0]))
            try:
                os.chown(tmp / "fs", st.st_uid, st.st_gid)
            except PermissionError:
                if os.geteuid() == 0:
                    raise

    def _mounts(self, s: Snapshot) -> list[Mount]:
        if not s.parent_ids:
            ro = "ro" if s.kind is Kind.VIEW else "rw"
            return [Mount("bind", str(self.fs_path(s.id)), (ro, "rbind"))]
        options: list[str] = []
        if self.index_off:
            options.append("index=off")
        if s.kind is Kind.ACTIVE:
            options.append(f"workdir={self._dir(s.id) / 'work'}")
            options.append(f"upperdir={self.fs_path(s.id)}")
        elif len(s.parent_ids) == 1:
            return [Mount("bind", str(self.fs_path(s.parent_ids[0])), ("ro", "rbind"))]
        lowers = ":".join(str(self.fs_path(p)) for p in s.parent_ids)
        options.append(f"lowerdir={lowers}")
        options.extend(self.mount_options)
        return [Mount("overlay", "overlay", tuple(options))]


def supported(root: str | os.PathLike[str], syscalls: MountSyscalls | None = None) -> None:
    """Raise Unavailable unless an overlay can be mounted with its layers under `root`.

    The filesystem under root matters (overlay cannot use some as upper, e.g. another
    overlay without xattr support), so the probe mounts there, as containerd's does.
    """
    sc = syscalls or default_syscalls()
    Path(root).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="overlay-check-", dir=root) as d:
        for sub in ("lower1", "lower2", "upper", "work", "merged"):
            os.mkdir(os.path.join(d, sub))
        opts = f"lowerdir={d}/lower2:{d}/lower1,upperdir={d}/upper,workdir={d}/work"
        try:
            sc.mount("overlay", f"{d}/merged", "overlay", 0, opts)
        except OSError as e:
            raise Unavailable(f"overlayfs is not usable under {root}: {e}") from e
        unmount(f"{d}/merged", syscalls=sc)
