"""Mounts as snapshotters describe them, and the code that performs them.

A `Mount` is data ({type, source, options}, as containerd's `api/types/mount.proto`): the
shim or a test turns it into mount(2) calls with `Mount.mount(target)`. The calls go
through `MountSyscalls`, so unit tests check them with a recording double and root tests
with the kernel.

Options are fstab words: flags ("ro", "nosuid", "rbind", ...) become mount flags,
propagation words ("rprivate", ...) a second mount call, and the rest (e.g. "lowerdir=")
the data string. A read-only bind needs a remount: MS_RDONLY is ignored on the first bind.

Long overlay lowerdir lists: the data string must fit in one page (4096 bytes; the kernel
truncates the rest). Like containerd, when it would not fit the lowerdirs are rewritten
relative to their common parent directory and the mount is made from a short-lived thread
that has its own working directory (`unshare(CLONE_FS)` + chdir, so no other thread of the
daemon sees the change). Each layer then costs about 10 bytes ("1234/fs:"), which reaches
the kernel's own limit of 500 lower layers first. If it still does not fit, InvalidArgument
says so.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from containerd_py.errdefs import InvalidArgument
from oci_runtime.linux.flags import MNT_DETACH
from oci_runtime.linux.flags import Mount as MS

PAGESIZE = os.sysconf("SC_PAGESIZE")
CLONE_FS = 0x00000200

# word -> (clear the flag instead of setting it, flag)
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS.SYNCHRONOUS),
    "atime": (True, MS.NOATIME),
    "bind": (False, MS.BIND),
    "defaults": (False, 0),
    "dev": (True, MS.NODEV),
    "diratime": (True, MS.NODIRATIME),
    "dirsync": (False, MS.DIRSYNC),
    "exec": (True, MS.NOEXEC),
    "mand": (False, MS.MANDLOCK),
    "noatime": (False, MS.NOATIME),
    "nodev": (False, MS.NODEV),
    "nodiratime": (False, MS.NODIRATIME),
    "noexec": (False, MS.NOEXEC),
    "nomand": (True, MS.MANDLOCK),
    "norelatime": (True, MS.RELATIME),
    "nostrictatime": (True, MS.STRICTATIME),
    "nosuid": (False, MS.NOSUID),
    "rbind": (False, MS.BIND | MS.REC),
    "relatime": (False, MS.RELATIME),
    "remount": (False, MS.REMOUNT),
    "ro": (False, MS.RDONLY),
    "rw": (True, MS.RDONLY),
    "strictatime": (False, MS.STRICTATIME),
    "suid": (True, MS.NOSUID),
    "sync": (False, MS.SYNCHRONOUS),
}
_PROPAGATION: dict[str, int] = {
    "private": MS.PRIVATE,
    "rprivate": MS.PRIVATE | MS.REC,
    "shared": MS.SHARED,
    "rshared": MS.SHARED | MS.REC,
    "slave": MS.SLAVE,
    "rslave": MS.SLAVE | MS.REC,
    "unbindable": MS.UNBINDABLE,
    "runbindable": MS.UNBINDABLE | MS.REC,
}
# Flags a bind mount only takes on a remount.
_BIND_REMOUNT = MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC


class MountSyscalls(Protocol):
    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None: ...

    def umount2(self, target: str, flags: int) -> None: ...

    def unshare(self, flags: int) -> None: ...

    def chdir(self, path: str) -> None: ...


class _Libc:
    """The real calls: oci_runtime's ctypes bindings, plus chdir."""

    def __init__(self) -> None:
        from oci_runtime.linux.syscalls import libc

        self._libc = libc()

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        self._libc.mount(source, target, fstype, flags, data)

    def umount2(self, target: str, flags: int) -> None:
        self._libc.umount2(target, flags)

    def unshare(self, flags: int) -> None:
        self._libc.unshare(flags)

    def chdir(self, path: str) -> None:
        os.chdir(path)


_default: MountSyscalls | None = None


def default_syscalls() -> MountSyscalls:
    global _default
    if _default is None:
        _default = _Libc()
    return _default


def parse_options(options: Iterable[str]) -> tuple[int, int, list[str]]:
    """(mount flags, propagation flags, data words) from fstab-style option words."""
    flags = propagation = 0
    data = []
    for opt in options:
        if opt in _FLAGS:
            clear, bit = _FLAGS[opt]
            flags = flags & ~bit if clear else flags | bit
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        elif opt:
            data.append(opt)
    return flags, propagation, data


def compact_lowerdirs(data: Sequence[str]) -> tuple[str, list[str]]:
    """Rewrite `lowerdir=` relative to the lower layers' common directory.

    Returns (that directory, the new data words), or ("", data) when nothing is gained.
    """
    i = next((n for n, w in enumerate(data) if w.startswith("lowerdir=")), -1)
    if i < 0:
        return "", list(data)
    lowers = data[i][len("lowerdir=") :].split(":")
    if len(lowers) < 2 or not all(os.path.isabs(p) for p in lowers):
        return "", list(data)
    common = os.path.commonpath(lowers)
    if common == "/":
        return "", list(data)
    rel = [os.path.relpath(p, common) for p in lowers]
    out = list(data)
    out[i] = "lowerdir=" + ":".join(rel)
    return common, out


@dataclass(frozen=True, slots=True)
class Mount:
    type: str
    source: str
    options: tuple[str, ...] = field(default_factory=tuple)
    target: str = ""  # a subpath of the mount root, for sets of mounts; "" is the root

    def __post_init__(self) -> None:
        # Callers pass lists; a tuple keeps the value hashable and immutable.
        object.__setattr__(self, "options", tuple(self.options))

    def mount(self, target: str, syscalls: MountSyscalls | None = None) -> None:
        """Mount at `target` (joined with self.target); nothing stays mounted on failure."""
        sc = syscalls or default_syscalls()
        where = self.where(target)
        flags, propagation, data = parse_options(self.options)
        chdir = ""
        if self.type == "overlay" and len(",".join(data)) >= PAGESIZE - 512:
            chdir, data = compact_lowerdirs(data)
        text = ",".join(data)
        if len(text) >= PAGESIZE:
            layers = next((w.count(":") + 1 for w in data if w.startswith("lowerdir=")), 0)
            raise InvalidArgument(
                f"{self.type} mount options are {len(text)} bytes ({layers} lower layers),"
                f" over the kernel's {PAGESIZE - 1}-byte limit even with relative paths"
            )
        fstype = self.type
        if flags & MS.BIND:
            fstype = "none"
        if chdir:
            _in_directory(sc, chdir, self.source, where, fstype, flags, text)
        else:
            sc.mount(self.source, where, fstype, flags, text or None)
        try:
            if flags & MS.BIND and flags & _BIND_REMOUNT:
                sc.mount("", where, None, flags | MS.REMOUNT, None)
            if propagation:
                sc.mount("", where, None, propagation, None)
        except BaseException:
            unmount(where, MNT_DETACH, syscalls=sc)
            raise

    def where(self, root: str) -> str:
        """The absolute path this mount goes to under `root`."""
        return os.path.abspath(os.path.join(root, self.target.lstrip("/")))

    @staticmethod
    def unmount(target: str, flags: int = 0, syscalls: MountSyscalls | None = None) -> None:
        unmount(target, flags, syscalls)


def _in_directory(
    sc: MountSyscalls, cwd: str, source: str, target: str, fstype: str, flags: int, data: str
) -> None:
    """mount(2) with relative paths resolved from `cwd`, without moving the daemon's cwd."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            # After this the thread has its own cwd; it dies with the thread.
            sc.unshare(CLONE_FS)
            sc.chdir(cwd)
            sc.mount(source, target, fstype, flags, data or None)
        except BaseException as e:
            failure.append(e)

    t = threading.Thread(target=run, name="mount-in-dir", daemon=True)
    t.start()
    t.join()
    if failure:
        raise failure[0]


def mount_all(mounts: Sequence[Mount], target: str, syscalls: MountSyscalls | None = None) -> None:
    """Mount a snapshot's mounts in order; undo the ones done if one fails."""
    done: list[str] = []
    try:
        for m in mounts:
            m.mount(target, syscalls)
            done.append(m.where(target))
    except BaseException:
        for where in reversed(done):
            try:
                unmount(where, MNT_DETACH, syscalls)
            except OSError:
                pass
        raise


def unmount(target: str, flags: int = 0, syscalls: MountSyscalls | None = None) -> None:
    """umount2, retried while busy for up to 2.5 s (a process may be leaving the tree)."""
    sc = syscalls or default_syscalls()
    for attempt in range(50):
        try:
            sc.umount2(target, flags)
            return
        except OSError as e:
            if e.errno != errno.EBUSY or attempt == 49:
                raise
            time.sleep(0.05)


def unmount_all(target: str, flags: int = 0, syscalls: MountSyscalls | None = None) -> None:
    """Unmount everything stacked on `target`; a path that is not mounted is fine."""
    sc = syscalls or default_syscalls()
    for _ in range(128):
        try:
            unmount(target, flags, sc)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise
    raise OSError(errno.EBUSY, f"unmount {target}: still mounted after 128 unmounts")
