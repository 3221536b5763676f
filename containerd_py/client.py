"""The high-level pycontainerd client (containerd's `client/`), used by pyctr and the engine.

    with Client("/run/pycontainerd/pycontainerd.sock", namespace="pydocker") as c:
        c.version()
        c.namespaces().create("web", {"team": "a"})
        with c.events('topic~="^/tasks/"') as events:
            for ev in events:
                print(ev.topic, ev.payload())

Every call carries the client's namespace in the `containerd-namespace` metadata and a
deadline (`timeout`). Errors come back as `containerd_py.errdefs` exceptions, the same
class the daemon raised (NotFound, AlreadyExists...), so callers never handle grpc errors;
a daemon that cannot be reached is `ConnectError` (an `errdefs.Unavailable`). Results are
plain dataclasses; the protobuf types stay inside this module (except event payloads,
which are the messages of `containerd_py.api.events.v1`).
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import any_pb2, field_mask_pb2, json_format
from google.protobuf.message import Message

from containerd_py import errdefs
from containerd_py.api.services.events.v1 import events_pb2, events_pb2_grpc
from containerd_py.api.services.introspection.v1 import (
    introspection_pb2,
    introspection_pb2_grpc,
)
from containerd_py.api.services.namespaces.v1 import namespaces_pb2, namespaces_pb2_grpc
from containerd_py.api.services.version.v1 import version_pb2, version_pb2_grpc
from containerd_py.api.types.v1.event_pb2 import Envelope
from containerd_py.config import DEFAULT_ADDRESS
from containerd_py.events import topics  # noqa: F401  (registers every event payload type)
from containerd_py.events.exchange import unpack
from containerd_py.namespaces import DEFAULT as DEFAULT_NAMESPACE
from containerd_py.namespaces import METADATA_KEY

DEFAULT_TIMEOUT = 10.0
# What grpc says when the transport, not the daemon, ended a call with UNAVAILABLE (the
# daemon's own Unavailable errors say what they are about).
_TRANSPORT_FAILURES = ("Socket closed", "Stream removed", "Connection reset", "GOAWAY")


class ConnectError(errdefs.Unavailable):
    """The daemon could not be reached (not running, wrong address, no permission)."""


class DeadlineExceeded(errdefs.PyContainerdError):
    """The daemon did not answer in time."""


def translate(err: grpc.RpcError, address: str, method: str = "") -> errdefs.PyContainerdError:
    """The errdefs exception for a failed call."""
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else None) or str(err)
    if code is grpc.StatusCode.UNAVAILABLE and "failed to connect" in details:
        # grpc's text ends with "... error: No such file or directory": keep the cause.
        reason = details.rsplit("error: ", 1)[-1].strip()
        return ConnectError(f"cannot connect to pycontainerd at {address}: {reason}")
    if code is grpc.StatusCode.UNAVAILABLE and (
        not details.strip() or any(m in details for m in _TRANSPORT_FAILURES)
    ):
        return ConnectError(f"connection to pycontainerd at {address} lost ({details})")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        what = f" to {method}" if method else ""
        return DeadlineExceeded(f"pycontainerd at {address} did not answer{what} in time")
    if code is grpc.StatusCode.UNIMPLEMENTED:
        what = method or "this call"
        return errdefs.PyContainerdError(f"pycontainerd at {address} does not implement {what}")
    return errdefs.from_code_name(code.name if code else "UNKNOWN", details)


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    revision: str


@dataclass(frozen=True, slots=True)
class ServerInfo:
    uuid: str
    pid: int
    pidns: int


@dataclass(frozen=True, slots=True)
class Plugin:
    type: str
    id: str
    requires: tuple[str, ...] = ()
    exports: Mapping[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    timestamp: datetime
    namespace: str
    topic: str
    event: any_pb2.Any

    @classmethod
    def from_envelope(cls, env: Envelope) -> Event:
        return cls(env.timestamp.ToDatetime(tzinfo=UTC), env.namespace, env.topic, env.event)

    def payload(self) -> Message | None:
        """The decoded event (e.g. a `TaskExit`), or None when its type is unknown here."""
        return unpack(self.event)

    def payload_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (proto field names); unknown types as type+bytes."""
        msg = self.payload()
        if msg is None:
            return {
                "type_url": self.event.type_url,
                "value": base64.b64encode(self.event.value).decode(),
            }
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _namespace(ns: namespaces_pb2.Namespace) -> Namespace:
    return Namespace(ns.name, dict(ns.labels))


# -- client -----------------------------------------------------------------------------


class Client:
    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        _channel: grpc.Channel | None = None,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self._owns_channel = _channel is None
        self.channel = _channel or grpc.insecure_channel(
            # grpc's "unix:" target takes the path as is: make it absolute so the cwd
            # never matters.
            "unix:" + os.path.abspath(address),
            options=[
                ("grpc.max_receive_message_length", 16 << 20),
                ("grpc.max_send_message_length", 16 << 20),
            ],
        )
        self._version = version_pb2_grpc.VersionStub(self.channel)
        self._introspection = introspection_pb2_grpc.IntrospectionStub(self.channel)
        self._namespaces = namespaces_pb2_grpc.NamespacesStub(self.channel)
        self._events = events_pb2_grpc.EventsStub(self.channel)

    def with_namespace(self, namespace: str) -> Client:
        """A client for another namespace over the same connection."""
        return Client(self.address, namespace, self.timeout, _channel=self.channel)

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((METADATA_KEY, self.namespace),)

    def call(self, method: Any, request: Message, *, timeout: float | None = None) -> Any:
        """Invoke a unary stub method with the namespace and deadline; errdefs errors.

        Public so that the next services' wrappers (containers, tasks...) share it.
        """
        try:
            return method(
                request,
                metadata=self.metadata,
                timeout=self.timeout if timeout is None else timeout,
            )
        except grpc.RpcError as e:
            raise translate(e, self.address, _method_name(method)) from None

    # -- version and introspection ------------------------------------------------------

    def version(self) -> VersionInfo:
        r = self.call(self._version.Version, version_pb2.VersionRequest())
        return VersionInfo(r.version, r.revision)

    def server(self) -> ServerInfo:
        r = self.call(self._introspection.Server, introspection_pb2.ServerRequest())
        return ServerInfo(r.uuid, r.pid, r.pidns)

    def plugins(self, *filters: str) -> list[Plugin]:
        r = self.call(
            self._introspection.Plugins, introspection_pb2.PluginsRequest(filters=filters)
        )
        return [
            Plugin(
                p.type,
                p.id,
                tuple(p.requires),
                dict(p.exports),
                p.init_error.message if p.HasField("init_error") else "",
            )
            for p in r.plugins
        ]

    # -- namespaces ---------------------------------------------------------------------

    def namespaces(self) -> NamespaceService:
        return NamespaceService(self)

    # -- events -------------------------------------------------------------------------

    def publish(self, topic: str, event: Message) -> None:
        """Publish an event in this client's namespace (the daemon stamps the time)."""
        packed = event if isinstance(event, any_pb2.Any) else _pack(event)
        self.call(self._events.Publish, events_pb2.PublishRequest(topic=topic, event=packed))

    def forward(self, envelope: Envelope) -> None:
        """Deliver an envelope as it is (its namespace and time are kept)."""
        self.call(self._events.Forward, events_pb2.ForwardRequest(envelope=envelope))

    def events(self, *filters: str) -> EventStream:
        """Events from now on matching any filter (all when none), until `close()`.

        Returns once the daemon has registered the subscription, so an event published
        after this call returns is delivered. A bad filter raises InvalidArgument here.
        """
        call = self._events.Subscribe(
            events_pb2.SubscribeRequest(filters=filters), metadata=self.metadata
        )
        stream = EventStream(call, self.address)
        stream._wait_subscribed(self.timeout)
        return stream


class NamespaceService:
    """Namespaces as containerd's `namespaces.Store`: list, get, create, update, delete."""

    def __init__(self, client: Client) -> None:
        self._c = client
        self._stub = client._namespaces

    def list(self, *filters: str) -> list[Namespace]:
        r = self._c.call(self._stub.List, namespaces_pb2.ListRequest(filters=filters))
        return [_namespace(ns) for ns in r.namespaces]

    def get(self, name: str) -> Namespace:
        r = self._c.call(self._stub.Get, namespaces_pb2.GetRequest(name=name))
        return _namespace(r.namespace)

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        ns = namespaces_pb2.Namespace(name=name, labels=dict(labels or {}))
        r = self._c.call(self._stub.Create, namespaces_pb2.CreateRequest(namespace=ns))
        return _namespace(r.namespace)

    def update(
        self, name: str, labels: Mapping[str, str], paths: Sequence[str] | None = None
    ) -> Namespace:
        """Replace the labels, or with paths ("labels.<key>") change only those keys."""
        req = namespaces_pb2.UpdateRequest(
            namespace=namespaces_pb2.Namespace(name=name, labels=dict(labels))
        )
        if paths:
            req.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(paths)))
        r = self._c.call(self._stub.Update, req)
        return _namespace(r.namespace)

    def set_labels(self, name: str, labels: Mapping[str, str]) -> Namespace:
        """Set these labels in one update; an empty value removes the label."""
        kept = {k: v for k, v in labels.items() if v}
        return self.update(name, kept, [f"labels.{k}" for k in labels])

    def delete(self, name: str) -> None:
        self._c.call(self._stub.Delete, namespaces_pb2.DeleteRequest(name=name))


class EventStream:
    """An iterator of `Event`s; `close()` (or leaving the `with`) ends it quietly."""

    def __init__(self, call: Any, address: str) -> None:
        self._call = call
        self._address = address
        self._closed = False

    def _wait_subscribed(self, timeout: float) -> None:
        # initial_metadata() returns with the daemon's confirmation or the end of the call
        # (an error) and has no timeout of its own: a helper thread bounds the wait, so a
        # hung daemon cannot block the caller forever.
        waiter = threading.Thread(target=self._call.initial_metadata, daemon=True)
        waiter.start()
        waiter.join(timeout)
        if waiter.is_alive():
            self.close()
            raise DeadlineExceeded(
                f"pycontainerd at {self._address} did not confirm the subscription in time"
            )
        if self._call.done():
            try:
                code = self._call.code()
            except grpc.RpcError as e:  # pragma: no cover - defensive
                raise translate(e, self._address, "Subscribe") from None
            if code is not grpc.StatusCode.OK:
                raise translate(self._call, self._address, "Subscribe")

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            envelope = next(self._call)
        except grpc.RpcError as e:
            if self._closed or e.code() is grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise translate(e, self._address, "Subscribe") from None
        return Event.from_envelope(envelope)

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pack(event: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(event)
    return packed


def _method_name(method: Any) -> str:
    # Stub attributes are grpc multi-callables whose repr is not helpful; the stubs
    # store the full path as `_method` (bytes).
    name = getattr(method, "_method", b"")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return str(name).rsplit("/", 1)[-1]
