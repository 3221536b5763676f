"""Drives an OCI runtime's command line (pyrunc, runc or crun) for the shim.

Every call is one runtime process: `<runtime> --root R --log <bundle>/log.json --log-format json
<command> ...`, spawned through the `Reaper` (never `subprocess`, whose own waitpid would
race with the reaper) and waited for with a timeout; on timeout the runtime is killed.

Output: create/exec take the container's stdio as the runtime's own (the container inherits
it); every other command gets stdin from /dev/null or an in-memory file, and stdout/stderr
into memfds that are read once it exited. Files, not pipes: a hook or a daemonizing helper
holding a pipe open would keep a reader waiting for EOF long after the runtime exited.

Errors: a non-zero exit raises OCIRuntimeError with the last `{"level":"error","msg":...}`
line the runtime appended to the JSON log during this call (runc, crun and pyrunc all write
one), else its stderr, else the exit status.
"""

from __future__ import annotations

import json
import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from shim.reaper import Reaper

DEFAULT_TIMEOUT = 60.0


class OCIRuntimeError(Exception):
    """The runtime failed: command, exit status (None: it timed out), and its message."""

    def __init__(self, command: str, exit_status: int | None, message: str) -> None:
        super().__init__(f"{command}: {message}")
        self.command = command
        self.exit_status = exit_status
        self.message = message


def _which(name: str) -> str | None:
    for d in os.get_exec_path():
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def runtime_command(binary: str, pyrunc_launcher: str | None = None) -> tuple[list[str], dict]:
    """argv prefix and extra environment that run the named runtime.

    "pyrunc" is ours: its fast launcher when given, else this interpreter with `-m
    oci_runtime` and the tree that holds both packages on PYTHONPATH (the shim runs with
    cwd /, where `-m` would not find it unless installed). "runc"/"crun" or any other bare
    name are looked up on PATH; a path is used as is.
    """
    if binary == "pyrunc":
        if pyrunc_launcher:
            return [pyrunc_launcher], {}
        tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        extra = {}
        if os.path.isfile(os.path.join(tree, "oci_runtime", "__init__.py")):
            old = os.environ.get("PYTHONPATH")
            extra["PYTHONPATH"] = tree if not old else f"{tree}{os.pathsep}{old}"
        return [sys.executable, "-m", "oci_runtime"], extra
    if "/" in binary:
        return [binary], {}
    path = _which(binary)
    if path is None:
        raise FileNotFoundError(f"OCI runtime {binary!r} not found on PATH")
    return [path], {}


def last_error(log_path: str, offset: int) -> str | None:
    """The msg of the last level=error JSON line written to log_path after offset."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return None
    msg = None
    for raw in data.splitlines():
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("level") == "error" and obj.get("msg"):
            msg = str(obj["msg"])
    return msg


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


class RuntimeClient:
    """One container runtime, its state root and its JSON log; calls go through the reaper."""

    def __init__(
        self,
        binary: str,
        root: str,
        log_path: str,
        reaper: Reaper,
        *,
        pyrunc_launcher: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.root = root
        self.log_path = log_path
        self.reaper = reaper
        self.timeout = timeout
        prefix, extra = runtime_command(binary, pyrunc_launcher)
        self.argv = [*prefix, "--root", root, "--log", log_path, "--log-format", "json"]
        self.env = {**(os.environ if env is None else env), **extra}

    # -- the commands ------------------------------------------------------------------------

    def create(
        self,
        id: str,
        bundle: str,
        *,
        pid_file: str,
        console_socket: str | None = None,
        stdio: Sequence[int | None] = (None, None, None),
        no_pivot: bool = False,
    ) -> None:
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if no_pivot:
            args.append("--no-pivot")
        self._run("create", [*args, id], stdio=stdio)

    def start(self, id: str) -> None:
        self._run("start", ["start", id])

    def state(self, id: str) -> dict[str, Any]:
        out = self._run("state", ["state", id])
        try:
            return json.loads(out)
        except ValueError as e:
            raise OCIRuntimeError("state", 0, f"unreadable state output: {e}") from None

    def kill(self, id: str, sig: int, all: bool = False) -> None:
        self._run("kill", ["kill", *(["--all"] if all else []), id, str(int(sig))])

    def delete(self, id: str, force: bool = False) -> None:
        self._run("delete", ["delete", *(["--force"] if force else []), id])

    def pause(self, id: str) -> None:
        self._run("pause", ["pause", id])

    def resume(self, id: str) -> None:
        self._run("resume", ["resume", id])

    def update(self, id: str, resources: dict[str, Any]) -> None:
        # `-r -` reads the LinuxResources JSON from stdin, given here as a memfd.
        self._run("update", ["update", "--resources", "-", id], input=json.dumps(resources))

    def stats(self, id: str) -> dict[str, Any]:
        """`events --stats`: the "data" object of runc's stats event (cgroup counters)."""
        out = self._run("events", ["events", "--stats", id])
        try:
            # One JSON object: {"type": "stats", "id": ..., "data": {...}}.
            obj = json.loads(out.splitlines()[0] if out.strip() else b"{}")
        except ValueError as e:
            raise OCIRuntimeError("events", 0, f"unreadable stats output: {e}") from None
        data = obj.get("data") if isinstance(obj, dict) else None
        return data if isinstance(data, dict) else {}

    def ps(self, id: str) -> list[int]:
        out = self._run("ps", ["ps", "--format", "json", id])
        try:
            pids = json.loads(out)
        except ValueError as e:
            raise OCIRuntimeError("ps", 0, f"unreadable ps output: {e}") from None
        return [int(p) for p in pids or []]

    def exec(
        self,
        id: str,
        process_json_path: str,
        *,
        pid_file: str,
        console_socket: str | None = None,
        detach: bool = True,
        stdio: Sequence[int | None] = (None, None, None),
    ) -> None:
        args = ["exec", "--process", process_json_path, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if detach:
            args.append("--detach")
        self._run("exec", [*args, id], stdio=stdio)

    # -- running -----------------------------------------------------------------------------

    def _log_offset(self) -> int:
        try:
            return os.stat(self.log_path).st_size
        except OSError:
            return 0

    def _run(
        self,
        command: str,
        args: list[str],
        *,
        stdio: Sequence[int | None] | None = None,
        input: str | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Run the runtime; its stdout, or OCIRuntimeError."""
        timeout = self.timeout if timeout is None else timeout
        offset = self._log_offset()
        own: list[int] = []
        try:
            if stdio is None:
                fin = _memfd("stdin", input.encode()) if input is not None else None
                fout, ferr = _memfd("stdout"), _memfd("stderr")
                own += [fd for fd in (fin, fout, ferr) if fd is not None]
                fds: Sequence[int | None] = (fin, fout, ferr)
            else:
                fds = stdio
            _, fut = self.reaper.start_child(
                [*self.argv, *args], stdin=fds[0], stdout=fds[1], stderr=fds[2], env=self.env
            )
            try:
                ex = fut.result(timeout)
            except TimeoutError:
                fut.signal(signal.SIGKILL)
                try:
                    fut.result(10)
                except TimeoutError:  # stuck in the kernel: leave it to the reaper
                    fut.cancel()
                raise OCIRuntimeError(
                    command, None, f"{self.binary} did not finish within {timeout:g}s"
                ) from None
            if ex.exit_status == 0:
                return _read_all(own[-2]) if stdio is None else b""
            msg = last_error(self.log_path, offset)
            if msg is None and stdio is None:
                msg = _read_all(own[-1]).decode(errors="replace").strip() or None
            raise OCIRuntimeError(
                command, ex.exit_status, msg or f"{self.binary} exited with {ex.exit_status}"
            )
        finally:
            for fd in own:
                os.close(fd)
