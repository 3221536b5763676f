"""The system calls Python 3.11 lacks, behind one small interface.

Lifecycle code takes a `Syscalls` and never touches ctypes; tests can pass a recording double.
Every failure raises OSError with the errno and the call's arguments, so an error line names
what failed (`mount tmpfs on /dev: No such file or directory`).
"""

from __future__ import annotations

import ctypes
import os
from typing import Protocol

from oci_runtime.linux import flags as F

# pivot_root has no reliable glibc wrapper; go through syscall(2) by number.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}
_SYS_SETNS = {"x86_64": 308, "aarch64": 268, "ppc64le": 350, "s390x": 339}
_SYS_CAPGET = {"x86_64": 125, "aarch64": 90, "ppc64le": 183, "s390x": 184}
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "ppc64le": 184, "s390x": 185}


class Syscalls(Protocol):
    def unshare(self, flags: int) -> None: ...
    def setns(self, fd: int, nstype: int) -> None: ...
    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None: ...
    def umount2(self, target: str, flags: int) -> None: ...
    def pivot_root(self, new_root: str, put_old: str) -> None: ...
    def prctl(
        self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0
    ) -> int: ...
    def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...
    def sethostname(self, name: str) -> None: ...
    def setdomainname(self, name: str) -> None: ...


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class LibcSyscalls:
    """The real thing: libc through ctypes, errno raised as OSError."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        self._libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._libc.unshare.argtypes = [ctypes.c_int]
        self._libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        self._arch = os.uname().machine

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return rc

    def unshare(self, flags: int) -> None:
        self._check(self._libc.unshare(flags), f"unshare {F.clone_names(flags)}")

    def setns(self, fd: int, nstype: int) -> None:
        rc = self._libc.syscall(
            ctypes.c_long(_SYS_SETNS[self._arch]), ctypes.c_int(fd), ctypes.c_int(nstype)
        )
        self._check(rc, f"setns {F.clone_names(nstype)}")

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        rc = self._libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data else None,
        )
        self._check(rc, f"mount {source or fstype or ''} on {target}")

    def umount2(self, target: str, flags: int) -> None:
        self._check(self._libc.umount2(target.encode(), flags), f"umount {target}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        rc = self._libc.syscall(
            ctypes.c_long(_SYS_PIVOT_ROOT[self._arch]),
            ctypes.c_char_p(new_root.encode()),
            ctypes.c_char_p(put_old.encode()),
        )
        self._check(rc, f"pivot_root {new_root}")

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        return self._check(self._libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        for i in range(2):
            data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
            data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
        rc = self._libc.syscall(
            ctypes.c_long(_SYS_CAPSET[self._arch]), ctypes.byref(hdr), ctypes.byref(data)
        )
        self._check(rc, "capset")

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        self._check(self._libc.sethostname(raw, len(raw)), f"sethostname {name}")

    def setdomainname(self, name: str) -> None:
        raw = name.encode()
        self._check(self._libc.setdomainname(raw, len(raw)), f"setdomainname {name}")


_default: LibcSyscalls | None = None


def libc() -> LibcSyscalls:
    global _default
    if _default is None:
        _default = LibcSyscalls()
    return _default
