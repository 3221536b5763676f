"""What the shim does to a task's bundle beyond its processes, and `shim delete`.

- The rootfs: `mount_rootfs` mounts a CreateRequest's mounts, in order, at
  `<bundle>/rootfs`; `unmount_rootfs` takes off whatever is mounted there or below (found in
  mountinfo, so it also works for a shim that died and for a mount made by someone else).
- `<bundle>/options.json`: the runtime a task was created with (binary, root, flags),
  written at Create, so that `shim delete` can run the same runtime's `delete --force` for a
  shim that is gone. (containerd's runc shim keeps options.json in the bundle likewise.)
- `delete`: the cleanup of a dead or unreachable shim's task, run by the daemon with cwd =
  the bundle. It kills a shim process still there but unreachable, runs the runtime's
  `delete --force` (kills the container, removes its cgroup and state), unmounts the rootfs,
  removes the socket, and reports the exit: the one in `<bundle>/exit` if the shim recorded
  it, else 137 (DESIGN.md: "exit code 137 unless the real one is known"; the container was
  SIGKILLed by the delete, or died with its shim).

Files in the bundle (all written atomically, temp + rename):

    file          written by            read by
    ------------  --------------------  -------------------------------------------------
    address       shim start            the daemon (and a second start: idempotence)
    shim.pid      shim start            shim delete (to stop an unreachable shim)
    options.json  Create (serve)        shim delete (which runtime, which root)
    init.pid      the runtime (create)  shim delete (the pid it reports)
    exit          the core, on exit     shim delete; the daemon after a restart
    shim.log      the shim's stderr     people
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

DEFAULT_STATE_DIR = "/run/pycontainerd"
OPTIONS_FILE = "options.json"
UNKNOWN_EXIT = 137


# -- small files -----------------------------------------------------------------------------


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Readers see the old file, no file, or all of the new one (temp file + rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_options(bundle: str, options: dict[str, Any]) -> None:
    write_atomic(os.path.join(bundle, OPTIONS_FILE), json.dumps(options).encode())


def read_options(bundle: str) -> dict[str, Any] | None:
    """The runtime options the task was created with; None if no task was created."""
    try:
        with open(os.path.join(bundle, OPTIONS_FILE), "rb") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_pid(path: str) -> int:
    """The pid in a pid file; 0 if there is none or it is not a pid."""
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return 0
    return pid if pid > 0 else 0


# -- runtime ---------------------------------------------------------------------------------


def state_dir(socket_dir: str) -> str:
    """The shims' state dir: the parent of their socket dir (`/run/pycontainerd/s`)."""
    return os.path.dirname(os.path.abspath(socket_dir)) or DEFAULT_STATE_DIR


def default_runtime_root(socket_dir: str, binary: str, namespace: str) -> str:
    """`<state>/<runtime>/<namespace>`, as containerd's `/run/containerd/runc/<ns>`: two
    stacks (different state dirs) never share a runtime root, nor two namespaces."""
    return os.path.join(state_dir(socket_dir), os.path.basename(binary) or "pyrunc", namespace)


def pyrunc_launcher(socket_dir: str) -> str:
    """pyrunc's fast launcher under the state dir, written on first use.

    `python -m oci_runtime` would pay for `site` (every .pth of the environment) on each of
    the several runtime calls a container's life takes.
    """
    path = os.path.join(state_dir(socket_dir), "bin", "pyrunc")
    if not os.access(path, os.X_OK):
        from oci_runtime.launcher import write_launcher

        os.makedirs(os.path.dirname(path), 0o711, exist_ok=True)
        write_launcher(path)  # atomic: shims racing here each write a whole file
    return path


def runtime_client(
    options: dict[str, Any], bundle: str, socket_dir: str, namespace: str, reaper: Any
) -> Any:
    """A RuntimeClient for options as written by `write_options`."""
    from shim.runtime_client import RuntimeClient

    binary = options.get("binary_name") or "pyrunc"
    root = options.get("root") or default_runtime_root(socket_dir, binary, namespace)
    launcher = pyrunc_launcher(socket_dir) if binary == "pyrunc" else None
    rc = RuntimeClient(
        binary, root, os.path.join(bundle, "log.json"), reaper, pyrunc_launcher=launcher
    )
    # Global flags go before the subcommand, which RuntimeClient appends to argv.
    if options.get("systemd_cgroup"):
        rc.argv.append("--systemd-cgroup")
    rc.argv.extend(str(a) for a in options.get("extra_args") or ())
    return rc


# -- mounts ----------------------------------------------------------------------------------

_MS = {
    "ro": 1,
    "nosuid": 2,
    "nodev": 4,
    "noexec": 8,
    "sync": 16,
    "remount": 32,
    "mand": 64,
    "dirsync": 128,
    "noatime": 1024,
    "nodiratime": 2048,
    "bind": 4096,
    "rbind": 4096 | 16384,
    "relatime": 1 << 21,
    "strictatime": 1 << 24,
}
# Options that clear a flag set by default or by an earlier option.
_CLEAR = {
    "rw": 1,
    "suid": 2,
    "dev": 4,
    "exec": 8,
    "async": 16,
    "atime": 1024,
    "diratime": 2048,
    "norelatime": 1 << 21,
}
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
MNT_DETACH = 2


def parse_options(options: Iterable[str]) -> tuple[int, str]:
    """fstab options → (mount flags, data string for the filesystem)."""
    flags, data = 0, []
    for opt in options:
        if opt in _MS:
            flags |= _MS[opt]
        elif opt in _CLEAR:
            flags &= ~_CLEAR[opt]
        elif opt in ("defaults", ""):
            pass
        else:
            data.append(opt)
    return flags, ",".join(data)


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    libc = _libc()
    _check(
        libc.mount(
            source.encode() or None,
            target.encode(),
            fstype.encode() or None,
            flags,
            data.encode() or None,
        ),
        f"mount {source} on {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc().umount2(target.encode(), flags), f"unmount {target}")


def rootfs_dir(bundle: str) -> str:
    return os.path.join(os.path.abspath(bundle), "rootfs")


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def mount_rootfs(bundle: str, mounts: Sequence[tuple[str, str, str, Sequence[str]]]) -> None:
    """Mount (type, source, target, options) in order at `<bundle>/rootfs`; all or nothing.

    target is relative to the rootfs ("" is the rootfs itself) and may not climb out of it.
    A read-only bind is a bind and then a read-only remount, as mount(8) does it.
    """
    root = rootfs_dir(bundle)
    os.makedirs(root, 0o755, exist_ok=True)
    done: list[str] = []
    try:
        for fstype, source, target, options in mounts:
            dest = os.path.normpath(os.path.join(root, target.lstrip("/")))
            if not _inside(dest, root):
                raise ValueError(f"mount target {target!r} is outside the rootfs")
            os.makedirs(dest, 0o755, exist_ok=True)
            flags, data = parse_options(options)
            if fstype == "bind":
                flags |= MS_BIND
            if flags & MS_BIND:
                mount(source, dest, "", flags & ~MS_RDONLY, "")
                done.append(dest)
                if flags & MS_RDONLY:
                    mount("", dest, "", flags | MS_REMOUNT, "")
            else:
                mount(source, dest, fstype, flags, data)
                done.append(dest)
    except BaseException:
        for dest in reversed(done):
            try:
                umount(dest, MNT_DETACH)
            except OSError:
                pass
        raise


def _unescape(s: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as \ooo.
    if "\\" not in s:
        return s
    out, i = bytearray(), 0
    b = s.encode()
    while i < len(b):
        if b[i] == 0x5C and i + 3 < len(b) and b[i + 1 : i + 4].isdigit():
            out.append(int(b[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(b[i])
            i += 1
    return out.decode(errors="surrogateescape")


def mounts_under(path: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points at or below path, in mount order (stacked mounts appear repeatedly)."""
    base = os.path.realpath(path)
    found = []
    try:
        with open(mountinfo) as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) > 4:
                    point = _unescape(fields[4])
                    if _inside(point, base):
                        found.append(point)
    except OSError:
        pass
    return found


def unmount_rootfs(bundle: str) -> list[str]:
    """Unmount everything at or below `<bundle>/rootfs`, last mounted first; the points.

    EBUSY (something still uses it) falls back to a lazy detach: the tree goes from view at
    once and the kernel frees it when the last user is gone.
    """
    points = mounts_under(rootfs_dir(bundle))
    for point in reversed(points):
        try:
            umount(point)
        except OSError as e:
            if e.errno == errno.EBUSY:
                umount(point, MNT_DETACH)
            elif e.errno not in (errno.EINVAL, errno.ENOENT):  # already gone
                raise
    return points


# -- shim delete -----------------------------------------------------------------------------


def _is_our_shim(pid: int, bundle: str) -> bool:
    """pid is a `shim serve` process of this bundle (not a stranger that reused the pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return b"serve" in argv and b"shim" in argv and cwd == os.path.realpath(bundle)


def _stop_shim(pid: int, bundle: str, timeout: float = 5.0) -> bool:
    """SIGKILL a shim of this bundle that is still there; True if there was one."""
    if not pid or not _is_our_shim(pid, bundle):
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not _is_our_shim(pid, bundle):  # checked again: the pidfd now pins the process
            return False
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        import select

        select.select([fd], [], [], timeout)  # readable once it has exited
        return True
    finally:
        os.close(fd)


def delete(
    *, id: str, namespace: str, bundle: str, socket_dir: str, socket: str | None = None
) -> dict[str, Any]:
    """Clean up the task of a dead shim (see the module doc); its DeleteResponse as a dict
    (pid, exit_status, exited_at in ns)."""
    from shim.exitfile import ExitFileError, read_exit

    bundle = os.path.abspath(bundle)
    _stop_shim(read_pid(os.path.join(bundle, "shim.pid")), bundle)
    options = read_options(bundle)
    if options is not None:
        from shim.reaper import Reaper
        from shim.runtime_client import OCIRuntimeError

        reaper = Reaper()
        reaper.start()
        try:
            rc = runtime_client(options, bundle, socket_dir, namespace, reaper)
            try:
                rc.delete(id, force=True)
            except OCIRuntimeError as e:
                m = e.message.lower()
                if not ("does not exist" in m or "no such file" in m or "not found" in m):
                    raise
        finally:
            reaper.stop()
    unmount_rootfs(bundle)
    if socket:
        try:
            os.unlink(socket)
        except FileNotFoundError:
            pass
    try:
        rec = read_exit(bundle)
    except ExitFileError:
        rec = None
    if rec is not None:
        return {"pid": rec.pid, "exit_status": rec.exit_status, "exited_at": rec.exited_at}
    return {
        "pid": read_pid(os.path.join(bundle, "init.pid")),
        "exit_status": UNKNOWN_EXIT,
        "exited_at": time.time_ns(),
    }
