"""Task bundle directories: `<state>/tasks/<namespace>/<id>/`.

    file            written by        read by
    --------------  ----------------  ------------------------------------------------
    config.json     daemon (Create)   the runtime (through the shim)
    rootfs/         shim (mounts)     the runtime
    bootstrap.json  daemon, atomic    daemon on restart: {address, shim_pid, create_time}
    address         shim start        shim start (idempotence), tests
    shim.pid        shim start        shim delete
    exit            shim, atomic      shim delete, so an exit seen while we were down is kept

The bundle is what survives a daemon crash: the daemon keeps no running state of its own,
so everything needed to re-find a shim lives here.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containerd_py import errdefs
from shim.manager import mounts_under

BOOTSTRAP_FILE = "bootstrap.json"
DIR_MODE = 0o711


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Others read these files at any moment (and we may be killed mid-write): a reader
    sees the old file or the whole new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class BootstrapInfo:
    address: str
    shim_pid: int
    create_time: float


@dataclass(frozen=True, slots=True)
class Bundle:
    namespace: str
    id: str
    path: Path

    @classmethod
    def at(cls, state: Path, namespace: str, task_id: str) -> Bundle:
        return cls(namespace, task_id, Path(state) / "tasks" / namespace / task_id)

    def create(self, spec: dict[str, Any]) -> None:
        """Make the dir with config.json; a leftover dir of an earlier life is replaced,
        unless something is still mounted in it (rmtree would delete through the mount
        into the container's snapshot)."""
        if self.path.exists():
            busy = mounts_under(str(self.path))
            if busy:
                raise errdefs.FailedPrecondition(
                    f"task bundle {self.path} still has mounts ({busy[0]}): not replacing it"
                )
            shutil.rmtree(self.path)
        self.path.mkdir(mode=DIR_MODE, parents=True)
        (self.path / "rootfs").mkdir(mode=DIR_MODE)
        write_atomic(self.path / "config.json", json.dumps(spec, indent=2).encode())

    def write_bootstrap(self, info: BootstrapInfo) -> None:
        doc = {"address": info.address, "shim_pid": info.shim_pid, "create_time": info.create_time}
        write_atomic(self.path / BOOTSTRAP_FILE, json.dumps(doc).encode(), 0o600)

    def read_bootstrap(self) -> BootstrapInfo | None:
        """None for a missing or unreadable record (a crash before it was written)."""
        try:
            doc = json.loads((self.path / BOOTSTRAP_FILE).read_text())
            return BootstrapInfo(
                str(doc["address"]), int(doc["shim_pid"]), float(doc["create_time"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def existing(state: Path) -> list[Bundle]:
    """Every bundle dir under `<state>/tasks`, whatever its contents."""
    found: list[Bundle] = []
    base = Path(state) / "tasks"
    if not base.is_dir():
        return found
    for ns_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for task_dir in sorted(p for p in ns_dir.iterdir() if p.is_dir()):
            found.append(Bundle(ns_dir.name, task_dir.name, task_dir))
    return found
