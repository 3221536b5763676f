"""The container's init, between stage 1's fork and the user's process.

Order matters and follows the runtime spec's lifecycle: mounts, then the prestart and
createRuntime hooks (run by the parent), createContainer hooks here before pivot_root, the
switch of root, then hostname, sysctls, terminal and identity; last, block on the exec FIFO
until `start`, run startContainer hooks, exec.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple

from oci_runtime.hooks import run_hooks
from oci_runtime.linux.syscalls import Syscalls
from oci_runtime.process import SpawnError, exec_process, setup_terminal
from oci_runtime.rootfs import RootfsBuilder
from oci_runtime.spec import Spec
from oci_runtime.sync import Channel, Msg

if TYPE_CHECKING:
    import socket


class InitConfig(NamedTuple):
    spec: Spec
    fifo_path: str
    console_sock: socket.socket | None
    no_pivot: bool
    cgroup_mounts: list[tuple[str, str]]
    preserve_fds: int
    has_parent_hooks: bool


def _write_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise SpawnError(f"sysctl {key}={value}: {e.strerror}") from None


def run_init(sys: Syscalls, cfg: InitConfig, chan: Channel, go: dict[str, Any]) -> None:
    spec = cfg.spec
    proc = spec.process
    assert proc is not None
    os.setsid()
    if spec.namespace("mount") is None:
        raise SpawnError("a mount namespace is required (linux.namespaces has no 'mount')")
    if spec.namespace("uts") is None:
        # The names would be the host's: refuse, as runc and crun do.
        if spec.hostname:
            raise SpawnError("unable to set hostname without a private UTS namespace")
        if spec.domainname:
            raise SpawnError("unable to set domainname without a private UTS namespace")
    # Held from before pivot_root: the only way back to the FIFO, which lives outside the
    # container, once the root has changed.
    fifo_fd = os.open(cfg.fifo_path, os.O_PATH | os.O_CLOEXEC)
    proc_fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    userns = spec.namespace("user") is not None

    rootfs = RootfsBuilder(sys, spec, cfg.cgroup_mounts, userns)
    rootfs.prepare()
    rootfs.mount_all()
    rootfs.setup_dev()
    if cfg.has_parent_hooks:
        chan.send(Msg.HOOKS)
        chan.expect(Msg.HOOKS_DONE)
    state = go.get("state", {})
    run_hooks("createContainer", spec.hooks.get("createContainer", ()), state)
    if spec.hooks.get("startContainer"):
        # They run after the root switch, where the host's stdlib is out of reach: load
        # what run_hooks imports while it is still there.
        import json  # noqa: F401
        import subprocess  # noqa: F401
    rootfs.pivot(cfg.no_pivot)
    # A cwd missing from the image is made (root's, 0755), as runc and crun do: here, in
    # the new root and before it may turn read-only.
    os.makedirs(proc.cwd, mode=0o755, exist_ok=True)
    if spec.hostname is not None and spec.namespace("uts") is not None:
        sys.sethostname(spec.hostname)
    if spec.domainname:
        sys.setdomainname(spec.domainname)
    _write_sysctls(spec.sysctl)
    setup_terminal(proc, cfg.console_sock, rootfs.bind_console)
    rootfs.finish()

    def wait_start() -> None:
        # Blocks until `start` opens the FIFO for reading. The write end stays open until
        # the execve closes it (O_CLOEXEC): the hang-up tells `start` the user's process
        # runs, which is when the poststart hooks may go.
        fd = os.open(f"self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc_fd)
        os.write(fd, b"0")
        os.close(fifo_fd)
        os.close(proc_fd)

    def start_hooks() -> None:
        # Not yet "running": the user's process has not been executed (runc says "created").
        started = dict(state, status="created")
        run_hooks("startContainer", spec.hooks.get("startContainer", ()), started)

    exec_process(
        sys,
        proc,
        seccomp=spec.seccomp,
        chan=chan,
        wait_start=wait_start,
        before_exec=start_hooks,
        preserve_fds=cfg.preserve_fds,
    )


def run_exec(
    sys: Syscalls,
    spec: Spec,
    proc: Any,
    console_sock: socket.socket | None,
    chan: Channel,
    preserve_fds: int,
) -> None:
    """The process `pyrunc exec` starts: already inside the namespaces (stage 1 joined)."""
    if proc.terminal:
        os.setsid()
    setup_terminal(proc, console_sock)
    exec_process(
        sys, proc, seccomp=spec.seccomp, chan=chan, wait_start=None, preserve_fds=preserve_fds
    )
