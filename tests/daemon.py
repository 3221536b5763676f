"""A real pycontainerd process for tests: temp root and state, a socket under a short
/tmp dir, started and stopped like an operator would.

    d = Daemon(tmp).start()       # returns once Version answers
    d.client().version()
    d.kill9(); d.start()           # crash and restart on the same socket
    d.stop()                       # SIGTERM, then SIGKILL after a timeout

`tmp` must be short (unix socket paths are capped at 107 bytes): use the `short_tmp`
fixture of tests/conftest.py, or `daemon_fixture` below. The daemon's stderr goes to
`<tmp>/pycontainerd-<n>.log`, and `logs()` reads it back (failures include its tail).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil

from containerd_py.client import Client

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


class DaemonError(AssertionError):
    """The daemon did not start or stop as expected (with its log tail)."""


class Daemon:
    def __init__(
        self,
        tmp: str | os.PathLike[str],
        *,
        name: str = "d",
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp = Path(tmp)
        self.root = self.tmp / f"{name}-root"
        self.state = self.tmp / f"{name}-state"
        self.address = str(self.tmp / f"{name}.sock")
        self.args = list(args)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._runs = 0
        self.log_path = self.tmp / f"pycontainerd-{name}.log"

    # -- lifecycle ----------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "containerd_py",
            "--address",
            self.address,
            "--root",
            str(self.root),
            "--state",
            str(self.state),
            "--log-level",
            "debug",
            *self.args,
        ]

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it (for tests of start-up failures)."""
        if self.running:
            raise DaemonError(f"daemon {self.address} is already running")
        self._runs += 1
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            log.write(f"--- run {self._runs}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env=env,
                # Its own session: a Ctrl-C of the test run is not the daemon's SIGINT.
                start_new_session=True,
            )
        return self.proc

    def start(self, timeout: float = START_TIMEOUT) -> Daemon:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until Version answers; DaemonError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise DaemonError(
                    f"pycontainerd exited with {self.proc.returncode} while starting\n"
                    + self.logs_tail()
                )
            if os.path.exists(self.address):
                try:
                    with Client(self.address, timeout=2) as c:
                        c.version()
                    return
                except Exception as e:
                    last = e
            time.sleep(0.05)
        self.kill9()
        raise DaemonError(f"pycontainerd not ready after {timeout}s ({last})\n{self.logs_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait; SIGKILL after `timeout`. The exit status (None if not run)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise DaemonError(
                    f"pycontainerd ignored SIGTERM for {timeout}s\n{self.logs_tail()}"
                ) from None
        return proc.returncode

    def kill9(self) -> None:
        """SIGKILL, as a crash would: no cleanup runs."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = START_TIMEOUT) -> Daemon:
        self.stop()
        return self.start(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    # -- helpers ------------------------------------------------------------------------

    def client(self, namespace: str = "default", timeout: float = 10.0) -> Client:
        return Client(self.address, namespace, timeout)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logs_tail(self, lines: int = 40) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop whatever is left, never raising (for teardown)."""
        try:
            self.stop()
        except DaemonError:
            pass
        finally:
            self.kill9()
            self.kill_shim_template()

    def shim_template_pid(self) -> int | None:
        """The pid of the shim template this daemon started (it outlives a kill -9)."""
        try:
            pid = int((self.state / "s" / "template.pid").read_text())
            cmd = psutil.Process(pid).cmdline()
        except (OSError, ValueError, psutil.Error):
            return None
        return pid if "template" in cmd and str(self.state) in " ".join(cmd) else None

    def kill_shim_template(self) -> None:
        pid = self.shim_template_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return
        # Not our child: it is gone once it is a zombie (init reaps it when it will).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return
            except psutil.Error:
                return
            time.sleep(0.01)


@contextmanager
def running_daemon(tmp: str | os.PathLike[str], **kwargs: object) -> Iterator[Daemon]:
    """A started daemon, stopped (and killed if need be) when the block ends."""
    d = Daemon(tmp, **kwargs)  # type: ignore[arg-type]
    try:
        yield d.start()
    finally:
        d.close()
