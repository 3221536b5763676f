"""Registry authentication: anonymous first, then what the registry's 401 challenge asks.

    request (no Authorization)  ->  401 + WWW-Authenticate
    Basic  realm=...            ->  retry with the user's password (if there is one)
    Bearer realm=,service=,scope=  ->  GET realm?service=S&scope=A&scope=B (Basic creds if any)
                                   or POST realm (grant_type=refresh_token) with an identitytoken
                                ->  {"token"|"access_token", "expires_in"}  ->  retry once

Once a host has challenged, later requests send credentials from the start. Tokens are
cached per (realm, service, scopes) until shortly before they expire; the scopes are the
operation's (`repository:NAME:pull`, `...:pull,push`, plus `repository:FROM:pull` for a
cross-repository mount) joined with any scope the challenge names. One `Authorizer` serves
every repository of a registry for one set of credentials, from any number of threads.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from containerd_py import errdefs
from containerd_py.remotes.challenge import Challenge
from containerd_py.remotes.credentials import Credentials
from containerd_py.remotes.transport import Transport

DEFAULT_EXPIRES_IN = 60
MAX_TOKEN_RESPONSE = 1 << 20
CLIENT_ID = "pycontainerd"


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float


def _pick(challenges: Iterable[Challenge]) -> Challenge | None:
    """Bearer over Basic, as docker does; other schemes are not ours to answer."""
    found = {c.scheme: c for c in challenges if c.scheme in ("bearer", "basic")}
    return found.get("bearer") or found.get("basic")


def challenge_scopes(challenge: Challenge) -> set[str]:
    return set(challenge.params.get("scope", "").split())


class Authorizer:
    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        transport: Transport,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.credentials = credentials if credentials and not credentials.empty else None
        self.transport = transport
        self.clock = clock
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], Token] = {}

    @property
    def user(self) -> str:
        return self.credentials.username if self.credentials else ""

    @property
    def challenge(self) -> Challenge | None:
        with self._lock:
            return self._challenge

    def header(self, scopes: Iterable[str]) -> str | None:
        """The Authorization value for a request needing SCOPES, or None (anonymous)."""
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self.credentials.basic() if self.credentials else None
        return "Bearer " + self.token(challenge, scopes).value

    def challenged(
        self, challenges: Iterable[Challenge], scopes: set[str], sent: str | None
    ) -> bool:
        """A 401 came back for a request that sent SENT; records the challenge and says
        whether one retry can change the outcome. SCOPES grows by the challenge's scope."""
        challenge = _pick(challenges)
        if challenge is None:
            return False
        with self._lock:
            self._challenge = challenge
        if challenge.scheme == "bearer":
            scopes |= challenge_scopes(challenge)
            if sent is not None:
                self._forget(challenge, scopes)
            return True
        basic = self.credentials.basic() if self.credentials else None
        return basic is not None and basic != sent

    def refusal(self, challenges: Iterable[Challenge], where: str, what: str) -> Exception:
        """The error for a request still refused after the retry."""
        challenge = _pick(challenges)
        insufficient = challenge is not None and challenge.params.get("error") in (
            "insufficient_scope",
            "access_denied",
        )
        if self.credentials is None:
            return errdefs.Unauthenticated(
                f"{where}: {what}: authentication required "
                f"(no credentials for {self.registry}, or the repository does not exist)"
            )
        if insufficient:
            scope = challenge.params.get("scope", "") if challenge else ""
            return errdefs.PermissionDenied(
                f"{where}: {what}: access denied for user {self.user!r}"
                + (f" (needs {scope})" if scope else "")
            )
        return errdefs.Unauthenticated(
            f"{where}: {what}: authentication failed for user {self.user!r}"
        )

    # -- tokens ---------------------------------------------------------------------------

    @staticmethod
    def _key(challenge: Challenge, scopes: Iterable[str]) -> tuple[str, str, tuple[str, ...]]:
        return (challenge.realm, challenge.params.get("service", ""), tuple(sorted(set(scopes))))

    def _forget(self, challenge: Challenge, scopes: Iterable[str]) -> None:
        with self._lock:
            self._tokens.pop(self._key(challenge, scopes), None)

    def token(self, challenge: Challenge, scopes: Iterable[str]) -> Token:
        key = self._key(challenge, scopes)
        with self._lock:
            token = self._tokens.get(key)
        if token is not None and token.expires_at > self.clock():
            return token
        # One fetch at a time: threads starting together want the same token.
        with self._fetch_lock:
            with self._lock:
                token = self._tokens.get(key)
            if token is not None and token.expires_at > self.clock():
                return token
            token = self._fetch(challenge, key[2])
            with self._lock:
                self._tokens[key] = token
            return token

    def _fetch(self, challenge: Challenge, scopes: tuple[str, ...]) -> Token:
        realm = challenge.realm
        if not realm:
            raise errdefs.Unauthenticated(f"{self.registry}: bearer challenge without a realm")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise errdefs.Unauthenticated(f"{self.registry}: token realm {realm!r} is not a URL")
        service = challenge.params.get("service", "")
        creds = self.credentials
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": CLIENT_ID,
                "service": service,
                "scope": " ".join(scopes),
            }
            body = urllib.parse.urlencode(form).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            resp = self.transport.request("POST", realm, headers=headers, body=body)
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            sep = "&" if parts.query else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            basic = creds.basic() if creds else None
            resp = self.transport.request("GET", url, auth_header=basic)
        started = self.clock()
        with resp:
            data = resp.read_limited(MAX_TOKEN_RESPONSE, f"token from {realm}")
        if resp.status in (401, 403):
            if creds is None:
                raise errdefs.Unauthenticated(
                    f"token server {parts.netloc} refused anonymous access"
                )
            raise errdefs.Unauthenticated(
                f"authentication failed for user {self.user!r} "
                f"(token server {parts.netloc} answered {resp.status})"
            )
        if resp.status != 200:
            raise errdefs.Unavailable(
                f"{self.registry}: token server {parts.netloc} answered HTTP {resp.status}"
            )
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            doc = None
        value = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise errdefs.Unavailable(
                f"{self.registry}: token server {parts.netloc} answered without a token"
            )
        expires_in = doc.get("expires_in") if isinstance(doc, dict) else None
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            expires_in = DEFAULT_EXPIRES_IN
        # Renew a little early: a token that expires in flight costs a refused request.
        margin = min(10.0, expires_in / 10)
        return Token(value, started + expires_in - margin)
