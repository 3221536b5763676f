"""The namespace of a call: gRPC metadata `containerd-namespace` → a ContextVar.

Every call carries its tenant ("default", "pydocker", "k8s.io") in the metadata, as with
containerd. `NamespaceInterceptor` puts it in a ContextVar for the duration of the
handler; handlers of namespaced services call `current()`, which raises InvalidArgument
"namespace is required" when the caller sent none. Services that are not namespaced
(Version, Introspection, Namespaces, Events.Subscribe) simply never ask, so the
interceptor needs no list of them and a new service cannot forget to be checked: reading
the namespace is the check.

Names follow containerd's identifier rule: alphanumerics joined by single '.', '_' or '-'
(`^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$`), at most 76 characters. So "k8s.io" and
"my-ns_1" are valid; "-a", "a-", "a..b", "a/b" and "" are not. The metadata store applies
the same rule, so what passes here is never refused there.

Threads: grpc runs handlers on a thread pool, so a ContextVar set on one thread (or in
`intercept_service`, which may run elsewhere) would leak into the next call served by that
thread. The wrapper runs each call's behavior, and each step of a response stream, inside
a fresh copy of the context, which is what makes the value per call.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import grpc

from containerd_py.errdefs import InvalidArgument
from containerd_py.interceptors import Behavior, wrap_handler

METADATA_KEY = "containerd-namespace"
DEFAULT = "default"
MAX_LENGTH = 76
_NAME = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "containerd_namespace", default=None
)


def validate(name: str) -> str:
    """The name itself if it is a valid namespace name, else InvalidArgument."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("namespace name must not be empty")
    if len(name) > MAX_LENGTH:
        raise InvalidArgument(f"namespace {name[:20]!r}... is longer than {MAX_LENGTH} characters")
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid namespace name {name!r}: "
            "alphanumerics joined by single '.', '_' or '-' are allowed"
        )
    return name


def get() -> str | None:
    """The namespace of the current call, validated, or None when it sent none (an empty
    value counts as none: it is what a client with an unset namespace sends)."""
    name = _current.get()
    return validate(name) if name else None


def current() -> str:
    """The namespace of the current call; InvalidArgument when missing or invalid."""
    name = get()
    if name is None:
        raise InvalidArgument(
            f"namespace is required: set the {METADATA_KEY!r} gRPC metadata (pyctr -n NAMESPACE)"
        )
    return name


@contextmanager
def using(name: str | None) -> Iterator[None]:
    """Run a block as if in a call for `name` (in-process callers and tests)."""
    token = _current.set(name)
    try:
        yield
    finally:
        _current.reset(token)


def from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The raw namespace value in call metadata (validated later, when it is used)."""
    for key, value in metadata or ():
        if key == METADATA_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class _ContextIterator:
    """Steps an iterator inside a given context (a response stream, one message at a
    time, possibly long after the handler returned it)."""

    def __init__(self, ctx: contextvars.Context, it: Iterator[Any]) -> None:
        self._ctx = ctx
        self._it = it

    def __iter__(self) -> _ContextIterator:
        return self

    def __next__(self) -> Any:
        return self._ctx.run(next, self._it)

    def close(self) -> None:
        # `yield from` calls this when the consumer goes away: let the handler's
        # generator run its finally blocks (e.g. unsubscribe) in its own context.
        close = getattr(self._it, "close", None)
        if close is not None:
            self._ctx.run(close)


def _unary(behavior: Behavior) -> Behavior:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        ctx = contextvars.copy_context()
        ctx.run(_current.set, from_metadata(context.invocation_metadata()))
        return ctx.run(behavior, request, context)

    return call


def _stream(behavior: Behavior) -> Behavior:
    def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        ctx = contextvars.copy_context()
        ctx.run(_current.set, from_metadata(context.invocation_metadata()))
        return _ContextIterator(ctx, ctx.run(lambda: iter(behavior(request, context))))

    return call


class NamespaceInterceptor(grpc.ServerInterceptor):
    """Makes `current()`/`get()` answer with the calling client's namespace."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return wrap_handler(handler, _unary, _stream)
