"""File tree helpers for snapshotters: a faithful copy, disk usage, and a safe removal.

`copy_tree` keeps what a container image needs intact: owners, modes (with setuid bits,
hence chown before chmod), extended attributes (file capabilities, overlay opaque markers;
after chown, which clears security.capability), symlinks as links, hard links as links,
device nodes, FIFOs and sockets as nodes, and timestamps (directories last, since filling
them changes their mtime).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat

from containerd_py.snapshots.snapshotter import Usage

log = logging.getLogger(__name__)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        try:
            os.setxattr(
                dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False
            )
        except OSError as e:
            # A target filesystem without xattrs, or trusted./security. without root.
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) or (
                e.errno == errno.EPERM and os.geteuid() != 0
            ):
                log.debug("copy: xattr %s of %s not copied: %s", name, src, e)
                continue
            raise


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    try:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    except PermissionError:
        # Without root only one's own files can be copied with their owner; the native
        # snapshotter is still usable by a plain user for its own trees (unit tests).
        if os.geteuid() == 0:
            raise
    _copy_xattrs(src, dst)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: str, dst: str) -> None:
    """Copy the tree at `src` into the directory `dst` (created if missing)."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = []
    top = os.lstat(src)
    if not stat.S_ISDIR(top.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", src)
    os.makedirs(dst, exist_ok=True)
    dirs.append((src, dst, top))
    stack = [(src, dst)]
    while stack:
        sdir, ddir = stack.pop()
        with os.scandir(sdir) as it:
            entries = list(it)
        for e in entries:
            s, d = e.path, os.path.join(ddir, e.name)
            st = os.lstat(s)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(d, 0o700)  # real mode applied after its contents
                dirs.append((s, d, st))
                stack.append((s, d))
                continue
            if st.st_nlink > 1:
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    os.link(first, d)
                    continue
                links[(st.st_dev, st.st_ino)] = d
            if stat.S_ISREG(mode):
                shutil.copyfile(s, d, follow_symlinks=False)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                os.mknod(d, mode, st.st_rdev)
            elif stat.S_ISSOCK(mode):
                os.mknod(d, mode)
            else:
                log.warning("copy: skipping %s of unknown type %o", s, stat.S_IFMT(mode))
                continue
            _copy_meta(s, d, st)
    for s, d, st in reversed(dirs):  # children before parents: parents' mtimes hold
        _copy_meta(s, d, st)


def disk_usage(path: str) -> Usage:
    """Blocks in use under `path` (as du counts them) and inodes, each hard link once.

    Stays on one filesystem: a mount inside the tree is somebody else's usage.
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return Usage(0, 0)
    seen = {(top.st_dev, top.st_ino)}
    size, inodes = top.st_blocks * 512, 1
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if st.st_dev != top.st_dev:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                size += st.st_blocks * 512
                inodes += 1
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
    return Usage(size, inodes)


def mountpoints_under(path: str, mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    """Mount points strictly inside `path`, bind mounts of the same filesystem included."""
    # Imported here: remove_tree is the only user, and the cgroups package is not small.
    from oci_runtime.cgroups.mountinfo import parse_mountinfo

    root = os.path.realpath(path).rstrip("/") + "/"
    try:
        with open(mountinfo) as f:
            text = f.read()
    except OSError:
        return set()
    return {m.mountpoint for m in parse_mountinfo(text) if m.mountpoint.startswith(root)}


def remove_tree(path: str) -> None:
    """rm -rf that never descends into a mount found inside the tree.

    A container's rootfs left mounted inside a snapshot directory must not be emptied: such
    mounts (any filesystem, binds of the same one too) are skipped and logged, and the
    directories above them stay; OSError is raised at the end if anything remained.
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        os.unlink(path)
        return
    real = os.path.realpath(path)
    mounts = mountpoints_under(real)
    order: list[str] = []
    stack = [real]
    kept: list[str] = []
    while stack:
        d = stack.pop()
        order.append(d)
        try:
            it = os.scandir(d)
        except FileNotFoundError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if e.path in mounts or st.st_dev != top.st_dev:
                        log.error("not removing %s: a filesystem is mounted there", e.path)
                        kept.append(e.path)
                    else:
                        stack.append(e.path)
                    continue
                try:
                    os.unlink(e.path)
                except FileNotFoundError:
                    pass
    for d in reversed(order):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            if not kept:
                raise
    if kept:
        raise OSError(errno.EBUSY, f"{path} not fully removed: mounts inside: {', '.join(kept)}")
