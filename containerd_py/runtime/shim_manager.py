"""Starting shims, dialing them, and cleaning up after dead ones (STYLE.md §7).

The shim binary is run as `python -m shim start|delete` with cwd = the bundle and
BootstrapParams (proto3 JSON) on stdin, as a separate process: the daemon has started
grpc, so it forks only to exec (DESIGN.md, Python traps). `start` daemonizes the shim in a
session of its own, so nothing that happens to the daemon reaches it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil

from containerd_py import errdefs
from containerd_py.api.runtime.task.v1 import shim_pb2_grpc
from containerd_py.runtime.bundle import BootstrapInfo, Bundle

log = logging.getLogger("containerd_py.runtime")

# The tree that holds both `containerd_py` and `shim`.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
START_TIMEOUT = 60.0
DELETE_TIMEOUT = 60.0
UNKNOWN_EXIT = 137  # DESIGN.md: a killed shim's task exited 137 unless the real code is known


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SOURCE_ROOT, env.get("PYTHONPATH")]))
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


def _run(action: str, bundle: Bundle, params: bytes, timeout: float) -> dict[str, Any]:
    try:
        p = subprocess.run(
            [sys.executable, "-m", "shim", action],
            input=params,
            cwd=bundle.path,
            env=_env(),
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

    def close(self) -> None:
        self.channel.close()


class ShimManager:
    def __init__(self, state: Path, daemon_address: str) -> None:
        self.state = Path(state)
        # Short: shim socket paths must stay under 108 bytes (the shim hashes the id).
        self.socket_dir = self.state / "s"
        self.daemon_address = os.path.abspath(daemon_address) if daemon_address else ""

    def start(self, bundle: Bundle) -> ShimConnection:
        doc = _run(
            "start",
            bundle,
            _params(bundle, self.socket_dir, self.daemon_address),
            START_TIMEOUT,
        )
        pid = int(doc.get("shim_pid") or doc.get("shimPid") or 0)
        address = str(doc.get("address", ""))
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
