"""The pycontainerd gRPC server: socket, interceptors, services, and a clean stop.

Start-up order, and why:

1. create root and state dirs;
2. take `<address>.lock` (flock): two daemons started at once on one socket cannot both
   decide the socket is stale; the lock dies with its process, so kill -9 never leaves a
   stale lock behind;
3. look at the socket path: a socket that accepts a connection belongs to a live server,
   so refuse to start (grpc would silently unlink it and steal the address); one that
   refuses is left over by a killed daemon and is removed; anything else is refused;
4. open the metadata database and build the services (`services.register_all`);
5. bind with mode 0660 (umask during bind, then chmod), then serve: from then on the
   socket accepts requests, which is what "ready" means (DESIGN.md).

Stop (SIGTERM/SIGINT): end the event subscriptions (they would otherwise hold the grace
period), stop accepting calls, give in-flight calls `shutdown_timeout` seconds, remove the
socket, close the database. Containers keep running: nothing here owns them.
"""

from __future__ import annotations

import errno
import faulthandler
import fcntl
import logging
import os
import signal
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError

from containerd_py import errdefs, services
from containerd_py.config import Config, grpc_target
from containerd_py.events.exchange import Exchange
from containerd_py.interceptors import ErrorInterceptor
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.namespaces import NamespaceStore as SQLiteNamespaceStore
from containerd_py.namespaces import NamespaceInterceptor
from containerd_py.services.introspection import EVENT_PLUGIN, METADATA_PLUGIN, PluginInfo
from containerd_py.services.namespaces import NamespaceStore
from containerd_py.storage import Storage, open_storage

log = logging.getLogger("containerd_py.server")

SOCKET_MODE = 0o660
DIR_MODE = 0o711


class AddressInUse(errdefs.FailedPrecondition):
    """Another server answers on the socket, or something else is in the way."""


def _lock_address(address: str) -> int:
    lock_path = address + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AddressInUse(
            f"another pycontainerd is starting or running on {address} (it holds {lock_path})"
        ) from None
    return fd


def _clear_stale_socket(address: str) -> None:
    try:
        st = os.lstat(address)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AddressInUse(f"{address} exists and is not a socket: not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale socket %s (left by a daemon that did not stop cleanly)", address)
        try:
            os.unlink(address)
        except FileNotFoundError:
            pass
        return
    except OSError as e:
        if e.errno == errno.EAGAIN:  # backlog full: someone is listening
            raise AddressInUse(f"another server is listening on {address}") from None
        raise AddressInUse(f"cannot check socket {address}: {e.strerror}") from None
    finally:
        probe.close()
    raise AddressInUse(f"another server is already serving on {address}")


class Server:
    """One daemon instance. `start()` returns once the socket accepts requests."""

    def __init__(
        self,
        config: Config,
        *,
        namespace_store: NamespaceStore | None = None,
        exchange: Exchange | None = None,
    ) -> None:
        self.config = config
        self._namespace_store = namespace_store
        # A Subscribe holds a server thread for as long as the client listens: keep half
        # the pool for everything else.
        self.exchange = exchange or Exchange(max_subscribers=max(1, config.max_workers // 2))
        self._db: MetadataDB | None = None
        self._storage: Storage | None = None
        self._grpc: grpc.Server | None = None
        self._lock_fd: int | None = None
        self._socket_ino: int | None = None
        self.deps: services.Deps | None = None
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        return self.config.address

    def start(self) -> None:
        cfg = self.config
        for d in (cfg.root, cfg.state, Path(cfg.address).parent):
            d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self._lock_fd = _lock_address(cfg.address)
        try:
            _clear_stale_socket(cfg.address)
            self._build()
            self._bind()
            assert self._grpc is not None
            self._grpc.start()
        except BaseException:
            self._release()
            raise
        log.info("serving on %s", grpc_target(cfg.address))

    def _build(self) -> None:
        cfg = self.config
        plugins = [PluginInfo(EVENT_PLUGIN, "exchange")]
        store = self._namespace_store
        if store is None:
            self._db = MetadataDB(cfg.metadata_path)
            store = SQLiteNamespaceStore(self._db)
            plugins.append(
                PluginInfo(METADATA_PLUGIN, "sqlite", exports={"path": str(cfg.metadata_path)})
            )
        self._grpc = grpc.server(
            ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="grpc"),
            # Error mapping first: it then also covers what the namespace wrapper raises.
            interceptors=[ErrorInterceptor(), NamespaceInterceptor()],
            options=[
                ("grpc.max_receive_message_length", cfg.max_recv_message_size),
                ("grpc.max_send_message_length", cfg.max_send_message_size),
            ],
        )
        if self._db is not None:
            self._storage = open_storage(cfg.root, self._db)
        self.deps = services.Deps(
            config=cfg, exchange=self.exchange, namespaces=store, db=self._db, storage=self._storage
        )
        self.deps.plugins.extend(plugins)
        services.register_all(self._grpc, self.deps)
        for p in self.deps.plugins:
            log.debug("loaded plugin %s.%s", p.type, p.id)
        if self.deps.tasks is not None:
            # Before serving: a client must never see a task list without the shims that
            # outlived the previous daemon (STYLE.md §7 step 4).
            self.deps.tasks.load_existing()

    def _bind(self) -> None:
        assert self._grpc is not None
        address = self.config.address
        # The umask covers the window between bind and chmod: the socket is never
        # reachable by others, even for a moment.
        old = os.umask(0o117)
        try:
            port = self._grpc.add_insecure_port(grpc_target(address))
        except RuntimeError as e:
            raise errdefs.Unavailable(f"cannot listen on {address}: {e}") from None
        finally:
            os.umask(old)
        if not port:
            raise errdefs.Unavailable(f"cannot listen on {address}")
        os.chmod(address, SOCKET_MODE)
        self._socket_ino = os.lstat(address).st_ino

    def stop(self, grace: float | None = None) -> None:
        """Graceful stop; idempotent. In-flight calls get `grace` seconds."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.shutdown_timeout if grace is None else grace
        started = time.monotonic()
        self.exchange.close()
        if self.deps is not None and self.deps.tasks is not None:
            self.deps.tasks.close()  # stop watching; the shims keep running
            self.deps.tasks.shims.close()  # the template only: shims are not its children
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 5)
        self._release()
        log.info("stopped in %.2fs", time.monotonic() - started)

    def _release(self) -> None:
        address = self.config.address
        try:
            # Only our own socket: never one a later daemon bound at the same path.
            if self._socket_ino is not None and os.lstat(address).st_ino == self._socket_ino:
                os.unlink(address)
        except FileNotFoundError:
            pass
        self._socket_ino = None
        if self._storage is not None:
            self._storage.close()  # the collector first: it uses the database
            self._storage = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class _UndecodableRequests(logging.Filter):
    """grpc logs a full traceback for every request that does not decode; that is the
    client's mistake (answered INTERNAL by grpc), so one warning line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, DecodeError):
            record.msg, record.args = "rejected a request that does not decode: %s", (exc,)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def run(config: Config) -> int:
    """Serve until SIGTERM or SIGINT; the exit status of the daemon. Logging is the
    caller's to set up (`__main__` logs to stderr in containerd's format)."""
    logging.getLogger("grpc._common").addFilter(_UndecodableRequests())
    # kill -USR1 <pid> dumps every thread's stack to stderr: how to see what a hung
    # daemon is doing (containerd does the same on SIGUSR1).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A daemon started from a terminal must outlive the terminal.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from containerd_py.services.version import revision, version

    log.info(
        "starting pycontainerd version=%s revision=%s root=%s state=%s",
        version(),
        revision() or "unknown",
        config.root,
        config.state,
    )
    server = Server(config)
    try:
        server.start()
    except errdefs.PyContainerdError as e:
        log.error("cannot start: %s", e)
        return 1
    except OSError as e:
        log.error("cannot start: %s", e)
        return 1
    try:
        # A timeout keeps the main thread returning to the interpreter, so the signal
        # handler runs promptly.
        while not stop.wait(1.0):
            pass
    finally:
        server.stop(config.shutdown_timeout)
    return 0
