"""A container process's stdio as the shim holds it: pipes, or a pty received over a socket.

The shim keeps the container's output flowing whether or not anyone is attached: one
`Copier` thread per output stream always drains it into the json-file log and the live
subscribers (`logs.Fanout`, which drops slow subscribers rather than wait), so a container
never blocks on a full pipe because a client or a daemon is away.

Pipes (`terminal=False`):

    pipe     container end (given to the runtime     shim end
             as its 0/1/2, inherited by the process)
    -------  --------------------------------------  -------------------------------------
    stdin    read end (or /dev/null if not stdin)     write end, kept for attach;
                                                      close_stdin() closes it (EOF)
    stdout   write end                                read end: Copier "stdout"
    stderr   write end                                read end: Copier "stderr"

    The copiers start before the runtime runs (hooks may write a lot), and the shim closes
    its copies of the container ends once the runtime returned, so EOF comes when the last
    process holding them is gone.

Terminal (`terminal=True`), runc's --console-socket protocol:

    1. prepare(): the shim listens on a unix socket in a fresh 0700 directory under
       socket_dir (short: socket paths are limited to 108 bytes) and passes its path to
       the runtime; the runtime's own stdio is /dev/null.
    2. The runtime makes the pty inside the container, connects and sends the master with
       SCM_RIGHTS (one message, any payload), then carries on. The connection is queued in
       the listen backlog, so the shim can accept it after the runtime returned.
    3. started(): accept, receive the master (close-on-exec), remove the socket. A Copier
       reads a dup of the master as stream "stdout" (EIO from the master is EOF: the last
       slave fd closed); stdin writes go to the master; resize() sets TIOCSWINSZ on it.

A stop pipe ends copiers that never see EOF (a process that keeps the pipe open after the
container is gone): close() writes to it, each copier drains what is readable and exits.
Each copier closes its own read fd, so no fd is closed under a thread blocked on it.
"""

from __future__ import annotations

import errno
import os
import threading

from shim.logs import Fanout

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from shim.logs import Attachment, LogWriter


class StdioError(Exception):
    pass


class Copier(threading.Thread):
    """Copies one output fd into the log and the live subscribers until EOF or stop."""

    def __init__(
        self,
        fd: int,
        stream: str,
        log: LogWriter | None,
        fanout: Fanout,
        stop_fd: int,
        on_done: Callable[[], None],
    ) -> None:
        super().__init__(name=f"shim-copy-{stream}", daemon=True)
        self.fd = fd
        self.stream = stream
        self.log = log
        self.fanout = fanout
        self.stop_fd = stop_fd
        self._on_done = on_done

    def _read(self) -> bytes | None:
        """Some bytes; b"" at EOF; None if nothing is readable right now."""
        try:
            return os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno == errno.EIO:  # pty master: every slave fd is closed
                return b""
            raise

    def _deliver(self, data: bytes) -> None:
        self.fanout.publish(self.stream, data)
        if self.log is not None:
            self.log.write(self.stream, data)

    def run(self) -> None:
        import select

        os.set_blocking(self.fd, False)
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.stop_fd, select.POLLIN)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self.fd in ready:
                    data = self._read()
                    if data == b"":
                        break
                    if data:
                        self._deliver(data)
                        continue
                if self.stop_fd in ready:
                    # Told to stop: take what is there without waiting for more.
                    while data := self._read():
                        self._deliver(data)
                    break
        except OSError as e:
            os.write(2, f"pycontainerd-shim: reading {self.stream}: {e}\n".encode())
        finally:
            if self.log is not None:
                self.log.end_stream(self.stream)
            os.close(self.fd)
            self._on_done()


class Stdio:
    """stdin/stdout/stderr of one container process (init or exec), owned by the shim.

    The LogWriter given (if any) belongs to it from then on: close() closes it.
    """

    def __init__(
        self,
        *,
        terminal: bool = False,
        stdin: bool = False,
        log: LogWriter | None = None,
        fanout: Fanout | None = None,
        socket_dir: str = "/tmp",
    ) -> None:
        self.terminal = terminal
        self.stdin = stdin
        self.log = log
        self.fanout = fanout if fanout is not None else Fanout()
        self.socket_dir = socket_dir
        self.console_socket: str | None = None
        self._listener: socket.socket | None = None
        self._container_fds: list[int] = []  # our copies of the container's ends
        self._stdin_w = -1
        self._master = -1
        self._stop_r = self._stop_w = -1
        self._copiers: list[Copier] = []
        self._running = 0
        self._lock = threading.Lock()
        self._drained = threading.Event()
        self._stdin_closed = False
        self._closed = False

    # -- before and after the runtime --------------------------------------------------------

    def prepare(self) -> tuple[int | None, int | None, int | None]:
        """Make the pipes or the console socket; returns the runtime's stdio fds.

        For a terminal the runtime's stdio is /dev/null (None) and `console_socket` is set.
        """
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        if self.terminal:
            self._listen()
            return (None, None, None)
        fin: int | None = None
        if self.stdin:
            fin, self._stdin_w = os.pipe2(os.O_CLOEXEC)
            self._container_fds.append(fin)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self._container_fds += [out_w, err_w]
        # Copy from the start: the runtime (its hooks) writes here too, and must not block.
        self._start_copier(out_r, "stdout")
        self._start_copier(err_r, "stderr")
        return (fin, out_w, err_w)

    def _listen(self) -> None:
        import socket

        d = os.path.join(self.socket_dir, f"pyshim-{os.urandom(6).hex()}")
        os.mkdir(d, 0o700)
        path = os.path.join(d, "console.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.bind(path)
            s.listen(1)
        except BaseException:
            s.close()
            os.rmdir(d)
            raise
        self._listener = s
        self.console_socket = path

    def started(self, timeout: float = 10.0) -> None:
        """The runtime created the process: drop our copies of its ends, take the pty."""
        for fd in self._container_fds:
            os.close(fd)
        self._container_fds = []
        if self.terminal:
            self._master = self._receive_master(timeout)
            self._start_copier(os.dup(self._master), "stdout")

    def _receive_master(self, timeout: float) -> int:
        import array
        import socket

        assert self._listener is not None
        self._listener.settimeout(timeout)
        try:
            conn, _ = self._listener.accept()
        except TimeoutError:
            raise StdioError("the runtime sent no terminal on the console socket") from None
        finally:
            self._remove_socket()
        with conn:
            conn.settimeout(timeout)
            fds = array.array("i")
            try:
                _, anc, _, _ = conn.recvmsg(
                    4096, socket.CMSG_SPACE(4 * fds.itemsize), socket.MSG_CMSG_CLOEXEC
                )
            except (TimeoutError, OSError) as e:
                raise StdioError(f"receiving the terminal: {e}") from None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if not fds:
            raise StdioError("the console socket message carried no fd")
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]

    def _remove_socket(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.console_socket:
            d = os.path.dirname(self.console_socket)
            for p, rm in ((self.console_socket, os.unlink), (d, os.rmdir)):
                try:
                    rm(p)
                except FileNotFoundError:
                    pass
            self.console_socket = None

    def _start_copier(self, fd: int, stream: str) -> None:
        with self._lock:
            self._running += 1
        c = Copier(fd, stream, self.log, self.fanout, self._stop_r, self._copier_done)
        self._copiers.append(c)
        c.start()

    def _copier_done(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self.fanout.close()
            self._drained.set()

    # -- while it runs -----------------------------------------------------------------------

    def subscribe(self, max_bytes: int = 1 << 20) -> Attachment:
        """Live output from now on, as (stream, bytes)."""
        return self.fanout.subscribe(max_bytes)

    def write_stdin(self, data: bytes) -> int:
        """Write all of data to the process's stdin (blocks while the process does not read).

        Writes go through a dup of the fd: close_stdin() or close() from another thread
        then cannot hand the fd number to another file under a blocked write; the pipe
        sees EOF once the pending write is done.
        """
        with self._lock:
            fd = self._master if self.terminal else self._stdin_w
            if not self.stdin or self._stdin_closed or fd < 0:
                raise StdioError("stdin is not open")
            fd = os.dup(fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return len(data)

    def close_stdin(self) -> None:
        """EOF on the process's stdin (pipes); a terminal just stops taking input."""
        with self._lock:
            self._stdin_closed = True
            fd, self._stdin_w = self._stdin_w, -1
        if fd >= 0:
            os.close(fd)

    def resize(self, cols: int, rows: int) -> None:
        if not self.terminal or self._master < 0:
            raise StdioError("the process has no terminal")
        import fcntl
        import struct
        import termios

        fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait_drained(self, timeout: float | None = None) -> bool:
        """True once every output stream reached EOF (all output is in the log)."""
        if not self._copiers:
            return True
        return self._drained.wait(timeout)

    # -- the end -----------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop copying (after taking what is readable) and close every fd. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._remove_socket()
        for fd in self._container_fds:
            os.close(fd)
        self._container_fds = []
        if self._stop_w >= 0:
            os.write(self._stop_w, b"x")
        for c in self._copiers:
            c.join(timeout)
        self.close_stdin()
        with self._lock:
            master, self._master = self._master, -1
        if master >= 0:
            os.close(master)
        if not self._copiers:
            self.fanout.close()
        if any(c.is_alive() for c in self._copiers):
            # A copier still polls the stop pipe (stuck writing the log?): closing it now
            # could hand its number to another file under the thread. Leak it instead.
            return
        if self.log is not None:
            self.log.close()
        for fd in (self._stop_r, self._stop_w):
            if fd >= 0:
                os.close(fd)
        self._stop_r = self._stop_w = -1
