"""A container's record on disk (`<root>/<id>/state.json`) and its live status.

The record is written atomically; the status is never stored but derived each time from the
init process (alive, same start time, not a zombie), the exec FIFO and the freezer, so a
record can never claim a container that is gone.
"""

from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oci_runtime.default_spec import OCI_VERSION

ID_RE = re.compile(r"^[\w+\-.]+$")
STATE_FILE = "state.json"
FIFO = "exec.fifo"


class Status(enum.Enum):
    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class ContainerError(Exception):
    """A lifecycle request that cannot be done; the message is the user's one-line error."""


@dataclass(slots=True)
class State:
    id: str
    init_pid: int
    init_start: int
    bundle: str
    rootfs: str
    created: str
    config: dict[str, Any]
    cgroup_paths: dict[str, str] = field(default_factory=dict)
    owner: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    def oci(self, status: Status) -> dict[str, Any]:
        """The runtime-spec state object, as `state` prints and hooks read on stdin."""
        out: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": 0 if status is Status.STOPPED else self.init_pid,
            "status": status.value,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        }
        if self.annotations:
            out["annotations"] = self.annotations
        return out


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Store:
    """The runtime root: one directory per container."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def dir(self, cid: str) -> Path:
        return self.root / cid

    def check_id(self, cid: str) -> None:
        if not cid or not ID_RE.match(cid) or cid in (".", ".."):
            raise ContainerError(f"invalid container id {cid!r}")

    def save(self, st: State) -> None:
        atomic_write(self.dir(st.id) / STATE_FILE, json.dumps(asdict(st)).encode(), 0o600)

    def load(self, cid: str) -> State:
        self.check_id(cid)
        path = self.dir(cid) / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return State(**data)
        except FileNotFoundError:
            raise ContainerError(f"container {cid} does not exist") from None
        except (ValueError, TypeError) as e:
            raise ContainerError(f"container {cid}: unreadable state: {e}") from None

    def ids(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if (p / STATE_FILE).exists())
        except FileNotFoundError:
            return []


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None when the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def init_alive(st: State) -> bool:
    return st.init_pid > 0 and proc_start_time(st.init_pid) == st.init_start
