"""Starting shims, dialing them, and cleaning up after dead ones (STYLE.md §7).

The shim binary is run as `python -S -m shim start|delete` with cwd = the bundle and
BootstrapParams (proto3 JSON) on stdin, as a separate process: the daemon has started
grpc, so it forks only to exec (DESIGN.md, Python traps). `start` daemonizes the shim in a
session of its own, so nothing that happens to the daemon reaches it.

The manager also keeps a shim template running (shim/template.py): a process that has
imported what a shim needs, never started grpc, and forks shims on request, so that each
starts in milliseconds and shares the template's pages. `start --template` asks it first
and execs a fresh shim when it does not answer; the template is started in the background
when the manager starts and again whenever it is found gone, and stopped with the daemon.
A daemon killed with -9 leaves it running: the next one adopts it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil

from containerd_py import errdefs
from containerd_py.api.runtime.task.v1 import shim_pb2_grpc
from containerd_py.runtime.bundle import BootstrapInfo, Bundle

log = logging.getLogger("containerd_py.runtime")

START_TIMEOUT = 60.0
DELETE_TIMEOUT = 60.0
UNKNOWN_EXIT = 137  # DESIGN.md: a killed shim's task exited 137 unless the real code is known


def _env(bundle: Bundle) -> dict[str, str]:
    from shim.bootstrap import child_pythonpath

    env = dict(os.environ)
    # -S skips site (and its .pth files: tens of ms here); the path is handed over instead.
    env["PYTHONPATH"] = child_pythonpath(exclude=[str(bundle.path)])
    return env


def _params(bundle: Bundle, socket_dir: Path, daemon_address: str) -> bytes:
    return json.dumps(
        {
            "id": bundle.id,
            "namespace": bundle.namespace,
            "bundle": str(bundle.path),
            "socket_dir": str(socket_dir),
            "daemon_address": daemon_address,
        }
    ).encode()


def _run(
    action: str, bundle: Bundle, params: bytes, timeout: float, flags: list[str] | None = None
) -> dict[str, Any]:
    try:
        p = subprocess.run(
            [sys.executable, "-S", "-m", "shim", action, *(flags or [])],
            input=params,
            cwd=bundle.path,
            env=_env(bundle),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise errdefs.Unavailable(f"shim {action} for {bundle.id!r} timed out") from None
    if p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip().splitlines()
        raise errdefs.Unavailable(
            f"shim {action} for {bundle.id!r} failed: {msg[-1] if msg else p.returncode}"
        )
    try:
        doc = json.loads(p.stdout or b"{}")
    except ValueError:
        raise errdefs.Unavailable(f"shim {action} for {bundle.id!r}: bad answer") from None
    return doc if isinstance(doc, dict) else {}


def process_create_time(pid: int) -> float | None:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None


def wait_exit(pid: int, timeout: float, alive: Callable[[], bool]) -> bool:
    """Wait up to timeout seconds for process pid (not our child) to exit; whether it did.
    alive() says whether pid is still the process meant (not a reused pid). A pidfd wakes
    us the moment it exits: polling would add half its interval to every task delete, and
    waiting for the process to vanish would wait for whoever reaps it (init here reaps
    its adopted children only every second or so)."""
    if not alive():
        return True
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return not alive()
    try:
        if not alive():  # the pid was reused before the pidfd was opened
            return True
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


@dataclass
class ShimConnection:
    """A dialed shim: its address, pid and a Task stub."""

    info: BootstrapInfo
    channel: grpc.Channel
    stub: shim_pb2_grpc.TaskStub

    @classmethod
    def dial(cls, info: BootstrapInfo) -> ShimConnection:
        target = info.address if info.address.startswith("unix:") else "unix:" + info.address
        channel = grpc.insecure_channel(target)
        return cls(info, channel, shim_pb2_grpc.TaskStub(channel))

    def alive(self) -> bool:
        """The recorded pid is still the very process we started (not a reused pid)."""
        return process_create_time(self.info.shim_pid) == self.info.create_time

    def wait_gone(self, timeout: float) -> bool:
        """Wait up to timeout seconds for the shim process to exit; whether it did (a
        shim exits within a few ms of Shutdown)."""
        return wait_exit(self.info.shim_pid, timeout, self.alive)

    def close(self) -> None:
        self.channel.close()


class ShimManager:
    def __init__(self, state: Path, daemon_address: str) -> None:
        self.state = Path(state)
        # Short: shim socket paths must stay under 108 bytes (the shim hashes the id).
        self.socket_dir = self.state / "s"
        self.daemon_address = os.path.abspath(daemon_address) if daemon_address else ""
        self._template_lock = threading.Lock()
        self._template_starting = False
        self._template_thread: threading.Thread | None = None
        self._replace_stale_template()
        self.ensure_template()

    # -- the shim template ---------------------------------------------------------------

    @property
    def template_socket(self) -> str:
        from shim.template import socket_of

        return socket_of(str(self.socket_dir))

    def template_pid(self) -> int | None:
        """The pid of the template serving our socket dir, if it is alive."""
        from shim.template import pidfile_of

        try:
            pid = int(Path(pidfile_of(str(self.socket_dir))).read_text())
            cmdline = psutil.Process(pid).cmdline()
        except (OSError, ValueError, psutil.Error):
            return None
        if "template" not in cmdline or self.template_socket not in cmdline:
            return None  # a reused pid
        return pid if os.path.exists(self.template_socket) else None

    def _replace_stale_template(self) -> None:
        """A template left by an earlier daemon is adopted only if it runs this code: the
        stack may have been upgraded since it started. (Its shims are not touched.)"""
        from shim.template import code_fingerprint, codefile_of

        if self.template_pid() is None:
            return
        try:
            theirs = Path(codefile_of(str(self.socket_dir))).read_text()
        except OSError:
            theirs = ""
        if theirs != code_fingerprint():
            log.info("the shim template runs other code than this daemon: replacing it")
            self.close()

    def ensure_template(self) -> None:
        """Start a template in the background unless one is alive or starting."""
        with self._template_lock:
            if self._template_starting or self.template_pid() is not None:
                return
            self._template_starting = True
            self._template_thread = threading.Thread(
                target=self._start_template, name="shim-template", daemon=True
            )
            self._template_thread.start()

    def _start_template(self) -> None:
        from shim.bootstrap import BootstrapError, start_template

        try:
            pid = start_template(str(self.socket_dir), timeout=START_TIMEOUT)
            log.debug("shim template started (pid %d)", pid)
        except BootstrapError as e:
            log.warning("no shim template, shims start by exec: %s", e)
        finally:
            with self._template_lock:
                self._template_starting = False

    def close(self) -> None:
        """Stop the template (the shims it forked are not its children: they live on)."""
        thread = self._template_thread
        if thread is not None:
            thread.join(START_TIMEOUT)  # one still starting would be left behind
        pid = self.template_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        if not wait_exit(pid, 5.0, lambda: self.template_pid() == pid):
            # It may exit between the wait and the kill: the daemon's stop must go on.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        from shim.template import codefile_of, pidfile_of

        for path in (
            self.template_socket,
            pidfile_of(str(self.socket_dir)),
            codefile_of(str(self.socket_dir)),
        ):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # -- shims ---------------------------------------------------------------------------

    def _start_from_template(self, bundle: Bundle) -> tuple[str, int] | None:
        """`shim start`'s work done here when the template is up: (address, pid), or None
        to run `shim start` instead. Same steps (bundle lock, an already serving shim is
        reused, address files), without the ~80 ms of a process that imports them: the
        template forks the shim, which never becomes this daemon's child."""
        if self.template_pid() is None:
            return None
        from shim import bootstrap
        from shim.template import TemplateError

        p = bootstrap.Params(
            id=bundle.id,
            namespace=bundle.namespace,
            bundle=str(bundle.path),
            socket_dir=str(self.socket_dir),
            daemon_address=self.daemon_address,
            template=self.template_socket,
        )
        try:
            return bootstrap.start(p, exec_fallback=False)
        except TemplateError as e:
            log.info("shim template did not answer (%s): starting the shim by exec", e)
            return None
        except bootstrap.BootstrapError as e:
            raise errdefs.Unavailable(f"shim start for {bundle.id!r} failed: {e}") from None

    def start(self, bundle: Bundle) -> ShimConnection:
        started = self._start_from_template(bundle)
        if started is None:
            self.ensure_template()
            doc = _run(
                "start",
                bundle,
                _params(bundle, self.socket_dir, self.daemon_address),
                START_TIMEOUT,
                ["--template", self.template_socket],
            )
            started = (
                str(doc.get("address", "")),
                int(doc.get("shim_pid") or doc.get("shimPid") or 0),
            )
        address, pid = started
        created = process_create_time(pid)
        if not address or created is None:
            raise errdefs.Unavailable(f"shim for {bundle.id!r} did not stay up")
        info = BootstrapInfo(address, pid, created)
        bundle.write_bootstrap(info)
        return ShimConnection.dial(info)

    def delete_dead(self, bundle: Bundle) -> tuple[int, int, int]:
        """`shim delete` for a shim that is gone: the runtime's delete --force, unmount;
        (pid, exit_status, exited_at ns) from the exit file, else 137."""
        try:
            doc = _run(
                "delete",
                bundle,
                _params(bundle, self.socket_dir, self.daemon_address),
                DELETE_TIMEOUT,
            )
        except errdefs.PyContainerdError as e:
            log.warning("cleaning up task %s/%s: %s", bundle.namespace, bundle.id, e)
            doc = {}
        from google.protobuf import json_format

        from containerd_py.api.runtime.task.v1 import shim_pb2

        msg = shim_pb2.DeleteResponse(exit_status=UNKNOWN_EXIT)
        try:
            json_format.ParseDict(doc, msg, ignore_unknown_fields=True)
        except json_format.ParseError:
            pass
        pid, status = msg.pid, msg.exit_status
        exited = msg.exited_at.ToNanoseconds() if msg.HasField("exited_at") else 0
        return pid, status, exited
