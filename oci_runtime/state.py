"""A container's record on disk (`<root>/<id>/state.json`) and its live status.

The record is written atomically; the status is never stored but derived each time from the
init process (alive, same start time, not a zombie), the exec FIFO and the freezer, so a
record can never claim a container that is gone.
"""

from __future__ import annotations

import enum
import os

from oci_runtime.jsonread import loads
from oci_runtime.version import OCI_VERSION

# typing.TYPE_CHECKING without importing typing (3 ms here): type checkers treat a module
# constant of this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

# runc's id rule, ^[\w+-.]+$ with ASCII \w, as a set: no `re` import on the hot path.
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
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


class State:
    """What pyrunc keeps about one container between commands.

    A plain slotted class rather than a dataclass: every pyrunc command loads it, and
    importing dataclasses (which pulls in inspect) would cost more than the command's work.
    """

    __slots__ = (
        "annotations",
        "bundle",
        "cgroup_paths",
        "config",
        "created",
        "id",
        "init_pid",
        "init_start",
        "owner",
        "rootfs",
    )

    def __init__(
        self,
        id: str,
        init_pid: int,
        init_start: int,
        bundle: str,
        rootfs: str,
        created: str,
        config: dict[str, Any],
        cgroup_paths: dict[str, str] | None = None,
        owner: str = "",
        annotations: dict[str, str] | None = None,
    ) -> None:
        self.id = id
        self.init_pid = init_pid
        self.init_start = init_start
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.config = config
        self.cgroup_paths = cgroup_paths or {}
        self.owner = owner
        self.annotations = annotations or {}

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

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


def atomic_write(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
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
        self.root = os.fspath(root)

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def check_id(self, cid: str) -> None:
        if not cid or not ID_CHARS.issuperset(cid) or cid in (".", ".."):
            raise ContainerError(f"invalid container id {cid!r}")

    def save(self, st: State) -> None:
        import json

        data = json.dumps(st.to_dict()).encode()
        atomic_write(os.path.join(self.dir(st.id), STATE_FILE), data, 0o600)

    def load(self, cid: str) -> State:
        self.check_id(cid)
        path = os.path.join(self.dir(cid), STATE_FILE)
        try:
            with open(path, "rb") as f:
                data = loads(f.read().decode())
            return State(**data)
        except FileNotFoundError:
            raise ContainerError(f"container {cid} does not exist") from None
        except (ValueError, TypeError) as e:
            raise ContainerError(f"container {cid}: unreadable state: {e}") from None

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.exists(os.path.join(self.root, n, STATE_FILE)))


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
