"""HTTP/1.1 to registries over http.client: connections, scheme fallback, redirects, and the
network failures turned into one-line `errdefs` errors.

Connections are kept per thread and per origin, so several threads can download blobs at
once without sharing a socket; a response handed out as a stream owns its connection and
closes it. Redirects (blob downloads are often sent to a storage service) are followed up to
`MAX_REDIRECTS` times; credentials are never carried to another origin.

| failure (all Unavailable)            | message                                             |
|--------------------------------------|-----------------------------------------------------|
| certificate untrusted or wrong name  | TLS: certificate verification failed for HOST: ...  |
| other TLS handshake failure          | TLS handshake with HOST failed: ...                 |
| refused, unresolvable, reset, timeout | registry HOST unreachable: ...                     |
| garbage instead of HTTP              | registry HOST: bad HTTP response: ...               |
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message

from containerd_py.errdefs import InvalidArgument, Unavailable
from containerd_py.remotes.hosts import Fallback, HostConfig, Hosts, Scheme, split_host

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 60.0
USER_AGENT = "pycontainerd/0.1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Errors of a kept-alive connection the server closed meanwhile: worth one fresh attempt.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)

Body = bytes | Iterable[bytes] | None


@dataclass
class Response:
    """A response whose body is still on the wire; `read()` it or `close()` it."""

    status: int
    reason: str
    url: str
    headers: Message
    _resp: http.client.HTTPResponse = field(repr=False)
    _conn: http.client.HTTPConnection = field(repr=False)
    _release: object = field(default=None, repr=False)  # callable(conn) or None
    _released: bool = field(default=False, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._resp.read() if n < 0 else self._resp.read(n)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise Unavailable(f"registry {_origin(self.url)}: connection lost: {_why(e)}") from e
        if n < 0 or (not data and n != 0) or self._resp.isclosed():
            self._done()
        return data

    def readinto(self, buf: memoryview | bytearray) -> int:
        try:
            count = self._resp.readinto(buf)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise Unavailable(f"registry {_origin(self.url)}: connection lost: {_why(e)}") from e
        if (count == 0 and len(buf)) or self._resp.isclosed():
            self._done()
        return count

    def read_limited(self, limit: int, what: str) -> bytes:
        """The whole body, refusing one longer than LIMIT (a manifest, an error)."""
        chunks: list[bytes] = []
        total = 0
        while chunk := self.read(min(65536, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                self.close()
                raise InvalidArgument(f"{what}: larger than {limit} bytes")
        return b"".join(chunks)

    def _done(self) -> None:
        release, self._release = self._release, None
        if callable(release) and self._resp.isclosed() and not self._resp.will_close:
            self._released = True
            release(self._conn)
        elif release is not None:
            self._conn.close()

    def close(self) -> None:
        self._release = None
        self._resp.close()
        if not self._released:  # a connection back in the pool is no longer ours
            self._conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _origin(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _why(e: BaseException) -> str:
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host ({e.strerror})"
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if e.strerror[:1].isupper() else e.strerror
    return str(e) or type(e).__name__


def tls_error(host: str, e: ssl.SSLError) -> Unavailable:
    if isinstance(e, ssl.SSLCertVerificationError):
        detail = e.verify_message or e.reason or str(e)
        return Unavailable(f"TLS: certificate verification failed for {host}: {detail}")
    return Unavailable(f"TLS handshake with {host} failed: {e.reason or e}")


class Transport:
    """Sends requests to registry hosts as `Hosts` says to reach them."""

    def __init__(
        self, hosts: Hosts, *, timeout: float = DEFAULT_TIMEOUT, user_agent: str = USER_AGENT
    ) -> None:
        self.hosts = hosts
        self.timeout = timeout
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._configs: dict[tuple[str, bool], HostConfig] = {}
        # Hosts found to speak plain http after an https attempt (the fallback decided once).
        self._downgraded: set[str] = set()
        self._local = threading.local()

    def config(self, host: str, *, plain_http: bool = False) -> HostConfig:
        key = (host, plain_http)
        with self._lock:
            cfg = self._configs.get(key)
        if cfg is None:
            cfg = self.hosts.config(host, plain_http=plain_http)
            with self._lock:
                self._configs[key] = cfg
        return cfg

    def scheme(self, cfg: HostConfig) -> Scheme:
        with self._lock:
            return Scheme.HTTP if cfg.host in self._downgraded else cfg.scheme

    def base_url(self, cfg: HostConfig) -> str:
        return cfg.base_url(self.scheme(cfg))

    # -- connections ----------------------------------------------------------------------

    def _pool(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _new_connection(
        self, cfg: HostConfig, scheme: Scheme, netloc: str
    ) -> http.client.HTTPConnection:
        host, port_num = split_host(netloc)
        if scheme is Scheme.HTTPS:
            context = cfg.ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(
                host, port_num, timeout=self.timeout, context=context
            )
        return http.client.HTTPConnection(host, port_num, timeout=self.timeout)

    def _connect(self, cfg: HostConfig, netloc: str) -> tuple[http.client.HTTPConnection, Scheme]:
        """A connected connection to NETLOC, applying the host's http fallback once."""
        scheme = self.scheme(cfg)
        conn = self._new_connection(cfg, scheme, netloc)
        try:
            conn.connect()
            return conn, scheme
        except ssl.SSLCertVerificationError as e:
            conn.close()
            if cfg.fallback is not Fallback.ANY_ERROR:
                raise tls_error(cfg.host, e) from e
            failure: Unavailable = tls_error(cfg.host, e)
        except ssl.SSLError as e:
            conn.close()
            if cfg.fallback is Fallback.NEVER:
                raise tls_error(cfg.host, e) from e
            failure = tls_error(cfg.host, e)
        except OSError as e:
            conn.close()
            if cfg.fallback is not Fallback.ANY_ERROR or scheme is Scheme.HTTP:
                raise Unavailable(f"registry {cfg.host} unreachable: {_why(e)}") from e
            failure = Unavailable(f"registry {cfg.host} unreachable: {_why(e)}")
        if scheme is Scheme.HTTP:
            raise failure
        conn = self._new_connection(cfg, Scheme.HTTP, netloc)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            # Both failed: the https error is the one that says what is wrong.
            raise failure from e
        with self._lock:
            self._downgraded.add(cfg.host)
        return conn, Scheme.HTTP

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        plain_http: bool = False,
        follow_redirects: bool = True,
        auth_header: str | None = None,
    ) -> Response:
        """One request to an absolute URL (or a path on `cfg`), following redirects.

        AUTH_HEADER goes only to the URL's own origin, never to a redirect target elsewhere.
        """
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._send(method, url, headers, body, plain_http, auth_header)
            if not follow_redirects or resp.status not in _REDIRECTS:
                return resp
            location = resp.header("Location")
            resp.read()
            if not location:
                return resp
            url = urllib.parse.urljoin(resp.url, location)
            if _origin(url) != origin:
                auth_header = None
            if resp.status == 303:
                method, body = "GET", None
        raise Unavailable(f"registry {origin}: more than {MAX_REDIRECTS} redirects")

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: Body,
        plain_http: bool,
        auth_header: str | None,
    ) -> Response:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidArgument(f"registry URL {url!r} is not http(s)")
        netloc = parts.netloc
        cfg = self.config(netloc, plain_http=plain_http or parts.scheme == "http")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        all_headers = {"User-Agent": self.user_agent, **(headers or {})}
        if auth_header:
            all_headers["Authorization"] = auth_header
        if body is None and method in ("POST", "PUT", "PATCH"):
            all_headers.setdefault("Content-Length", "0")
        replayable = body is None or isinstance(body, bytes)
        pool = self._pool()
        for attempt in range(2):
            key = (self.scheme(cfg).value, netloc)
            conn = pool.pop(key, None) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn, scheme = self._connect(cfg, netloc)
                key = (scheme.value, netloc)
            try:
                conn.request(method, target, body=body, headers=all_headers)  # type: ignore[arg-type]
                resp = conn.getresponse()
            except ssl.SSLError as e:
                conn.close()
                raise tls_error(cfg.host, e) from e
            except _STALE as e:
                conn.close()
                if reused and replayable:
                    continue
                raise Unavailable(f"registry {cfg.host}: connection lost: {_why(e)}") from e
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if isinstance(e, http.client.HTTPException) and not isinstance(e, OSError):
                    raise Unavailable(f"registry {cfg.host}: bad HTTP response: {e!r}") from e
                raise Unavailable(f"registry {cfg.host} unreachable: {_why(e)}") from e
            except BaseException:
                # The body's reader failed halfway: this connection is mid-request.
                conn.close()
                raise

            owner = threading.get_ident()

            def release(
                c: http.client.HTTPConnection, key: tuple[str, str] = key, owner: int = owner
            ) -> None:
                # Only the thread owning the pool may touch it: a stream finished elsewhere
                # closes its connection instead.
                if threading.get_ident() != owner:
                    c.close()
                    return
                old = pool.get(key)
                if old is not None and old is not c:
                    old.close()
                pool[key] = c

            real_url = f"{key[0]}://{netloc}{target}"
            return Response(resp.status, resp.reason, real_url, resp.msg, resp, conn, release)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Closes this thread's idle connections (other threads' close with them)."""
        pool = self._pool()
        for conn in pool.values():
            conn.close()
        pool.clear()
