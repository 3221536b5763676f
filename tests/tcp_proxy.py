"""A loopback TCP proxy that can fail on cue, to interrupt transfers at a chosen byte.

    proxy = TcpProxy(upstream_port).start()      # listens on 127.0.0.1:proxy.port
    proxy.limit(3 << 20, Cut.CLOSE)              # after 3 MiB towards clients: close everything
    proxy.limit(3 << 20, Cut.STALL)              # ... or stop forwarding, keep sockets open
    proxy.stalled.wait()                         # the limit was reached (STALL)
    proxy.unlimit()                              # forward freely again (stalled sockets close)
    proxy.hold(b"/blobs/sha256:")                # never answer requests that contain this
    proxy.held()                                 # how many connections wait on such a request
    proxy.requests()                             # what clients sent (request heads included)
    proxy.stop()

The limit counts bytes from the server to clients over all connections, so a transfer is
cut mid-body, as if the registry had died (CLOSE) or hung (STALL) at that point. A hold
stalls each connection from the first request that matches: requests in flight at once
can be counted.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading


class Cut(enum.Enum):
    CLOSE = "close"
    STALL = "stall"


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._budget: int | None = None
        self._cut = Cut.CLOSE
        self._sent: list[bytes] = []
        self._hold: bytes | None = None
        self._conns: list[_Conn] = []
        self._sockets: set[socket.socket] = set()
        self._stop = threading.Event()
        self.stalled = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def limit(self, budget: int, cut: Cut) -> None:
        with self._lock:
            self._budget, self._cut = budget, cut
            self.stalled.clear()

    def unlimit(self) -> None:
        """Forward freely; connections cut or stalled so far are closed."""
        with self._lock:
            self._budget = None
        self._close_all()
        self.stalled.clear()

    def hold(self, marker: bytes | None) -> None:
        with self._lock:
            self._hold = marker

    def held(self) -> int:
        with self._lock:
            return sum(1 for c in self._conns if c.held)

    def requests(self) -> bytes:
        """Every byte clients sent, in arrival order per chunk."""
        with self._lock:
            return b"".join(self._sent)

    def stop(self) -> None:
        self._stop.set()
        # shutdown wakes the accept() below (close would not): the listener's number must
        # not be reused while a thread still waits on it.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._listener.close()
        self._close_all()

    # -- internals ----------------------------------------------------------------------
    #
    # Sockets are closed only by their connection's last pump thread. Other threads only
    # shut them down (which wakes a blocked recv): closing a descriptor another thread is
    # about to use lets that thread read from whatever socket reuses the number next.

    def _close_all(self) -> None:
        with self._lock:
            socks, self._sockets = list(self._sockets), set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            conn = _Conn(self, client, server)
            with self._lock:
                self._sockets |= {client, server}
                self._conns.append(conn)
            threading.Thread(target=self._up, args=(conn,), daemon=True).start()
            threading.Thread(target=self._down, args=(conn,), daemon=True).start()

    def _up(self, conn: _Conn) -> None:
        client, server = conn.client, conn.server
        try:
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    with self._lock:
                        self._sent.append(data)
                        if self._hold is not None and self._hold in data:
                            conn.held = True  # before the request goes: its answer never will
                    server.sendall(data)
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)
        finally:
            conn.release()

    def _down(self, conn: _Conn) -> None:
        client, server = conn.client, conn.server
        try:
            with contextlib.suppress(OSError):
                while data := server.recv(65536):
                    with self._lock:
                        budget, cut = self._budget, self._cut
                        if conn.held:
                            allowed, cut = 0, Cut.STALL
                        elif budget is not None:
                            allowed = max(0, min(budget, len(data)))
                            self._budget = budget - allowed
                        else:
                            allowed = len(data)
                    if allowed:
                        client.sendall(data[:allowed])
                    if allowed < len(data):
                        if cut is Cut.STALL:
                            self.stalled.set()
                            # Hold on until unlimit() or stop() shuts the sockets down.
                            while server.recv(65536):
                                pass
                        break
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        finally:
            conn.release()


class _Conn:
    """One proxied connection; the last of its two pump threads to end closes it."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.held = False
        self.running = 2

    def release(self) -> None:
        with self.proxy._lock:
            self.running -= 1
            last = self.running == 0
            if last:
                self.proxy._sockets -= {self.client, self.server}
                self.proxy._conns.remove(self)
        if last:
            self.client.close()
            self.server.close()
