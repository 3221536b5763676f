"""The entry point: `Registry(hosts, credentials).repository("host:port/name")`.

A `Registry` holds what every repository client shares: the host settings, the transport
(per-thread connections) and one `Authorizer` (token cache) per registry host and set of
credentials. Make one per daemon and keep it.
"""

from __future__ import annotations

import threading

from containerd_py.images.reference import Reference, parse_normalized
from containerd_py.remotes.auth import Authorizer
from containerd_py.remotes.credentials import Credentials, CredentialStore
from containerd_py.remotes.hosts import Hosts
from containerd_py.remotes.repository import Repository
from containerd_py.remotes.transport import DEFAULT_TIMEOUT, USER_AGENT, Transport


class Registry:
    def __init__(
        self,
        hosts: Hosts | None = None,
        credentials: CredentialStore | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.hosts = hosts or Hosts()
        self.credentials = credentials or CredentialStore()
        self.transport = Transport(self.hosts, timeout=timeout, user_agent=user_agent)
        self._lock = threading.Lock()
        self._authorizers: dict[tuple[str, Credentials | None], Authorizer] = {}

    def authorizer(self, registry: str, credentials: Credentials | None) -> Authorizer:
        key = (registry, credentials)
        with self._lock:
            auth = self._authorizers.get(key)
            if auth is None:
                auth = self._authorizers[key] = Authorizer(registry, credentials, self.transport)
            return auth

    def repository(
        self,
        name: str | Reference,
        *,
        credentials: Credentials | None = None,
        plain_http: bool = False,
        push: bool = False,
    ) -> Repository:
        """The client for NAME's repository ("host:port/path", "busybox", or a parsed
        Reference; any tag or digest is ignored). CREDENTIALS, when given, win over the
        config file's. PUSH asks for push rights from the start (one token for all)."""
        # A bad name raises InvalidReferenceError, an errdefs.InvalidArgument.
        ref = parse_normalized(name) if isinstance(name, str) else name
        config = self.transport.config(ref.domain, plain_http=plain_http)
        if credentials is None or credentials.empty:
            credentials = self.credentials.for_registry(ref.domain)
        return Repository(
            config,
            ref.path,
            self.transport,
            self.authorizer(ref.domain, credentials),
            push=push,
            plain_http=plain_http,
        )
