"""Real registries for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

    reg = RegistryServer.start(Mode.TOKEN)   # or use the fixtures below
    reg.host          # "127.0.0.1:PORT"
    reg.url           # "http://127.0.0.1:PORT" ("https://..." in TLS mode)
    reg.users         # {"alice": "<password>", ...}: valid in BASIC and TOKEN modes
    reg.ca_file       # the CA that signed the server cert (TLS mode), else None
    reg.certs_dir     # a docker-style certs.d holding <host>/ca.crt (TLS mode), else None
    reg.seed("library/busybox:latest")   # puts mkimage's busybox image in it with skopeo
    reg.stop()        # kills the registry (and token server), removes every temp dir

| mode  | registry                  | auth                                                      |
|-------|---------------------------|-----------------------------------------------------------|
| PLAIN | http                      | none                                                      |
| BASIC | http                      | htpasswd (bcrypt, made with `htpasswd -B`, apache2-utils) |
| TLS   | https, cert from a test CA | none; cert valid for IP 127.0.0.1 and DNS localhost      |
| TOKEN | http                      | bearer tokens from `TokenServer`, an http.server thread   |

The token server issues the JWTs distribution checks (`auth.token` in its config): RS256,
signed with `openssl dgst` by a key whose self-signed certificate is both the token's `x5c`
header and the registry's `rootcertbundle`. Users get pull and push on every repository,
those in `TokenServer.readonly` only pull, anonymous callers what `anonymous` says (nothing
by default: the registry then answers 401 again). Every token request is recorded in
`TokenServer.requests`, so tests can check which scopes a client asked for.

Seeding goes through skopeo from an OCI layout written by mkimage, so a test can put an
image in a registry without trusting our own push.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
SERVICE = "pytest-registry"
ISSUER = "pytest-token-issuer"


class Mode(enum.Enum):
    PLAIN = "plain"
    BASIC = "basic"
    TLS = "tls"
    TOKEN = "token"


class RegistryError(AssertionError):
    """The registry or a helper tool failed (with its log tail)."""


def missing_tools(mode: Mode) -> str | None:
    """Why MODE cannot run here (a Debian package to install), or None."""
    needs = {REGISTRY_BIN: "docker-registry", SKOPEO: "skopeo"}
    if mode is Mode.BASIC:
        needs[HTPASSWD] = "apache2-utils"
    if mode in (Mode.TLS, Mode.TOKEN):
        needs[OPENSSL] = "openssl"
    for path, package in needs.items():
        if not os.access(path, os.X_OK):
            return f"{path} not installed (Debian package {package})"
    return None


def _run(argv: list[str], *, input: bytes | None = None, timeout: float = 120) -> bytes:
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RegistryError(f"{' '.join(argv)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def openssl(*args: str, input: bytes | None = None) -> bytes:
    return _run([OPENSSL, *args], input=input)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class TestCA:
    """A CA made with the openssl CLI, and the server certs it signs."""

    dir: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, dest: Path, name: str = "pytest registry CA") -> TestCA:
        dest.mkdir(parents=True, exist_ok=True)
        cert, key = dest / "ca.crt", dest / "ca.key"
        openssl(
            *["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            *["-nodes", "-days", "2"],
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        )
        return cls(dest, cert, key)

    def issue(self, name: str, sans: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path]:
        """A server certificate and key for SANS; returns (cert, key)."""
        cert, key, csr = (self.dir / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
        ext = self.dir / f"{name}.ext"
        ext.write_text(
            f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        )
        openssl(
            *["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
            *("-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"),
        )
        openssl(
            *("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key)),
            *("-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)),
        )
        return cert, key


# -- the token server ---------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One GET on the realm, as the token server saw it."""

    user: str | None  # None: anonymous
    service: str
    scopes: tuple[str, ...]
    granted: tuple[dict[str, object], ...]


class TokenServer:
    """Issues distribution-compatible bearer tokens on http://127.0.0.1:PORT/token."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str],
        *,
        readonly: frozenset[str] = frozenset(),
        anonymous: frozenset[str] = frozenset(),
        expires_in: int = 300,
        token_field: str = "token",
    ) -> None:
        self.users = users
        self.readonly = readonly
        self.anonymous = anonymous
        self.expires_in = expires_in
        self.token_field = token_field  # "token", "access_token" or "both"
        self.requests: list[TokenRequest] = []
        # OAuth refresh tokens (docker's `identitytoken`) accepted by POST, and their user.
        self.refresh_tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        openssl(
            *["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"],
            *("-keyout", str(self.key), "-out", str(self.cert), "-subj", f"/CN={ISSUER}"),
        )
        der = openssl("x509", "-in", str(self.cert), "-outform", "DER")
        self._x5c = base64.b64encode(der).decode()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=STOP_TIMEOUT)

    def scopes_asked(self) -> list[str]:
        with self._lock:
            return [s for r in self.requests for s in r.scopes]

    def _allowed(self, user: str | None) -> frozenset[str]:
        if user is None:
            return self.anonymous
        if user in self.readonly:
            return frozenset({"pull"})
        return frozenset({"pull", "push", "delete"})

    def sign(self, claims: dict[str, object]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        sig = _run(
            [OPENSSL, "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode()
        )
        return f"{signing_input}.{b64url(sig)}"

    def issue(self, user: str | None, service: str, scopes: list[str]) -> dict[str, object]:
        allowed = self._allowed(user)
        access = []
        for scope in scopes:
            for item in scope.split():
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                granted = [a for a in actions.split(",") if a in allowed or "*" in allowed]
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        with self._lock:
            self.requests.append(TokenRequest(user, service, tuple(scopes), tuple(access)))
        token = self.sign(claims)
        body: dict[str, object] = {"expires_in": self.expires_in}
        if self.token_field in ("token", "both"):
            body["token"] = token
        if self.token_field in ("access_token", "both"):
            body["access_token"] = token
        return body

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # the tests read `requests`, not stderr

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/token":
                    self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
                    return
                query = urllib.parse.parse_qs(url.query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("basic "):
                    try:
                        user, _, password = (
                            base64.b64decode(auth[6:].strip()).decode().partition(":")
                        )
                    except ValueError:
                        user, password = "", None
                    if server.users.get(user) != password:
                        self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                        return
                service = query.get("service", [""])[0]
                self._reply(200, server.issue(user, service, query.get("scope", [])))

            def do_POST(self) -> None:
                # The OAuth2 form docker and containerd send with an identity token.
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                if urllib.parse.urlsplit(self.path).path != "/token":
                    self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
                    return
                if form.get("grant_type") != ["refresh_token"]:
                    self._reply(400, {"error": "unsupported_grant_type"})
                    return
                user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
                if user is None:
                    self._reply(401, {"error": "invalid_grant"})
                    return
                scopes = form.get("scope", [""])[0].split()
                body = server.issue(user, form.get("service", [""])[0], scopes)
                token = body.get("token") or body.get("access_token")
                self._reply(200, {"access_token": token, "expires_in": server.expires_in})

        return Handler


# -- the registry -------------------------------------------------------------------------


@dataclass
class RegistryServer:
    mode: Mode
    workdir: Path
    host: str
    proc: subprocess.Popen[bytes]
    users: dict[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    certs_dir: Path | None = None
    token_server: TokenServer | None = None

    @property
    def tls(self) -> bool:
        return self.mode is Mode.TLS

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    @classmethod
    def start(
        cls,
        mode: Mode,
        *,
        users: dict[str, str] | None = None,
        token_options: dict[str, object] | None = None,
    ) -> RegistryServer:
        why = missing_tools(mode)
        if why:
            raise RegistryError(why)
        workdir = Path(tempfile.mkdtemp(prefix="reg-", dir="/tmp"))
        users = dict(users or {"alice": secrets.token_hex(8), "bob": secrets.token_hex(8)})
        token_server = None
        try:
            auth: dict[str, object] = {}
            tls: dict[str, object] = {}
            ca_file = certs_dir = None
            if mode is Mode.BASIC:
                htpasswd = workdir / "htpasswd"
                for user, password in users.items():
                    flags = "-bBc" if not htpasswd.exists() else "-bB"
                    _run([HTPASSWD, flags, str(htpasswd), user, password])
                auth = {"htpasswd": {"realm": "pytest-realm", "path": str(htpasswd)}}
            elif mode is Mode.TOKEN:
                token_server = TokenServer(workdir, users, **(token_options or {}))  # type: ignore[arg-type]
                auth = {
                    "token": {
                        "realm": token_server.realm,
                        "service": SERVICE,
                        "issuer": ISSUER,
                        "rootcertbundle": str(token_server.cert),
                    }
                }
            elif mode is Mode.TLS:
                ca = TestCA.create(workdir / "ca")
                cert, key = ca.issue("server")
                tls = {"certificate": str(cert), "key": str(key)}
                ca_file = ca.cert
            last = ""
            # A port found free can be taken before the registry binds it: try another.
            for _ in range(3):
                port = free_port()
                host = f"127.0.0.1:{port}"
                if ca_file is not None:
                    certs_dir = workdir / "certs.d"
                    (certs_dir / host).mkdir(parents=True, exist_ok=True)
                    shutil.copy(ca_file, certs_dir / host / "ca.crt")
                proc = _spawn(workdir, host, auth, tls)
                reg = cls(mode, workdir, host, proc, users, ca_file, certs_dir, token_server)
                try:
                    reg.wait_ready()
                    return reg
                except RegistryError as e:
                    _kill(proc)
                    last = str(e)
                    if "address already in use" not in last:
                        break
            raise RegistryError(last)
        except BaseException:
            if token_server is not None:
                token_server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        return ctx

    def connection(self, timeout: float = 5.0) -> http.client.HTTPConnection:
        host, port = self.host.rsplit(":", 1)
        if self.tls:
            return http.client.HTTPSConnection(
                host, int(port), timeout=timeout, context=self.ssl_context()
            )
        return http.client.HTTPConnection(host, int(port), timeout=timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Polls GET /v2/ until it answers (200, or 401 when auth is on)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            conn = self.connection(timeout=2)
            try:
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                if status in (200, 401):
                    return
                last = RegistryError(f"GET /v2/ answered {status}")
            except (OSError, http.client.HTTPException) as e:
                last = e
            finally:
                conn.close()
            # Waiting on the process doubles as the pause between polls and notices its death.
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(timeout=0.05)
                raise RegistryError(f"docker-registry exited with {code}:\n{self.logs()[-3000:]}")
        raise RegistryError(f"docker-registry not ready after {timeout}s ({last})")

    def stop(self) -> None:
        """Idempotent: fixtures call it again after a test that stopped the registry itself."""
        try:
            _kill(self.proc)
        finally:
            if self.token_server is not None:
                self.token_server.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- skopeo ---------------------------------------------------------------------------

    def skopeo_flags(self, side: str, user: str | None = None) -> list[str]:
        """Flags for skopeo's SIDE ("src", "dest", or "" for inspect) to reach this registry.

        USER defaults to the first user in auth modes; skopeo speaks https unless told
        tls-verify=false, which also lets it use plain http.
        """
        prefix = f"--{side}-" if side else "--"
        flags = []
        if self.tls:
            flags.append(f"{prefix}cert-dir={self.certs_dir / self.host}")  # type: ignore[operator]
        else:
            flags.append(f"{prefix}tls-verify=false")
        if self.mode in (Mode.BASIC, Mode.TOKEN):
            user = user or next(iter(self.users))
            flags.append(f"{prefix}creds={user}:{self.users[user]}")
        else:
            flags.append(f"{prefix}no-creds" if side else "--no-creds")
        return flags

    def skopeo(self, *args: str) -> bytes:
        # --insecure-policy: no dependence on the host's /etc/containers/policy.json; a
        # private auth file, so that the host's logins never leak into a test.
        env = dict(os.environ, REGISTRY_AUTH_FILE=str(self.workdir / "skopeo-auth.json"))
        proc = subprocess.run(
            [SKOPEO, "--insecure-policy", *args], capture_output=True, timeout=180, env=env
        )
        if proc.returncode != 0:
            raise RegistryError(f"skopeo {' '.join(args)}: {proc.stderr.decode().strip()}")
        return proc.stdout

    def seed(self, name: str = "library/busybox:latest", layout: Path | None = None) -> str:
        """Copies mkimage's busybox OCI layout to NAME here; returns the manifest digest."""
        if layout is None:
            layout = self.workdir / "seed-layout"
            if not layout.exists():
                from mkimage import write_oci_layout

                write_oci_layout(layout)
        digest_file = self.workdir / "seed-digest"
        self.skopeo(
            "copy",
            "--preserve-digests",
            f"--digestfile={digest_file}",
            *self.skopeo_flags("dest"),
            f"oci:{layout}:latest",
            f"docker://{self.host}/{name}",
        )
        return digest_file.read_text().strip()

    def inspect_raw(self, name: str) -> bytes:
        """The manifest bytes skopeo gets for NAME (repo:tag or repo@digest)."""
        return self.skopeo(
            "inspect", "--raw", *self.skopeo_flags(""), f"docker://{self.host}/{name}"
        )

    def copy_out(self, name: str, dest: Path) -> Path:
        """skopeo copies NAME into DEST as a `dir:` (manifest.json + blobs by hex); verified."""
        self.skopeo(
            "copy", *self.skopeo_flags("src"), f"docker://{self.host}/{name}", f"dir:{dest}"
        )
        return dest

    # -- direct API calls (for checks that must not go through the code under test) ------

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self.raw_request("HEAD", f"/v2/{repo}/blobs/{digest}")[0] == 200

    def raw_request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """An HTTP request with the first user's basic creds when in BASIC mode."""
        headers = dict(headers or {})
        if self.mode is Mode.BASIC:
            user = next(iter(self.users))
            cred = base64.b64encode(f"{user}:{self.users[user]}".encode()).decode()
            headers["Authorization"] = f"Basic {cred}"
        elif self.mode is Mode.TOKEN:
            assert self.token_server is not None
            user = next(iter(self.users))
            m = re.match(r"/v2/(.+)/(?:manifests|blobs|tags)/", path)
            scopes = [f"repository:{m.group(1)}:pull,push"] if m else []
            body = self.token_server.issue(user, SERVICE, scopes)
            headers["Authorization"] = f"Bearer {body.get('token') or body['access_token']}"
        conn = self.connection()
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def _spawn(
    workdir: Path, host: str, auth: dict[str, object], tls: dict[str, object]
) -> subprocess.Popen[bytes]:
    http_conf: dict[str, object] = {"addr": host, "secret": secrets.token_hex(16)}
    if tls:
        http_conf["tls"] = tls
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http_conf,
    }
    if auth:
        config["auth"] = auth
    # JSON is YAML: the registry reads this as its config file.
    path = workdir / "config.yml"
    path.write_text(json.dumps(config, indent=1))
    # REGISTRY_* variables override the config file: none of the host's may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(workdir / "registry.log", "ab") as log:
        return subprocess.Popen(
            [REGISTRY_BIN, "serve", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- fixtures (registered for all tests by tests/conftest.py) -----------------------------


@contextlib.contextmanager
def running_registry(mode: Mode, **kwargs: object) -> Iterator[RegistryServer]:
    why = missing_tools(mode)
    if why:
        pytest.skip(why)
    reg = RegistryServer.start(mode, **kwargs)  # type: ignore[arg-type]
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def registry_factory() -> Iterator[object]:
    """registry_factory(mode, users=..., token_options=...) -> RegistryServer; all stopped
    at the end of the test."""
    started: list[RegistryServer] = []

    def factory(mode: Mode = Mode.PLAIN, **kwargs: object) -> RegistryServer:
        why = missing_tools(mode)
        if why:
            pytest.skip(why)
        reg = RegistryServer.start(mode, **kwargs)  # type: ignore[arg-type]
        started.append(reg)
        return reg

    try:
        yield factory
    finally:
        for reg in started:
            reg.stop()


@pytest.fixture
def registry_plain() -> Iterator[RegistryServer]:
    with running_registry(Mode.PLAIN) as reg:
        yield reg


@pytest.fixture
def registry_basic() -> Iterator[RegistryServer]:
    with running_registry(Mode.BASIC) as reg:
        yield reg


@pytest.fixture
def registry_tls() -> Iterator[RegistryServer]:
    with running_registry(Mode.TLS) as reg:
        yield reg


@pytest.fixture
def registry_token() -> Iterator[RegistryServer]:
    with running_registry(Mode.TOKEN) as reg:
        yield reg


@pytest.fixture(params=list(Mode), ids=[m.value for m in Mode])
def registry(request: pytest.FixtureRequest) -> Iterator[RegistryServer]:
    """Each mode in turn: tests that must hold against every kind of registry."""
    with running_registry(request.param) as reg:
        yield reg
