"""Applying one layer tar onto a snapshot directory, without ever writing outside it.

A layer is hostile input until proven otherwise: anyone can push an image. So no path from
the tar is ever handed to the kernel whole. Every entry name is cleaned lexically first
(absolute names and `..` that climbs above the root are refused), then its parent directory
is reached one component at a time from a file descriptor of `dest`, with `O_NOFOLLOW`, and
the entry is created relative to that directory's descriptor (the *at system calls). A
symlink met on the way, planted by this layer or an earlier one, is followed only while its
target stays inside `dest` as seen from the host; an absolute target, or one whose `..`
climbs above `dest`, stops the unpack with `UnsafeArchiveError`. The last component is
never followed. Hard link targets go through the same resolution.

Absolute symlink targets are refused in the middle of a path rather than re-rooted at
`dest` (as a chroot would, and as containerd's `fs.RootPath` does): the target means one
place on the host and another inside the container, and a layer produced by diffing a
snapshot never writes through a symlink, so only a forged layer does that.

Whiteouts, in the two forms the snapshotters want (`whiteout_mode`):

| tar entry          | "delete" (native, onto a copy)     | "overlay" (into an empty upperdir) |
|--------------------|------------------------------------|------------------------------------|
| `d/.wh.name`       | removes `d/name` of lower layers   | char device 0/0 at `d/name`        |
| `d/.wh..wh..opq`   | empties `d` of lower layers' files | xattr `trusted.overlay.opaque=y`   |
| `.wh..wh.plnk` ... | skipped (AUFS bookkeeping)         | skipped                            |

As the image spec says, a whiteout only hides what lower layers hold: an entry of the same
layer survives it, whatever the order inside the tar. In overlay mode the upperdir starts
empty, so a hard link can only point at an entry of the same layer (a diff never links
across layers anyway), and a symlink of a lower layer is not followed (the upperdir gets a
real directory, which overlayfs shows in place of the lower symlink), as with containerd.

Metadata, in this order because each step can undo the one before: owner (`chown` clears
setuid/setgid and file capabilities), then mode, then xattrs, then times. Directory modes
and times are set last, deepest first, once their children are written (creating a child
changes the directory's mtime, and a read-only mode could block the children).

Device nodes that the kernel will not let us create (EPERM, as in a user namespace) are
skipped with a warning, as containerd does there: failing would make such images unusable
for nothing, since a container gets its /dev from the runtime anyway. A whiteout device in
overlay mode is never skipped: without it a deleted file would come back. xattrs the file
system refuses (EOPNOTSUPP, or EPERM for a namespace we may not write) are skipped with a
warning too; `trusted.overlay.*` / `user.overlay.*` from the tar are always dropped, since
overlayfs would obey them (a forged `redirect` or `opaque`).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import BinaryIO, Literal

from containerd_py.archive.compression import open_decompressed
from containerd_py.archive.errors import (
    ArchiveError,
    DiffIDMismatchError,
    UnsafeArchiveError,
    UnsupportedCompressionError,
)

log = logging.getLogger(__name__)

WhiteoutMode = Literal["delete", "overlay"]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

# Linux's own limit on symlinks followed in one lookup.
_MAX_SYMLINKS = 40
_CHUNK = 1 << 20
_O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NS = 1_000_000_000


def apply_layer(
    stream: BinaryIO,
    dest: str,
    *,
    media_type: str | None = None,
    same_owner: bool = True,
    whiteout_mode: WhiteoutMode = "delete",
    parents: Sequence[str] = (),
    expected_diff_id: str | None = None,
    warnings: list[str] | None = None,
) -> int:
    """Unpacks the layer in `stream` (plain, gzip or zstd tar) onto the directory `dest`.

    Returns the size of the uncompressed tar, which is what the layer's diff_id hashes.
    `same_owner=False` leaves files owned by the caller (an unprivileged unpack).
    `parents` are the lower directories of an overlay, top first: in overlay mode, a
    directory that the layer writes into without listing it is created in the upperdir
    with the mode, owner and times it has below, so it does not mask them.
    With `expected_diff_id`, the uncompressed bytes must hash to it (DiffIDMismatchError
    after the fact: the caller throws the snapshot away). Skipped devices and xattrs are
    logged and appended to `warnings`.
    """
    if whiteout_mode not in ("delete", "overlay"):
        raise ValueError(f"whiteout_mode must be 'delete' or 'overlay', not {whiteout_mode!r}")
    if media_type is not None:
        check_layer_media_type(media_type)
    decompressed, _kind = open_decompressed(stream)
    reader = _HashingReader(decompressed)
    with _Applier(dest, whiteout_mode, same_owner, parents, warnings) as applier:
        try:
            with tarfile.open(
                fileobj=reader,  # type: ignore[arg-type]
                mode="r|",
                encoding="utf-8",
                errors="surrogateescape",
            ) as tar:
                for member in tar:
                    applier.add(member, tar)
        except tarfile.ReadError as e:
            # An empty stream is an empty layer; anything else that is not a tar is an error.
            if reader.size != 0:
                raise ArchiveError(f"not a valid layer tar: {e}") from None
        except tarfile.TarError as e:
            raise ArchiveError(f"not a valid layer tar: {e}") from None
        applier.finish()
    reader.drain()
    if expected_diff_id is not None and reader.digest != expected_diff_id:
        raise DiffIDMismatchError(
            f"layer unpacks to {reader.digest}, but the image config says {expected_diff_id}"
        )
    return reader.size


def check_layer_media_type(media_type: str) -> None:
    """Refuses media types that are not tar layers, or that we could not decrypt."""
    base = media_type.split(";", 1)[0].strip()
    if "encrypted" in base:
        raise UnsupportedCompressionError(f"encrypted layers are not supported: {media_type}")
    tails = (".tar", "+gzip", "+zstd", ".gzip", ".zstd", "tar.gz")
    if not (base.endswith(tails) or base.endswith("tar")):
        raise UnsupportedCompressionError(f"not a layer media type: {media_type}")


class _HashingReader:
    """Counts and hashes the uncompressed bytes as tarfile pulls them."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        # tarfile stops at the end-of-archive blocks; the diff_id covers the padding after.
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _clean_parts(name: str, display: str) -> tuple[str, ...]:
    """The entry's path components inside the root, or UnsafeArchiveError."""
    if name.startswith("/"):
        raise UnsafeArchiveError(f"layer entry {display!r} would be written outside the snapshot")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchiveError(
                    f"layer entry {display!r} would be written outside the snapshot"
                )
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


def _proc(fd: int) -> str:
    # The magic link reaches the very inode an O_PATH descriptor holds, without a lookup by
    # name; that is how chmod/chown/utime/setxattr reach a file we must not re-resolve.
    return f"/proc/self/fd/{fd}"


@dataclass(slots=True)
class _DirMeta:
    mode: int
    times: tuple[int, int] | None


class _Walker:
    """Descends a directory tree from its root fd, one component at a time, never
    following a symlink out of it."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd

    def walk(
        self,
        parts: Sequence[str],
        display: str,
        *,
        follow: bool = True,
        on_missing: Callable[[int, str, tuple[str, ...]], None] | None = None,
    ) -> tuple[int, tuple[str, ...]]:
        """An O_PATH fd of the directory at `parts`, and its real path below the root.

        Missing components raise FileNotFoundError unless `on_missing` creates them.
        With follow=False a symlink on the way also counts as missing.
        """
        fds = [os.dup(self.root_fd)]
        names: list[str] = []
        pending = list(reversed(parts))
        links = 0
        try:
            while pending:
                comp = pending.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if not names:
                        raise UnsafeArchiveError(
                            f"layer entry {display!r} would be written outside the snapshot"
                        )
                    os.close(fds.pop())
                    names.pop()
                    continue
                try:
                    st = os.stat(comp, dir_fd=fds[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if on_missing is None:
                        raise
                    on_missing(fds[-1], comp, (*names, comp))
                    st = os.stat(comp, dir_fd=fds[-1], follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    if not follow:
                        raise FileNotFoundError(errno.ENOENT, "symlink on the way", display)
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise ArchiveError(
                            f"layer entry {display!r}: too many levels of symbolic links"
                        )
                    target = os.readlink(comp, dir_fd=fds[-1])
                    if target.startswith("/") or not target:
                        raise UnsafeArchiveError(
                            f"layer entry {display!r} would be written outside the snapshot "
                            f"(through symlink {'/'.join((*names, comp))!r} -> {target!r})"
                        )
                    pending.extend(reversed(target.split("/")))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(
                        errno.ENOTDIR,
                        f"layer entry {display!r}: {'/'.join((*names, comp))!r} is not a directory",
                    )
                fds.append(os.open(comp, _O_DIR_PATH, dir_fd=fds[-1]))
                names.append(comp)
            return fds.pop(), tuple(names)
        finally:
            for fd in fds:
                os.close(fd)


class _Applier:
    def __init__(
        self,
        dest: str,
        mode: WhiteoutMode,
        same_owner: bool,
        parents: Sequence[str],
        warnings: list[str] | None,
    ) -> None:
        self.mode = mode
        self.same_owner = same_owner
        self.parent_paths = list(parents)
        self.warnings = warnings
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.walker = _Walker(self.root_fd)
        # Real paths (below dest) of the entries this layer wrote, and of their ancestors.
        self.unpacked: set[tuple[str, ...]] = set()
        self.touched: set[tuple[str, ...]] = set()
        # Overlay whiteouts this layer made: a directory entry replacing one becomes opaque.
        self.whiteouts: set[tuple[str, ...]] = set()
        self.dirs: dict[tuple[str, ...], _DirMeta] = {}
        self._lower_walkers: list[_Walker] | None = None

    def __enter__(self) -> _Applier:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.root_fd)
        for w in self._lower_walkers or ():
            os.close(w.root_fd)

    # -- bookkeeping ---------------------------------------------------------------------

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        if self.warnings is not None:
            self.warnings.append(message)

    def mark(self, real: tuple[str, ...]) -> None:
        self.unpacked.add(real)
        for i in range(len(real) + 1):
            self.touched.add(real[:i])

    def walk_creating(self, parts: Sequence[str], display: str) -> tuple[int, tuple[str, ...]]:
        """The parent directory of an entry, creating what is missing on the way."""
        try:
            return self.walker.walk(parts, display, on_missing=self.make_implicit_dir)
        except NotADirectoryError as e:
            raise ArchiveError(e.strerror) from None

    # -- entries -------------------------------------------------------------------------

    def add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        display = member.name
        parts = _clean_parts(member.name, display)
        if any(p.startswith(WHITEOUT_META_PREFIX) for p in parts):
            if parts[-1] == WHITEOUT_OPAQUE and not any(
                p.startswith(WHITEOUT_PREFIX) for p in parts[:-1]
            ):
                self.opaque(parts[:-1], display)
            # Otherwise AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
            return
        if any(p.startswith(WHITEOUT_PREFIX) for p in parts[:-1]):
            raise ArchiveError(f"layer entry {display!r} lies inside a whiteout")
        if parts and parts[-1].startswith(WHITEOUT_PREFIX):
            name = parts[-1][len(WHITEOUT_PREFIX) :]
            if name in ("", ".", ".."):
                raise ArchiveError(f"layer entry {display!r} is not a valid whiteout")
            self.whiteout(parts[:-1], name, display)
            return
        if not parts:
            if not member.isdir():
                raise ArchiveError(f"layer entry {display!r} names the root but is not a directory")
            self.update_root(member)
            return
        parent_fd, real_parent = self.walk_creating(parts[:-1], display)
        try:
            real = (*real_parent, parts[-1])
            self.create(parent_fd, parts[-1], real, member, tar)
        finally:
            os.close(parent_fd)

    def create(
        self,
        parent_fd: int,
        name: str,
        real: tuple[str, ...],
        member: tarfile.TarInfo,
        tar: tarfile.TarFile,
    ) -> None:
        if member.isdir():
            self.make_dir(parent_fd, name, real, member)
        elif member.isreg():
            self.clear(parent_fd, name)
            self.write_file(parent_fd, name, member, tar)
        elif member.issym():
            self.clear(parent_fd, name)
            os.symlink(member.linkname, name, dir_fd=parent_fd)
            self.symlink_metadata(parent_fd, name, member)
        elif member.islnk():
            if not self.hard_link(parent_fd, name, real, member):
                return
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            self.clear(parent_fd, name)
            try:
                os.mknod(
                    name,
                    kind | (member.mode & 0o7777),
                    os.makedev(member.devmajor, member.devminor),
                    dir_fd=parent_fd,
                )
            except PermissionError:
                self.warn(
                    f"skipped device {member.name!r} "
                    f"({member.devmajor}:{member.devminor}): mknod not permitted"
                )
                self.mark(real)
                return
            self.node_metadata(parent_fd, name, member)
        elif member.isfifo():
            self.clear(parent_fd, name)
            os.mkfifo(name, member.mode & 0o777, dir_fd=parent_fd)
            self.node_metadata(parent_fd, name, member)
        else:
            raise ArchiveError(
                f"layer entry {member.name!r} has an unsupported type {member.type!r}"
            )
        self.mark(real)

    def clear(self, parent_fd: int, name: str, *, keep_dir: bool = False) -> bool:
        """Removes whatever is at `name` (a directory with all it holds); True if a
        directory was there and `keep_dir` kept it."""
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            # The fd-based rmtree never follows a symlink it meets inside.
            shutil.rmtree(name, dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)
        return False

    def make_dir(
        self, parent_fd: int, name: str, real: tuple[str, ...], member: tarfile.TarInfo
    ) -> None:
        replaced_whiteout = real in self.whiteouts
        if not self.clear(parent_fd, name, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        fd = os.open(name, _O_DIR_PATH, dir_fd=parent_fd)
        try:
            if self.same_owner:
                os.chown(_proc(fd), member.uid, member.gid)
            self.set_xattrs(_proc(fd), member)
            if replaced_whiteout:
                # The lower layers had something here that this layer deleted: the new
                # directory must not show what a lower directory of that name held.
                os.setxattr(_proc(fd), OVERLAY_OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        self.dirs[real] = _DirMeta(member.mode & 0o7777, _times(member))

    def update_root(self, member: tarfile.TarInfo) -> None:
        if self.same_owner:
            os.chown(_proc(self.root_fd), member.uid, member.gid)
        self.set_xattrs(_proc(self.root_fd), member)
        self.dirs[()] = _DirMeta(member.mode & 0o7777, _times(member))

    def make_implicit_dir(self, parent_fd: int, name: str, real: tuple[str, ...]) -> None:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
        lower = self.lower_dir_stat(real) if self.mode == "overlay" else None
        if lower is None:
            self.dirs[real] = _DirMeta(0o755, None)
            return
        if self.same_owner:
            fd = os.open(name, _O_DIR_PATH, dir_fd=parent_fd)
            try:
                os.chown(_proc(fd), lower.st_uid, lower.st_gid)
            finally:
                os.close(fd)
        self.dirs[real] = _DirMeta(
            stat.S_IMODE(lower.st_mode), (lower.st_atime_ns, lower.st_mtime_ns)
        )

    def lower_dir_stat(self, real: tuple[str, ...]) -> os.stat_result | None:
        if self._lower_walkers is None:
            self._lower_walkers = []
            for path in self.parent_paths:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._lower_walkers.append(_Walker(fd))
        for walker in self._lower_walkers:
            try:
                fd, _ = walker.walk(real, "/".join(real), follow=False)
            except (FileNotFoundError, NotADirectoryError, ArchiveError):
                continue
            try:
                return os.stat(fd)
            finally:
                os.close(fd)
        return None

    def write_file(
        self, parent_fd: int, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent_fd)
        try:
            src = tar.extractfile(member)
            if src is not None:
                with os.fdopen(os.dup(fd), "wb", closefd=True) as out:
                    shutil.copyfileobj(src, out, _CHUNK)
            if self.same_owner:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            self.set_xattrs(fd, member)
            os.utime(fd, ns=_times(member))
        finally:
            os.close(fd)

    def symlink_metadata(self, parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
        if self.same_owner:
            os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        # lsetxattr through the parent's magic link: `name` itself is not followed.
        self.set_xattrs(f"{_proc(parent_fd)}/{name}", member, follow_symlinks=False)
        os.utime(name, ns=_times(member), dir_fd=parent_fd, follow_symlinks=False)

    def node_metadata(self, parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        try:
            if self.same_owner:
                os.chown(_proc(fd), member.uid, member.gid)
            os.chmod(_proc(fd), member.mode & 0o7777)
            self.set_xattrs(_proc(fd), member)
            os.utime(_proc(fd), ns=_times(member))
        finally:
            os.close(fd)

    def hard_link(
        self, parent_fd: int, name: str, real: tuple[str, ...], member: tarfile.TarInfo
    ) -> bool:
        outside = UnsafeArchiveError(
            f"layer entry {member.name!r} links to {member.linkname!r}, outside the snapshot"
        )
        try:
            target = _clean_parts(member.linkname, member.linkname)
        except UnsafeArchiveError:
            raise outside from None
        if not target:
            raise ArchiveError(f"layer entry {member.name!r} is a hard link to the root")
        try:
            tparent, treal_parent = self.walker.walk(target[:-1], member.linkname)
        except UnsafeArchiveError:
            raise outside from None
        except (FileNotFoundError, NotADirectoryError):
            raise ArchiveError(
                f"layer entry {member.name!r}: hard link target {member.linkname!r} not found"
            ) from None
        try:
            if (*treal_parent, target[-1]) == real:
                return False  # a link to itself: nothing to do
            try:
                tst = os.stat(target[-1], dir_fd=tparent, follow_symlinks=False)
            except FileNotFoundError:
                raise ArchiveError(
                    f"layer entry {member.name!r}: hard link target {member.linkname!r} not found"
                ) from None
            if stat.S_ISDIR(tst.st_mode):
                raise ArchiveError(
                    f"layer entry {member.name!r}: hard link to directory {member.linkname!r}"
                )
            self.clear(parent_fd, name)
            # follow_symlinks=False: a link to a symlink links the symlink itself (linkat
            # without AT_SYMLINK_FOLLOW), never what it points at.
            os.link(
                target[-1],
                name,
                src_dir_fd=tparent,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
        finally:
            os.close(tparent)
        return True

    # -- whiteouts -----------------------------------------------------------------------

    def whiteout(self, dir_parts: tuple[str, ...], name: str, display: str) -> None:
        if self.mode == "overlay":
            parent_fd, real_parent = self.walk_creating(dir_parts, display)
            try:
                real = (*real_parent, name)
                if real in self.unpacked:
                    return
                self.clear(parent_fd, name)
                try:
                    os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)
                except PermissionError:
                    raise ArchiveError(
                        f"cannot create the overlay whiteout for {display!r}: mknod not permitted"
                    ) from None
                self.whiteouts.add(real)
                for i in range(len(real)):
                    self.touched.add(real[:i])
            finally:
                os.close(parent_fd)
            return
        try:
            parent_fd, real_parent = self.walker.walk(dir_parts, display)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing below to hide
        try:
            if (*real_parent, name) in self.unpacked:
                return
            try:
                self.clear(parent_fd, name)
            except FileNotFoundError:
                pass
        finally:
            os.close(parent_fd)

    def opaque(self, dir_parts: tuple[str, ...], display: str) -> None:
        if self.mode == "overlay":
            fd, real = self.walk_creating(dir_parts, display)
            try:
                os.setxattr(_proc(fd), OVERLAY_OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
            for i in range(len(real) + 1):
                self.touched.add(real[:i])
            return
        try:
            fd, real = self.walker.walk(dir_parts, display)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            self.prune(fd, real)
        finally:
            os.close(fd)
        for i in range(len(real) + 1):
            self.touched.add(real[:i])

    def prune(self, dir_fd: int, real: tuple[str, ...]) -> None:
        """Removes from the directory all that this layer did not write (the opaque rule)."""
        list_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            names = os.listdir(list_fd)
        finally:
            os.close(list_fd)
        for name in names:
            child = (*real, name)
            if child not in self.touched:
                self.clear(dir_fd, name)
                continue
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, _O_DIR_PATH, dir_fd=dir_fd)
                try:
                    self.prune(sub, child)
                finally:
                    os.close(sub)

    # -- metadata ------------------------------------------------------------------------

    def set_xattrs(
        self, target: int | str, member: tarfile.TarInfo, *, follow_symlinks: bool = True
    ) -> None:
        for key, value in _xattrs(member):
            if key.startswith(_OVERLAY_XATTR_PREFIXES):
                self.warn(f"dropped xattr {key} of {member.name!r}: overlayfs would obey it")
                continue
            try:
                os.setxattr(target, key, value, follow_symlinks=follow_symlinks)
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
                    self.warn(f"skipped xattr {key} of {member.name!r}: {e.strerror}")
                    continue
                raise ArchiveError(f"cannot set xattr {key} on {member.name!r}: {e}") from None

    def finish(self) -> None:
        """Directory modes and times, deepest first, now that their children exist."""
        for real in sorted(self.dirs, key=len, reverse=True):
            meta = self.dirs[real]
            try:
                fd, _ = self.walker.walk(real, "/".join(real), follow=False)
            except (FileNotFoundError, NotADirectoryError, ArchiveError):
                continue  # replaced later in the layer by something else
            try:
                os.chmod(_proc(fd), meta.mode)
                if meta.times is not None:
                    os.utime(_proc(fd), ns=meta.times)
            finally:
                os.close(fd)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for key, value in sorted(member.pax_headers.items()):
        if key.startswith("SCHILY.xattr."):
            # tarfile decodes values as UTF-8 with surrogateescape: binary values (such as
            # security.capability) come back byte for byte.
            out.append((key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape")))
        elif key.startswith("LIBARCHIVE.xattr."):
            # bsdtar's form: URL-encoded name, base64 value (padding may be stripped).
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr.") :])
            try:
                data = base64.b64decode(value + "=" * (-len(value) % 4))
            except ValueError:
                raise ArchiveError(f"bad xattr {name} on {member.name!r}") from None
            out.append((name, data))
    return out


def _pax_time_ns(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(Decimal(text) * _NS)
    except (InvalidOperation, ValueError):
        return None


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in nanoseconds. PAX times are read from the text, since a float
    loses the nanoseconds; atime is never older than mtime, as containerd sets it."""
    mtime = _pax_time_ns(member.pax_headers.get("mtime"))
    if mtime is None:
        mtime = int(member.mtime) * _NS
    atime = _pax_time_ns(member.pax_headers.get("atime"))
    return (max(atime, mtime) if atime is not None else mtime), mtime
