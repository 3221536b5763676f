"""`shim serve`: the long-lived shim process (internal: `shim start` runs it, detached).

Order of start-up, each step for a reason:

1. `become_subreaper()` before anything else: a runtime started later double-forks the
   container's init away from itself, and the init must re-parent to us, not to pid 1, or
   its exit status is lost. Never PR_SET_PDEATHSIG: the shim must outlive its parent.
2. The reaper (`shim.reaper`), in the main thread (it installs the SIGCHLD wakeup): from
   here on it is the only waitpid of the process.
3. grpc, imported only now: `start` and `delete` never pay for it. The server binds its
   unix socket itself (grpc cannot adopt an inherited listening fd) with umask 077, so the
   socket is the daemon's (root's) alone.
4. "ready <pid>" on the ready fd (see shim/bootstrap.py for the pipe protocol), then the
   fd is closed: `start` returns, and nothing of it stays in the shim.

Then the main thread waits for the end: a Shutdown call the service accepted (after the
answer is sent: the server stops with a grace period), or the idle timeout (no task and no
call for that long, see TaskService.idle_for). On the way out: queued events are given a
short time to reach the daemon, the socket is removed, and the process exits with
`os._exit`, which skips interpreter teardown: grpc's threads and the shim's daemon threads
(copiers, waiters) would otherwise be torn down under their feet. Processes left running
(Shutdown with now) are not killed; they re-parent to init.
"""

from __future__ import annotations

import logging
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_IDLE_TIMEOUT = 300.0
# Wait and Attach each hold a worker thread while they block; threads are created only
# when calls need them, so a generous cap costs nothing on an idle shim.
MAX_WORKERS = 64
STOP_GRACE = 2.0

log = logging.getLogger("shim")


def _say(fd: int, line: str) -> None:
    if fd < 0:
        return
    data = (line.rstrip("\n") + "\n").encode()
    try:
        os.write(fd, data)
    except OSError:
        pass  # start gave up on us already: it kills us, nothing to add


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s shim[%(process)d] %(name)s: %(message)s",
        # A shim forked from the template inherits its logging set-up: replace it.
        force=True,
    )


class Server:
    """The serve loop around a TaskService (built here, or given by tests)."""

    def __init__(
        self,
        *,
        namespace: str,
        id: str,
        bundle: str,
        socket: str,
        socket_dir: str,
        daemon_address: str = "",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.namespace = namespace
        self.id = id
        self.bundle = bundle
        self.socket = socket
        self.socket_dir = socket_dir
        self.daemon_address = daemon_address
        self.idle_timeout = idle_timeout
        self.reaper: Any = None
        self.publisher: Any = None
        self.service: Any = None
        self.grpc_server: Any = None

    def setup(self) -> None:
        from shim.reaper import Reaper, become_subreaper

        become_subreaper()
        self.reaper = Reaper()
        self.reaper.start()

        from concurrent.futures import ThreadPoolExecutor

        import grpc

        from containerd_py.api.runtime.task.v1 import shim_pb2_grpc
        from shim.publisher import Publisher
        from shim.service import TaskService

        self.publisher = Publisher(self.daemon_address, self.namespace)
        self.service = TaskService(
            namespace=self.namespace,
            bundle=self.bundle,
            socket_dir=self.socket_dir,
            reaper=self.reaper,
            publisher=self.publisher,
        )
        server = grpc.server(
            ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="shim-grpc")
        )
        shim_pb2_grpc.add_TaskServicer_to_server(self.service, server)
        # grpc unlinks whatever is at a unix socket path before it binds: check first that
        # no live shim is there (start's flock makes this a double check, not the lock).
        from shim.bootstrap import listening

        if listening(self.socket):
            raise RuntimeError(f"a shim already serves {self.socket}")
        old = os.umask(0o077)
        try:
            server.add_insecure_port(f"unix:{self.socket}")
            server.start()
        finally:
            os.umask(old)
        self.grpc_server = server

    def wait(self) -> str:
        """Block until it is time to go; why ("shutdown", "idle" or "orphaned")."""
        svc = self.service
        tick = max(0.05, min(1.0, self.idle_timeout / 4))
        while not svc.shutdown_requested.wait(tick):
            if svc.orphaned():
                log.warning("the bundle %s is gone and no process runs: exiting", self.bundle)
                return "orphaned"
            idle = svc.idle_for()
            if idle is not None and idle >= self.idle_timeout:
                log.info("no task and no call for %.1fs: exiting", idle)
                return "idle"
        return "shutdown"

    def stop(self) -> None:
        if self.grpc_server is not None:
            # The grace lets the Shutdown answer (and any call in flight) go out.
            self.grpc_server.stop(STOP_GRACE).wait(STOP_GRACE + 1)
        if self.publisher is not None:
            self.publisher.close(2.0)
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass


def serve(args: Any) -> int:
    """The `serve` subcommand: set up, say ready, serve until told or idle, exit."""
    ready_fd = args.ready_fd if args.ready_fd is not None else -1
    _setup_logging(args.log_level or "info")
    t0 = time.monotonic()
    srv = Server(
        namespace=args.namespace,
        id=args.id,
        bundle=os.path.abspath(args.bundle or os.getcwd()),
        socket=args.socket,
        socket_dir=args.socket_dir,
        daemon_address=args.address or "",
        idle_timeout=DEFAULT_IDLE_TIMEOUT if args.idle_timeout is None else args.idle_timeout,
    )
    try:
        srv.setup()
    except Exception as e:
        log.error("cannot serve %s/%s: %s", args.namespace, args.id, e, exc_info=True)
        _say(ready_fd, f"error cannot serve on {args.socket}: {e}")
        try:
            srv.stop()
        finally:
            logging.shutdown()
            os._exit(1)
    log.info(
        "serving %s/%s on %s (ready in %.0f ms)",
        args.namespace,
        args.id,
        args.socket,
        (time.monotonic() - t0) * 1000,
    )
    _say(ready_fd, f"ready {os.getpid()}")
    if ready_fd >= 0:
        os.close(ready_fd)
    why = srv.wait()
    log.info("stopping (%s)", why)
    srv.stop()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
