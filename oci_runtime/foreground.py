"""`run` and `exec` without --detach: pyrunc stays, forwards signals, relays the terminal,
and exits with the process's status (128+N for a death by signal N, as runc does).

pyrunc makes itself a child subreaper first, so the process, a grandchild through the two
fork stages, is re-parented to it and can be waited for.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import tempfile
import termios
import tty
from contextlib import contextmanager
from typing import Any

from oci_runtime import console
from oci_runtime.linux import flags as F
from oci_runtime.linux.syscalls import libc

FORWARDED = [
    s
    for s in signal.Signals
    if s
    not in (
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGCHLD,
        signal.SIGWINCH,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGTSTP,
        signal.SIGCONT,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGURG,
    )
]


def _status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


@contextmanager
def _console_listener(wanted: bool):
    """A private console socket for a foreground terminal: we are its only client."""
    if not wanted:
        yield None, None
        return
    d = tempfile.mkdtemp(prefix="pyrunc-tty-")
    path = os.path.join(d, "c.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    try:
        yield srv, path
    finally:
        srv.close()
        try:
            os.unlink(path)
            os.rmdir(d)
        except OSError:
            pass


def _relay(master: int, pid: int) -> None:
    """Copy our stdin to the pty and the pty to our stdout until the pty closes."""
    stdin_tty = os.isatty(0)
    old = termios.tcgetattr(0) if stdin_tty else None
    if stdin_tty:
        tty.setraw(0)
        _copy_winsize(master)
    fds = [master, 0]
    try:
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                    # No more input: send EOF the way a terminal user would.
                    os.write(master, b"\x04")
                else:
                    os.write(master, data)
    finally:
        if old is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, old)


def _copy_winsize(master: int) -> None:
    import fcntl
    import struct

    try:
        packed = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        rows, cols = struct.unpack("HHHH", packed)[:2]
        console.set_size(master, rows, cols)
    except OSError:
        pass


def _wait_for(pid: int) -> int:
    """Reap every orphan the subreaper gets; return when `pid` ends."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            return _status_code(status)


def _forward_signals(target: list[int], master: list[int]) -> None:
    def handler(signum: int, _frame: Any) -> None:
        if target[0] > 0:
            try:
                os.kill(target[0], signum)
            except ProcessLookupError:
                pass

    for s in FORWARDED:
        try:
            signal.signal(s, handler)
        except (OSError, ValueError):
            pass

    def winch(_signum: int, _frame: Any) -> None:
        if master[0] >= 0:
            _copy_winsize(master[0])

    signal.signal(signal.SIGWINCH, winch)


def _foreground(start: Any, terminal: bool, console_socket: str | None) -> int:
    libc().prctl(F.PR_SET_CHILD_SUBREAPER, 1)
    target = [0]
    master = [-1]
    _forward_signals(target, master)
    with _console_listener(terminal and not console_socket) as (srv, path):
        pid = start(path or console_socket)
        target[0] = pid
        if srv is not None:
            conn, _ = srv.accept()
            with conn:
                master[0] = console.recv_master(conn)
            _relay(master[0], pid)
        return _wait_for(pid)


def run(rt: Any, cid: str, spec: Any, opts: Any, keep: bool) -> int:
    terminal = bool(spec.process.terminal)
    created = False

    def start(console_path: str | None) -> int:
        nonlocal created
        opts.console_socket = console_path
        st = rt.create(cid, spec, opts)
        created = True
        rt.start(cid)
        return st.init_pid

    try:
        code = _foreground(start, terminal, opts.console_socket)
    finally:
        # A create that failed has cleaned up after itself: nothing to delete.
        if created and not keep:
            try:
                rt.delete(cid, force=True)
            except Exception as e:
                print(f"pyrunc: delete {cid}: {e}", file=sys.stderr)
    return code


def exec(
    rt: Any,
    cid: str,
    proc: Any,
    *,
    console_socket: str | None,
    pid_file: str | None,
    preserve_fds: int,
) -> int:
    def start(console_path: str | None) -> int:
        return rt.exec(
            cid, proc, console_socket=console_path, pid_file=pid_file, preserve_fds=preserve_fds
        )

    return _foreground(start, proc.terminal, console_socket)
