"""`<bundle>/exit`: the container init's exit, on disk before anyone is told of it.

A daemon that was down when the container exited (or a shim killed later) still learns the
real status from this file (conmon's exit file; DESIGN.md "What survives what"). Format, one
JSON object written atomically (temp file in the same dir, fsync, rename, fsync the dir):

    {"pid": 4242, "exit_status": 137, "exited_at": "2026-11-30T10:00:00.123456789Z"}

exit_status is docker's number: the exit code, or 128 + the signal that killed it.
"""

from __future__ import annotations

import json
import os

from shim.timestamps import parse_rfc3339, rfc3339_nano

EXIT_FILE = "exit"


class ExitFileError(ValueError):
    """The exit file exists but is not a record this shim wrote."""


class ExitRecord:
    __slots__ = ("exit_status", "exited_at", "pid")

    def __init__(self, pid: int, exit_status: int, exited_at: int) -> None:
        self.pid = pid
        self.exit_status = exit_status
        self.exited_at = exited_at  # ns since the epoch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExitRecord) and (
            self.pid,
            self.exit_status,
            self.exited_at,
        ) == (other.pid, other.exit_status, other.exited_at)

    def __hash__(self) -> int:
        return hash((self.pid, self.exit_status, self.exited_at))

    def __repr__(self) -> str:
        return (
            f"ExitRecord(pid={self.pid}, exit_status={self.exit_status}, "
            f"exited_at={rfc3339_nano(self.exited_at)})"
        )


def exit_path(bundle: str) -> str:
    return os.path.join(bundle, EXIT_FILE)


def write_exit(bundle: str, pid: int, status: int, exited_at: int) -> None:
    """Record the exit atomically: readers see the old file, no file, or the whole new one.

    status is docker's exit status (see module doc); exited_at is ns since the epoch.
    """
    data = json.dumps({"pid": pid, "exit_status": status, "exited_at": rfc3339_nano(exited_at)})
    path = exit_path(bundle)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data.encode())
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
    # The rename itself must survive a crash too, or a reboot-less restart after a power cut
    # would find no file.
    dfd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_exit(bundle: str) -> ExitRecord | None:
    """The recorded exit, None if there is none; ExitFileError if the file is not ours."""
    try:
        with open(exit_path(bundle), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(raw)
        pid, status, at = obj["pid"], obj["exit_status"], obj["exited_at"]
        if not (isinstance(pid, int) and isinstance(status, int) and isinstance(at, str)):
            raise TypeError
        return ExitRecord(pid, status, parse_rfc3339(at))
    except (ValueError, TypeError, KeyError) as e:
        raise ExitFileError(f"{exit_path(bundle)}: not an exit record: {e}") from None
