"""The container's filesystem view: mounts, /dev, pivot_root, masked and read-only paths.

Runs inside init, in the container's new mount namespace, before the user process exists.
Mount option parsing is pure (`parse_options`) and unit-tested; the rest drives the kernel.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import NamedTuple

from oci_runtime.linux import flags as F
from oci_runtime.linux.syscalls import Syscalls
from oci_runtime.spec import PROPAGATIONS, Device, Mount, Spec

M = F.Mount

# option -> (clear, set)
_FLAG_OPTIONS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (0, M.RDONLY),
    "rw": (M.RDONLY, 0),
    "suid": (M.NOSUID, 0),
    "nosuid": (0, M.NOSUID),
    "dev": (M.NODEV, 0),
    "nodev": (0, M.NODEV),
    "exec": (M.NOEXEC, 0),
    "noexec": (0, M.NOEXEC),
    "sync": (0, M.SYNCHRONOUS),
    "async": (M.SYNCHRONOUS, 0),
    "dirsync": (0, M.DIRSYNC),
    "remount": (0, M.REMOUNT),
    "mand": (0, M.MANDLOCK),
    "nomand": (M.MANDLOCK, 0),
    "atime": (M.NOATIME, 0),
    "noatime": (0, M.NOATIME),
    "diratime": (M.NODIRATIME, 0),
    "nodiratime": (0, M.NODIRATIME),
    "relatime": (0, M.RELATIME),
    "norelatime": (M.RELATIME, 0),
    "strictatime": (0, M.STRICTATIME),
    "nostrictatime": (M.STRICTATIME, 0),
    "nosymfollow": (0, M.NOSYMFOLLOW),
    "symfollow": (M.NOSYMFOLLOW, 0),
    "bind": (0, M.BIND),
    "rbind": (0, M.BIND | M.REC),
}
# Options that only tune how we mount, never reach the kernel as data.
_IGNORED = {"tmpcopyup", "rro", "rrw", "rnosuid", "rnodev", "rnoexec", "ratime", "rnoatime"}

DEFAULT_DEVICES = (
    Device("c", "/dev/null", 1, 3, 0o666, 0, 0),
    Device("c", "/dev/zero", 1, 5, 0o666, 0, 0),
    Device("c", "/dev/full", 1, 7, 0o666, 0, 0),
    Device("c", "/dev/random", 1, 8, 0o666, 0, 0),
    Device("c", "/dev/urandom", 1, 9, 0o666, 0, 0),
    Device("c", "/dev/tty", 5, 0, 0o666, 0, 0),
)


# What the device cgroup always lets the container use, appended after the spec's own
# linux.resources.devices rules (runc and crun do the same): any mknod, the default nodes
# above, the pty master and slaves, and /dev/net/tun.
DEFAULT_DEVICE_RULES: tuple[dict[str, object], ...] = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *(
        {"allow": True, "type": d.type, "major": d.major, "minor": d.minor, "access": "rwm"}
        for d in DEFAULT_DEVICES
    ),
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
)


def with_default_device_rules(resources: dict[str, object]) -> dict[str, object]:
    """linux.resources with the default device rules appended when it has device rules;
    without them a spec's deny-all (as `spec` writes) would make /dev/null unusable."""
    rules = resources.get("devices")
    if not rules:
        return resources
    assert isinstance(rules, list)
    return {**resources, "devices": [*rules, *(dict(r) for r in DEFAULT_DEVICE_RULES)]}


class MountError(Exception):
    pass


class MountOptions(NamedTuple):
    flags: int
    propagation: int
    data: str


def parse_options(options: tuple[str, ...] | list[str]) -> MountOptions:
    flags = 0
    prop = 0
    data = []
    for opt in options:
        if opt in _FLAG_OPTIONS:
            clear, set_ = _FLAG_OPTIONS[opt]
            flags = (flags & ~clear) | set_
        elif opt in PROPAGATIONS and opt:
            p = int(PROPAGATIONS[opt])
            # "private" alone is not recursive; "rprivate" is.
            prop = p if opt.startswith("r") else p & ~M.REC
        elif opt in _IGNORED:
            continue
        elif opt in ("idmap", "ridmap"):
            raise MountError(f"mount option {opt!r} is not supported")
        else:
            data.append(opt)
    return MountOptions(flags, prop, ",".join(data))


def secure_join(root: str, unsafe: str) -> str:
    """root + unsafe, with every symlink resolved as if root were '/', so nothing escapes."""
    parts = [p for p in unsafe.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise MountError(f"{unsafe}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _mkfile(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _locked_flags(path: str) -> int:
    """Flags the kernel will not let a user namespace clear on remount (statvfs ST_*)."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    keep = 0
    for st_flag, m in (
        (os.ST_NOSUID, M.NOSUID),
        (os.ST_NODEV, M.NODEV),
        (os.ST_NOEXEC, M.NOEXEC),
        (os.ST_NOATIME, M.NOATIME),
        (os.ST_NODIRATIME, M.NODIRATIME),
        (os.ST_RELATIME, M.RELATIME),
    ):
        if f & st_flag:
            keep |= m
    return keep


class RootfsBuilder:
    def __init__(
        self, sys: Syscalls, spec: Spec, cgroup_mounts: list[tuple[str, str]], userns: bool
    ) -> None:
        self.sys = sys
        self.spec = spec
        self.rootfs = str(spec.rootfs)
        self.cgroup_mounts = cgroup_mounts
        self.userns = userns

    # -- before pivot_root -------------------------------------------------------------

    def prepare(self) -> None:
        prop = PROPAGATIONS[self.spec.rootfs_propagation] or (M.SLAVE | M.REC)
        self.sys.mount(None, "/", None, prop, None)
        self._make_parent_private(self.rootfs)
        self.sys.mount(self.rootfs, self.rootfs, "bind", M.BIND | M.REC, None)

    def _make_parent_private(self, path: str) -> None:
        # pivot_root refuses a new root whose parent mount is shared.
        mp = _mountpoint_of(path)
        try:
            self.sys.mount(None, mp, None, M.PRIVATE, None)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise

    def mount_all(self) -> None:
        for m in self.spec.mounts:
            try:
                self.mount_one(m)
            except OSError as e:
                raise MountError(
                    f"mount {m.source or m.type} to {m.destination}: {e.strerror or e}"
                ) from None

    def mount_one(self, m: Mount) -> None:
        opts = parse_options(m.options)
        dest = secure_join(self.rootfs, m.destination)
        is_bind = m.type == "bind" or bool(opts.flags & M.BIND)
        if is_bind:
            self._bind(m, dest, opts)
        elif m.type == "cgroup":
            self._cgroup(dest, opts)
        else:
            os.makedirs(dest, mode=0o755, exist_ok=True)
            flags = opts.flags & ~M.REMOUNT
            try:
                self.sys.mount(m.source or m.type, dest, m.type, flags, opts.data or None)
            except OSError as e:
                if m.type == "sysfs" and e.errno == errno.EPERM:
                    # A user namespace sharing the host network cannot mount sysfs; show the
                    # host's, read-only, as other runtimes do.
                    self.sys.mount("/sys", dest, None, M.BIND | M.REC, None)
                    self._remount(dest, M.RDONLY | M.BIND | (opts.flags & ~M.REMOUNT))
                elif m.type == "mqueue" and e.errno in (errno.EPERM, errno.EINVAL):
                    self.sys.mount("/dev/mqueue", dest, None, M.BIND | M.REC, None)
                else:
                    raise
        if opts.propagation:
            self.sys.mount(None, dest, None, opts.propagation, None)

    def _bind(self, m: Mount, dest: str, opts: MountOptions) -> None:
        src = m.source
        if not src.startswith("/"):
            src = os.path.join(self.spec.bundle, src)
        st = os.stat(src)
        if stat.S_ISDIR(st.st_mode):
            os.makedirs(dest, mode=0o755, exist_ok=True)
        else:
            _mkfile(dest)
        self.sys.mount(src, dest, "bind", opts.flags & (M.BIND | M.REC) | M.BIND, None)
        extra = opts.flags & ~(M.BIND | M.REC | M.REMOUNT)
        if extra:
            self._remount(dest, M.BIND | extra)

    def _remount(self, dest: str, flags: int) -> None:
        flags |= M.REMOUNT
        try:
            self.sys.mount(None, dest, None, flags, None)
        except OSError as e:
            if e.errno != errno.EPERM:
                raise
            self.sys.mount(None, dest, None, flags | _locked_flags(dest), None)

    def _cgroup(self, dest: str, opts: MountOptions) -> None:
        os.makedirs(dest, mode=0o755, exist_ok=True)
        ro = opts.flags & M.RDONLY
        base = opts.flags & ~(M.RDONLY | M.REMOUNT | M.BIND | M.REC)
        if len(self.cgroup_mounts) == 1 and self.cgroup_mounts[0][0] == "":
            host = self.cgroup_mounts[0][1]
            if self.spec.namespace("cgroup"):
                self.sys.mount("cgroup2", dest, "cgroup2", base | ro, None)
            else:
                self.sys.mount(host, dest, None, M.BIND | M.REC, None)
                if ro:
                    self._remount(dest, M.BIND | M.RDONLY | base)
            return
        # v1: a tmpfs holding each hierarchy's view of this container's cgroup. The tmpfs
        # itself stays read-write, as runc and crun leave it; "ro" applies to the binds.
        self.sys.mount("tmpfs", dest, "tmpfs", base, "mode=755")
        for name, host in self.cgroup_mounts:
            sub = os.path.join(dest, name)
            os.makedirs(sub, exist_ok=True)
            self.sys.mount(host, sub, None, M.BIND, None)
            self._remount(sub, M.BIND | base | ro)
            if "," in name:
                for alias in name.split(","):
                    link = os.path.join(dest, alias)
                    if not os.path.lexists(link):
                        os.symlink(name, link)

    def setup_dev(self) -> None:
        """Device nodes and the /dev links, unless /dev is the host's bind mount."""
        dev_mount = next((m for m in self.spec.mounts if m.destination == "/dev"), None)
        if dev_mount is not None and (
            dev_mount.type == "bind" or "bind" in dev_mount.options or "rbind" in dev_mount.options
        ):
            return
        old = os.umask(0)
        try:
            wanted = {d.path: d for d in DEFAULT_DEVICES}
            wanted.update({d.path: d for d in self.spec.devices})
            for d in wanted.values():
                self._create_device(d)
        finally:
            os.umask(old)
        if dev_mount is None:
            return
        dev = secure_join(self.rootfs, "/dev")
        for name, target in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ):
            link = os.path.join(dev, name)
            if not os.path.lexists(link):
                os.symlink(target, link)
        ptmx = os.path.join(dev, "ptmx")
        if os.path.isdir(os.path.join(dev, "pts")):
            if os.path.lexists(ptmx):
                os.unlink(ptmx)
            os.symlink("pts/ptmx", ptmx)

    def _create_device(self, d: Device) -> None:
        path = secure_join(self.rootfs, d.path)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if not self.userns:
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[
                d.type
            ]
            mode = d.file_mode if d.file_mode is not None else 0o666
            if os.path.lexists(path):
                os.unlink(path)
            try:
                os.mknod(path, kind | mode, os.makedev(d.major, d.minor))
                os.chown(path, d.uid or 0, d.gid or 0)
                return
            except PermissionError:
                pass
        # mknod is refused in a user namespace, or without CAP_MKNOD (as in some sandboxes):
        # bind the host's node instead.
        _mkfile(path)
        try:
            self.sys.mount(d.path, path, "bind", M.BIND, None)
        except OSError as e:
            raise MountError(f"device {d.path}: {e.strerror}") from None

    def bind_console(self, slave_path: str) -> None:
        """The pty slave on /dev/console; called after the switch of root, so the path is
        the container's own (joining it to the host's rootfs path would make stray
        directories inside the rootfs and leave /dev/console missing)."""
        console = secure_join("/", "/dev/console")
        _mkfile(console)
        self.sys.mount(slave_path, console, "bind", M.BIND, None)

    # -- the switch ----------------------------------------------------------------------

    def pivot(self, no_pivot: bool) -> None:
        if no_pivot:
            os.chdir(self.rootfs)
            self.sys.mount(self.rootfs, "/", None, M.MOVE, None)
            os.chroot(".")
            os.chdir("/")
            return
        old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        new = os.open(self.rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            # pivot_root(".", ".") stacks the old root under the new one; detaching it
            # afterwards needs no directory for it inside the container.
            os.fchdir(new)
            self.sys.pivot_root(".", ".")
            os.fchdir(old)
            self.sys.mount(None, ".", None, M.SLAVE | M.REC, None)
            self.sys.umount2(".", F.MNT_DETACH)
            os.chdir("/")
        finally:
            os.close(old)
            os.close(new)

    # -- after pivot_root ----------------------------------------------------------------

    def finish(self) -> None:
        for path in self.spec.readonly_paths:
            self._readonly(path)
        for path in self.spec.masked_paths:
            self._mask(path)
        if self.spec.root_readonly:
            self._remount("/", M.BIND | M.RDONLY)

    def _readonly(self, path: str) -> None:
        if not os.path.exists(path):
            return
        self.sys.mount(path, path, None, M.BIND | M.REC, None)
        self._remount(path, M.BIND | M.RDONLY | M.REC)

    def _mask(self, path: str) -> None:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISDIR(st.st_mode):
            self.sys.mount("tmpfs", path, "tmpfs", M.RDONLY, None)
        else:
            self.sys.mount("/dev/null", path, None, M.BIND, None)


def _mountpoint_of(path: str) -> str:
    """The longest mount point in /proc/self/mountinfo that contains path."""
    path = os.path.realpath(path)
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape(line.split()[4])
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    return best


def _unescape(s: str) -> str:
    return (
        s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
    )
