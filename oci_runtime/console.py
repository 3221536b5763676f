"""Terminals: the pty made inside the container, its master sent over the console socket.

The console socket protocol is runc's: connect to the unix socket the caller named, send one
message whose SCM_RIGHTS carry the pty master fd.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
import termios


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise OSError(e.errno, f"console socket {path}: {e.strerror}") from None
    return s


def open_pty(size: tuple[int, int] | None) -> tuple[int, int, str]:
    """A new pty from the current /dev/ptmx; returns (master, slave, slave path)."""
    master, slave = os.openpty()
    if size and size[0] and size[1]:
        set_size(master, size[0], size[1])
    return master, slave, os.ttyname(slave)


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def send_master(sock: socket.socket, master: int, name: str) -> None:
    sock.sendmsg(
        [name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master]))]
    )


def recv_master(sock: socket.socket) -> int:
    fds = array.array("i")
    _, ancdata, _, _ = sock.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise OSError("no terminal received on the console socket")
    return fds[0]


def make_controlling(slave: int) -> None:
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
