"""Writing a layer tar (a diff) from a snapshot: what a container commit or export needs.

Two sources, one output format:

| source                          | changed entries              | deletions                     |
|---------------------------------|------------------------------|-------------------------------|
| overlay upperdir                | all that the upperdir holds  | char 0/0 -> `.wh.name`;       |
| (`overlay_upper=True`)          |                              | opaque -> `d/.wh..wh..opq`    |
| two full trees (native)         | new or changed: type, mode,  | in lower, not in upper ->     |
|                                 | owner, size, mtime, xattrs,  | `.wh.name` (topmost only)     |
|                                 | link text, device, content   |                               |

The output is deterministic: children in byte order of their names, an opaque marker right
after its directory, PAX headers with integer mtimes, numeric owners only (no user/group
names from the host), no atime/ctime. Parent directories of a changed entry are always
written before it, so applying the diff onto an empty overlay upperdir keeps their metadata.
Files that share an inode inside the diff become one file and hard links to it. Sockets are
left out (tar has no type for them), as docker and containerd do. overlayfs' own xattrs
(`trusted.overlay.*`, `user.overlay.*`) and the host's `security.selinux` label are not
content; an upperdir with `redirect` or `metacopy` entries cannot be diffed by walking it
alone, and is refused.
"""

from __future__ import annotations

import os
import stat
import tarfile
from typing import BinaryIO

from containerd_py.archive.apply import (
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
)
from containerd_py.archive.errors import ArchiveError

_NS = 1_000_000_000
_CHUNK = 1 << 20
_SKIP_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")
_UNSUPPORTED_OVERLAY = (
    "trusted.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.redirect",
    "user.overlay.metacopy",
)
_OPAQUE_XATTRS = (OVERLAY_OPAQUE_XATTR, "user.overlay.opaque")


def write_layer(lower: str | None, upper: str, out: BinaryIO, *, overlay_upper: bool) -> None:
    """Writes the uncompressed layer tar that turns `lower` into `upper` to `out`.

    With `overlay_upper`, `upper` is an overlay upperdir and `lower` is not read. Without,
    both are full trees and `lower` None means "from scratch" (every entry of `upper`).
    """
    with tarfile.open(
        fileobj=out,
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        writer = _Writer(tar, upper)
        if overlay_upper:
            _walk_upperdir(writer, upper, "")
        else:
            _walk_compare(writer, lower, upper, "")


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _sorted_names(path: str) -> list[str]:
    return sorted(os.listdir(path), key=os.fsencode)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for name in names:
        if name.startswith(_SKIP_XATTRS):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


class _Writer:
    def __init__(self, tar: tarfile.TarFile, upper: str) -> None:
        self.tar = tar
        self.upper = upper
        self.dirs_written: set[str] = {""}
        self.inodes: dict[tuple[int, int], str] = {}

    def ensure_parents(self, rel: str) -> None:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self.dirs_written:
                path = os.path.join(self.upper, parent)
                self.add(parent, path, os.lstat(path))

    def add(self, rel: str, path: str, st: os.stat_result) -> None:
        self.ensure_parents(rel)
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = st.st_mtime_ns // _NS
        xattrs = _xattrs(path)
        if xattrs:
            # Binary values (security.capability) survive through surrogateescape; tarfile
            # then marks the header hdrcharset=BINARY.
            info.pax_headers = {
                f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                for k, v in sorted(xattrs.items())
            }
        data: BinaryIO | None = None
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            self.dirs_written.add(rel)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.inodes:
                info.type = tarfile.LNKTYPE
                info.linkname = self.inodes[key]
            else:
                if st.st_nlink > 1:
                    self.inodes[key] = rel
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                data = os.fdopen(fd, "rb")
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets and the like have no tar form
        if data is None:
            self.tar.addfile(info)
            return
        with data:
            self.tar.addfile(info, data)

    def marker(self, rel: str) -> None:
        """An empty regular file: a whiteout or an opaque marker."""
        self.ensure_parents(rel)
        info = tarfile.TarInfo(rel)
        info.type = tarfile.REGTYPE
        info.mode = 0o644
        info.uname = info.gname = ""
        info.mtime = 0
        self.tar.addfile(info)


def _walk_upperdir(w: _Writer, upper: str, rel: str) -> None:
    base = os.path.join(upper, rel) if rel else upper
    for name in _sorted_names(base):
        child = _join(rel, name)
        path = os.path.join(base, name)
        st = os.lstat(path)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            w.marker(_join(rel, WHITEOUT_PREFIX + name))
            continue
        for key in _UNSUPPORTED_OVERLAY:
            try:
                os.getxattr(path, key, follow_symlinks=False)
            except OSError:
                continue
            raise ArchiveError(f"{child}: overlay {key} entries cannot be diffed from the upperdir")
        w.add(child, path, st)
        if stat.S_ISDIR(st.st_mode):
            if _is_opaque(path):
                w.marker(_join(child, WHITEOUT_OPAQUE))
            _walk_upperdir(w, upper, child)


def _is_opaque(path: str) -> bool:
    for key in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, key, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _walk_compare(w: _Writer, lower: str | None, upper: str, rel: str) -> None:
    ubase = os.path.join(upper, rel) if rel else upper
    lbase = None if lower is None else (os.path.join(lower, rel) if rel else lower)
    unames = _sorted_names(ubase)
    lnames: list[str] = []
    if lbase is not None:
        lst = _lstat(lbase)
        if lst is not None and stat.S_ISDIR(lst.st_mode):
            lnames = _sorted_names(lbase)
    uset = set(unames)
    for name in sorted(uset | set(lnames), key=os.fsencode):
        child = _join(rel, name)
        if name not in uset:
            w.marker(_join(rel, WHITEOUT_PREFIX + name))
            continue
        upath = os.path.join(ubase, name)
        ust = os.lstat(upath)
        lpath = None if lbase is None or name not in lnames else os.path.join(lbase, name)
        lst = None if lpath is None else _lstat(lpath)
        if lst is None or lpath is None or _changed(lpath, lst, upath, ust):
            w.add(child, upath, ust)
        if stat.S_ISDIR(ust.st_mode):
            same_kind = lst is not None and stat.S_ISDIR(lst.st_mode)
            _walk_compare(w, lower if same_kind else None, upper, child)


def _changed(lpath: str, lst: os.stat_result, upath: str, ust: os.stat_result) -> bool:
    if stat.S_IFMT(lst.st_mode) != stat.S_IFMT(ust.st_mode):
        return True
    if (lst.st_mode, lst.st_uid, lst.st_gid) != (ust.st_mode, ust.st_uid, ust.st_gid):
        return True
    if lst.st_mtime_ns != ust.st_mtime_ns:
        return True
    if _xattrs(lpath) != _xattrs(upath):
        return True
    if stat.S_ISLNK(ust.st_mode):
        return os.readlink(lpath) != os.readlink(upath)
    if stat.S_ISCHR(ust.st_mode) or stat.S_ISBLK(ust.st_mode):
        return lst.st_rdev != ust.st_rdev
    if stat.S_ISREG(ust.st_mode):
        if lst.st_size != ust.st_size:
            return True
        if (lst.st_dev, lst.st_ino) == (ust.st_dev, ust.st_ino):
            return False
        # Whole-second mtimes (from a tar, or a coarse file system) prove little: a rewrite
        # within the same second keeps them. Nanosecond ones are trusted, as containerd does.
        if ust.st_mtime_ns % _NS == 0:
            return not _same_content(lpath, upath)
    return False


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True
