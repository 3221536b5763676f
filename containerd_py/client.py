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
import importlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO

import grpc
from google.protobuf import any_pb2, field_mask_pb2

from containerd_py import errdefs
from containerd_py.config import DEFAULT_ADDRESS, DEFAULT_MAX_MESSAGE, grpc_target
from containerd_py.namespaces import DEFAULT as DEFAULT_NAMESPACE
from containerd_py.namespaces import METADATA_KEY

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from containerd_py.api.services.containers.v1 import containers_pb2, containers_pb2_grpc
    from containerd_py.api.services.content.v1 import content_pb2, content_pb2_grpc
    from containerd_py.api.services.events.v1 import events_pb2, events_pb2_grpc
    from containerd_py.api.services.images.v1 import images_pb2, images_pb2_grpc
    from containerd_py.api.services.introspection.v1 import (
        introspection_pb2,
        introspection_pb2_grpc,
    )
    from containerd_py.api.services.leases.v1 import leases_pb2, leases_pb2_grpc
    from containerd_py.api.services.namespaces.v1 import namespaces_pb2, namespaces_pb2_grpc
    from containerd_py.api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
    from containerd_py.api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
    from containerd_py.api.services.transfer.v1 import transfer_pb2, transfer_pb2_grpc
    from containerd_py.api.services.version.v1 import version_pb2, version_pb2_grpc
    from containerd_py.api.types.v1 import descriptor_pb2, platform_pb2
    from containerd_py.api.types.v1.event_pb2 import Envelope
    from containerd_py.unpack import RootFS


class _Generated:
    """A generated module, imported when first used. One CLI process per command makes the
    imports part of every command's cost: `pyctr version` needs 2 of the 10 services."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # found directly from now on
        return value


if not TYPE_CHECKING:
    _API = "containerd_py.api"
    containers_pb2 = _Generated(f"{_API}.services.containers.v1.containers_pb2")
    containers_pb2_grpc = _Generated(f"{_API}.services.containers.v1.containers_pb2_grpc")
    content_pb2 = _Generated(f"{_API}.services.content.v1.content_pb2")
    content_pb2_grpc = _Generated(f"{_API}.services.content.v1.content_pb2_grpc")
    events_pb2 = _Generated(f"{_API}.services.events.v1.events_pb2")
    events_pb2_grpc = _Generated(f"{_API}.services.events.v1.events_pb2_grpc")
    images_pb2 = _Generated(f"{_API}.services.images.v1.images_pb2")
    images_pb2_grpc = _Generated(f"{_API}.services.images.v1.images_pb2_grpc")
    introspection_pb2 = _Generated(f"{_API}.services.introspection.v1.introspection_pb2")
    introspection_pb2_grpc = _Generated(f"{_API}.services.introspection.v1.introspection_pb2_grpc")
    leases_pb2 = _Generated(f"{_API}.services.leases.v1.leases_pb2")
    leases_pb2_grpc = _Generated(f"{_API}.services.leases.v1.leases_pb2_grpc")
    namespaces_pb2 = _Generated(f"{_API}.services.namespaces.v1.namespaces_pb2")
    namespaces_pb2_grpc = _Generated(f"{_API}.services.namespaces.v1.namespaces_pb2_grpc")
    snapshots_pb2 = _Generated(f"{_API}.services.snapshots.v1.snapshots_pb2")
    snapshots_pb2_grpc = _Generated(f"{_API}.services.snapshots.v1.snapshots_pb2_grpc")
    tasks_pb2 = _Generated(f"{_API}.services.tasks.v1.tasks_pb2")
    tasks_pb2_grpc = _Generated(f"{_API}.services.tasks.v1.tasks_pb2_grpc")
    transfer_pb2 = _Generated(f"{_API}.services.transfer.v1.transfer_pb2")
    transfer_pb2_grpc = _Generated(f"{_API}.services.transfer.v1.transfer_pb2_grpc")
    version_pb2 = _Generated(f"{_API}.services.version.v1.version_pb2")
    version_pb2_grpc = _Generated(f"{_API}.services.version.v1.version_pb2_grpc")
    descriptor_pb2 = _Generated(f"{_API}.types.v1.descriptor_pb2")
    platform_pb2 = _Generated(f"{_API}.types.v1.platform_pb2")

DEFAULT_TIMEOUT = 10.0
# Imports and exports move whole archives: their deadline is not the one of a quick call.
TRANSFER_TIMEOUT = 3600.0
# The daemon's `containerd-lease` header (containerd_py.services.leases).
LEASE_METADATA_KEY = "containerd-lease"
# The OCI runtime a container runs with unless told otherwise.
DEFAULT_RUNTIME = "pyrunc"
SNAPSHOTTER_PLUGIN = "io.pycontainerd.snapshotter.v1"
SPEC_TYPE_URL = "types.pycontainerd/opencontainers/runtime-spec/1/Spec"
_CHUNK = 1 << 20
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
        # A service may say why (Images.Pull: "registry support arrives with ...").
        why = f": {details}" if details and details != "Method not found!" else ""
        return errdefs.PyContainerdError(
            f"pycontainerd at {address} does not implement {what}{why}"
        )
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
        from containerd_py.events import topics  # noqa: F401  (registers every payload type)
        from containerd_py.events.exchange import unpack

        return unpack(self.event)

    def payload_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (proto field names); unknown types as type+bytes."""
        msg = self.payload()
        if msg is None:
            return {
                "type_url": self.event.type_url,
                "value": base64.b64encode(self.event.value).decode(),
            }
        from google.protobuf import json_format

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
        lease: str | None = None,
        _channel: grpc.Channel | None = None,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        # Sent as `containerd-lease`: what the calls create belongs to this lease.
        self.lease = lease
        self._owns_channel = _channel is None
        self.channel = _channel or grpc.insecure_channel(
            grpc_target(address),
            options=[
                ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE),
                ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE),
            ],
        )

    # The stubs, each made (and its service's modules imported) on first use.

    @cached_property
    def _version(self) -> Any:
        return version_pb2_grpc.VersionStub(self.channel)

    @cached_property
    def _introspection(self) -> Any:
        return introspection_pb2_grpc.IntrospectionStub(self.channel)

    @cached_property
    def _namespaces(self) -> Any:
        return namespaces_pb2_grpc.NamespacesStub(self.channel)

    @cached_property
    def _events(self) -> Any:
        return events_pb2_grpc.EventsStub(self.channel)

    @cached_property
    def _images(self) -> Any:
        return images_pb2_grpc.ImagesStub(self.channel)

    @cached_property
    def _content(self) -> Any:
        return content_pb2_grpc.ContentStub(self.channel)

    @cached_property
    def _snapshots(self) -> Any:
        return snapshots_pb2_grpc.SnapshotsStub(self.channel)

    @cached_property
    def _leases(self) -> Any:
        return leases_pb2_grpc.LeasesStub(self.channel)

    @cached_property
    def _containers(self) -> Any:
        return containers_pb2_grpc.ContainersStub(self.channel)

    @cached_property
    def _tasks(self) -> Any:
        return tasks_pb2_grpc.TasksStub(self.channel)

    @cached_property
    def _transfer(self) -> Any:
        return transfer_pb2_grpc.TransferStub(self.channel)

    def with_namespace(self, namespace: str) -> Client:
        """A client for another namespace over the same connection."""
        return Client(self.address, namespace, self.timeout, _channel=self.channel)

    def with_lease(self, lease: str | None) -> Client:
        """A client whose calls create objects under `lease` (same connection)."""
        return Client(
            self.address, self.namespace, self.timeout, lease=lease, _channel=self.channel
        )

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        if self.lease:
            return ((METADATA_KEY, self.namespace), (LEASE_METADATA_KEY, self.lease))
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

    # -- images, content, snapshots, leases, containers ---------------------------------

    def stream(
        self, method: Any, request: Message, *, timeout: float | None = None
    ) -> Iterator[Any]:
        """Invoke a server-streaming stub method; yields its messages, errdefs errors."""
        try:
            yield from method(
                request,
                metadata=self.metadata,
                timeout=self.timeout if timeout is None else timeout,
            )
        except grpc.RpcError as e:
            raise translate(e, self.address, _method_name(method)) from None

    def images(self) -> ImageService:
        return ImageService(self)

    def content(self) -> ContentService:
        return ContentService(self)

    def snapshots(self, snapshotter: str = "") -> SnapshotService:
        """Snapshots of `snapshotter` ("" is the daemon's default)."""
        return SnapshotService(self, snapshotter)

    def leases(self) -> LeaseService:
        return LeaseService(self)

    def tasks(self) -> TaskService:
        return TaskService(self)

    def containers(self) -> ContainerService:
        return ContainerService(self)

    def transfer(self) -> TransferService:
        """Pulls from and pushes to registries, done by the daemon."""
        return TransferService(self)

    @contextmanager
    def temporary_lease(self, ttl: timedelta = timedelta(hours=1)) -> Iterator[Client]:
        """A client under a fresh lease that expires by itself after `ttl` (if this
        process dies first), deleted when the block ends: what the block creates is safe
        from the garbage collector until something else refers to it."""
        expire = (datetime.now(UTC) + ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
        lease = self.leases().create(labels={"containerd.io/gc.expire": expire})
        try:
            yield self.with_lease(lease.id)
        finally:
            self.leases().delete(lease.id)

    def snapshotter_name(self, requested: str = "") -> str:
        """The daemon's name for a snapshotter ("" → its default, "overlayfs" → overlay)."""
        loaded = self.plugins(f"type=={SNAPSHOTTER_PLUGIN}")
        names = {p.id for p in loaded}
        if not requested:
            default = [p.id for p in loaded if p.exports.get("default") == "true"]
            if not default:
                raise errdefs.FailedPrecondition("pycontainerd has no default snapshotter")
            return default[0]
        if requested in names:
            return requested
        if requested == "overlayfs" and "overlay" in names:
            return "overlay"
        raise errdefs.InvalidArgument(
            f"snapshotter {requested!r} is not loaded (loaded: {', '.join(sorted(names))})"
        )

    def image_rootfs(self, image: Image, platform: str | None = None) -> RootFS:
        """The manifest, config and layers of an image for a platform (the host's)."""
        from containerd_py.unpack import resolve_rootfs

        return resolve_rootfs(self.content().fetcher(), _images_descriptor(image.target), platform)

    def image_summary(self, image: Image, platform: str | None = None) -> ImageSummary:
        """Size and platforms of an image, as `ctr images ls` shows them."""
        from containerd_py.images import mediatypes as mt
        from containerd_py.images.manifest import parse_config, parse_index, parse_manifest
        from containerd_py.images.platforms import PlatformMatcher

        fetch = self.content().fetcher()
        matcher = PlatformMatcher(platform)
        size = 0
        found: set[str] = set()

        def walk(desc: Any, top: bool) -> None:
            nonlocal size
            size += desc.size
            if mt.is_index(desc.media_type):
                for child in parse_index(fetch(desc), desc.media_type).manifests:
                    if child.platform is not None and top:
                        found.add(str(child.platform))
                    if matcher.matches(child.platform):
                        walk(child, False)
            elif mt.is_manifest(desc.media_type):
                m = parse_manifest(fetch(desc), desc.media_type)
                if top:
                    cfg = parse_config(fetch(m.config))
                    found.add(str(cfg.platform))
                size += m.config.size + sum(layer.size for layer in m.layers)

        walk(_images_descriptor(image.target), True)
        return ImageSummary(size, sorted(found))

    def new_container(
        self,
        container_id: str,
        image_name: str,
        *,
        snapshotter: str = "",
        labels: Mapping[str, str] | None = None,
        runtime: str = DEFAULT_RUNTIME,
        args: Sequence[str] | None = None,
        env: Sequence[str] = (),
        terminal: bool = False,
        spec_opts: Sequence[SpecOpt] = (),
    ) -> Container:
        """A container record for an unpacked image (containerd's `NewContainer` with
        `WithNewSnapshot` and `WithImageConfig`): an active snapshot `container_id` on the
        image's top layer, and a spec from the image config and our default spec, then
        changed by each of `spec_opts` in turn (`with_cgroup`, `with_memory_limit`...).

        Made under a temporary lease, so a collection cannot take the snapshot before the
        record refers to it; an error leaves neither behind.
        """
        from containerd_py.oci_spec import PasswdLookup, build_spec, find_files

        image = self.images().get(image_name)
        rootfs = self.image_rootfs(image)
        name = self.snapshotter_name(snapshotter)
        chain = rootfs.chain_id
        try:
            self.snapshots(name).stat(chain)
        except errdefs.NotFound:
            raise errdefs.FailedPrecondition(
                f"image {image_name} is not unpacked into snapshotter {name}"
                " (import it again without --no-unpack)"
            ) from None
        content = self.content()

        def lookup() -> PasswdLookup:
            layers = [content.opener(d.digest) for d in reversed(rootfs.layers)]
            files = find_files(layers, ["etc/passwd", "etc/group"])
            return PasswdLookup(files.get("etc/passwd", ""), files.get("etc/group", ""))

        spec = build_spec(
            rootfs.image_config,
            container_id=container_id,
            namespace=self.namespace,
            args=args,
            env=env,
            terminal=terminal,
            lookup=lookup,
        )
        for opt in spec_opts:
            opt(spec)
        record = Container(
            id=container_id,
            image=image.name,
            runtime=runtime,
            spec=json.dumps(spec, indent=2).encode(),
            snapshotter=name,
            snapshot_key=container_id,
            labels=dict(labels or {}),
        )
        with self.temporary_lease() as leased:
            leased.snapshots(name).prepare(container_id, chain)
            try:
                return leased.containers().create(record)
            except BaseException:
                with suppress(errdefs.PyContainerdError):
                    self.snapshots(name).remove(container_id)
                raise

    def delete_container(self, container_id: str, *, cleanup_snapshot: bool = True) -> None:
        """Delete a container record and (by default) its snapshot."""
        container = self.containers().get(container_id)
        self.containers().delete(container_id)
        if cleanup_snapshot and container.snapshotter and container.snapshot_key:
            # The collector the delete scheduled may get there first: NotFound is fine.
            with suppress(errdefs.NotFound):
                self.snapshots(container.snapshotter).remove(container.snapshot_key)


# A change to a container's spec while it is made (containerd's oci.SpecOpts).
SpecOpt = Callable[[dict[str, Any]], None]


def with_cgroup(path: str) -> SpecOpt:
    """The task's cgroup path (linux.cgroupsPath); "" leaves it to the runtime's default."""

    def opt(spec: dict[str, Any]) -> None:
        linux = spec.setdefault("linux", {})
        if path:
            linux["cgroupsPath"] = path
        else:
            linux.pop("cgroupsPath", None)

    return opt


def with_memory_limit(limit: int) -> SpecOpt:
    """The task's memory limit in bytes (linux.resources.memory.limit)."""

    def opt(spec: dict[str, Any]) -> None:
        resources = spec.setdefault("linux", {}).setdefault("resources", {})
        resources.setdefault("memory", {})["limit"] = limit

    return opt


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


# -- images, content, snapshots, leases, containers: results ----------------------------


def _time(ts: Any) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Image:
    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ImageSummary:
    size: int  # the bytes of the blobs of the chosen platform, as `ctr images ls`
    platforms: list[str]


@dataclass(frozen=True, slots=True)
class ContentInfo:
    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestStatus:
    ref: str
    offset: int
    total: int
    expected: str
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    kind: str  # "View", "Active" or "Committed", as containerd spells them
    parent: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    size: int
    inodes: int


@dataclass(frozen=True, slots=True)
class Mount:
    type: str
    source: str
    options: tuple[str, ...] = ()
    target: str = ""


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    created_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeaseResource:
    id: str
    type: str  # "content", "ingests", "images", "snapshots/<snapshotter>"


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    image: str = ""
    runtime: str = DEFAULT_RUNTIME
    runtime_options: any_pb2.Any | None = None
    spec: bytes | None = None  # config.json bytes
    snapshotter: str = ""
    snapshot_key: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, any_pb2.Any] = field(default_factory=dict)
    sandbox: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def spec_dict(self) -> dict[str, Any] | None:
        return None if self.spec is None else json.loads(self.spec)


def _kind_name(kind: int) -> str:
    """A snapshot kind as containerd spells it (the proto module is loaded by now)."""
    names = {
        snapshots_pb2.KIND_VIEW: "View",
        snapshots_pb2.KIND_ACTIVE: "Active",
        snapshots_pb2.KIND_COMMITTED: "Committed",
    }
    return names.get(kind, "Unknown")


def _descriptor(d: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))


def _descriptor_pb(d: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations)
    )


def _images_descriptor(d: Descriptor) -> Any:
    from containerd_py.images.manifest import Descriptor as OCIDescriptor

    return OCIDescriptor(d.media_type, d.digest, d.size, dict(d.annotations))


def _image(i: images_pb2.Image) -> Image:
    return Image(
        i.name, _descriptor(i.target), dict(i.labels), _time(i.created_at), _time(i.updated_at)
    )


def _content_info(i: content_pb2.Info) -> ContentInfo:
    return ContentInfo(i.digest, i.size, _time(i.created_at), _time(i.updated_at), dict(i.labels))


def _status(s: content_pb2.Status) -> IngestStatus:
    return IngestStatus(
        s.ref, s.offset, s.total, s.expected, _time(s.started_at), _time(s.updated_at)
    )


def _snapshot(i: snapshots_pb2.Info) -> SnapshotInfo:
    return SnapshotInfo(
        i.name,
        _kind_name(i.kind),
        i.parent,
        dict(i.labels),
        _time(i.created_at),
        _time(i.updated_at),
    )


def _mount(m: Any) -> Mount:
    return Mount(m.type, m.source, tuple(m.options), m.target)


def _container(c: containers_pb2.Container) -> Container:
    return Container(
        id=c.id,
        image=c.image,
        runtime=c.runtime.name,
        runtime_options=c.runtime.options if c.runtime.HasField("options") else None,
        spec=c.spec.value if c.HasField("spec") else None,
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        labels=dict(c.labels),
        extensions=dict(c.extensions),
        sandbox=c.sandbox,
        created_at=_time(c.created_at),
        updated_at=_time(c.updated_at),
    )


def _container_pb(c: Container) -> containers_pb2.Container:
    out = containers_pb2.Container(
        id=c.id,
        image=c.image,
        runtime=containers_pb2.Container.Runtime(name=c.runtime, options=c.runtime_options),
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        labels=dict(c.labels),
        extensions=dict(c.extensions),
        sandbox=c.sandbox,
    )
    if c.spec is not None:
        out.spec.CopyFrom(any_pb2.Any(type_url=SPEC_TYPE_URL, value=c.spec))
    return out


def _platform_pb(text: str | None) -> platform_pb2.Platform | None:
    if not text:
        return None
    from containerd_py.images.platforms import parse_platform

    p = parse_platform(text)
    return platform_pb2.Platform(os=p.os, architecture=p.architecture, variant=p.variant)


def _mask(paths: Sequence[str] | None) -> field_mask_pb2.FieldMask | None:
    return field_mask_pb2.FieldMask(paths=list(paths)) if paths else None


# -- images, content, snapshots, leases, containers: services ---------------------------


class ImageService:
    """Image records, and archive import/export (containerd's image store + transfer)."""

    def __init__(self, client: Client) -> None:
        self._c = client
        self._stub = client._images

    def list(self, *filters: str) -> list[Image]:
        r = self._c.call(self._stub.List, images_pb2.ListRequest(filters=filters))
        return [_image(i) for i in r.images]

    def get(self, name: str) -> Image:
        return _image(self._c.call(self._stub.Get, images_pb2.GetRequest(name=name)).image)

    def create(
        self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image:
        img = images_pb2.Image(name=name, target=_descriptor_pb(target), labels=dict(labels or {}))
        return _image(self._c.call(self._stub.Create, images_pb2.CreateRequest(image=img)).image)

    def update(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        target: Descriptor | None = None,
        paths: Sequence[str] | None = None,
    ) -> Image:
        img = images_pb2.Image(name=name, labels=dict(labels or {}))
        if target is not None:
            img.target.CopyFrom(_descriptor_pb(target))
        req = images_pb2.UpdateRequest(image=img, update_mask=_mask(paths))
        return _image(self._c.call(self._stub.Update, req).image)

    def tag(self, source: str, target: str) -> Image:
        """A new name for an image's target (replacing what `target` pointed at)."""
        src = self.get(source)
        try:
            return self.create(target, src.target, src.labels)
        except errdefs.AlreadyExists:
            return self.update(target, target=src.target, paths=["target"])

    def delete(self, name: str, *, sync: bool = False, target_digest: str = "") -> None:
        req = images_pb2.DeleteRequest(name=name, sync=sync, target_digest=target_digest)
        self._c.call(self._stub.Delete, req, timeout=max(self._c.timeout, 60) if sync else None)

    def import_archive(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        daemon_path: bool = False,
        base_name: str = "",
        unpack: bool = True,
        snapshotter: str = "",
        labels: Mapping[str, str] | None = None,
        platform: str | None = None,
        all_platforms: bool = False,
    ) -> list[Image]:
        """Import an OCI layout tar or a docker-save tar. A path is read here and sent,
        unless `daemon_path` (then the daemon opens it itself)."""
        options = images_pb2.ImportOptions(
            unpack=unpack,
            snapshotter=snapshotter,
            base_name=base_name,
            labels=dict(labels or {}),
            all_platforms=all_platforms,
            platform=_platform_pb(platform),
        )
        if daemon_path:
            options.path = os.path.abspath(os.fspath(source))  # type: ignore[arg-type]

        def requests() -> Iterator[images_pb2.ImportRequest]:
            yield images_pb2.ImportRequest(options=options)
            if daemon_path:
                return
            if isinstance(source, str | os.PathLike):
                with open(source, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        yield images_pb2.ImportRequest(data=chunk)
            else:
                while chunk := source.read(_CHUNK):
                    yield images_pb2.ImportRequest(data=chunk)

        if not daemon_path and isinstance(source, str | os.PathLike):
            try:
                os.stat(source)  # a missing file is the user's error, not the daemon's
            except OSError as e:
                raise errdefs.InvalidArgument(
                    f"cannot read {os.fspath(source)}: {e.strerror}"
                ) from None
        try:
            r = self._stub.Import(requests(), metadata=self._c.metadata, timeout=TRANSFER_TIMEOUT)
        except grpc.RpcError as e:
            raise translate(e, self._c.address, "Import") from None
        return [_image(i) for i in r.images]

    def export(
        self,
        names: Sequence[str],
        out: str | os.PathLike[str] | BinaryIO,
        *,
        format: str = "oci",
        daemon_path: bool = False,
        platform: str | None = None,
        all_platforms: bool = False,
    ) -> int:
        """Write images as an OCI layout tar ("oci") or a docker-save tar ("docker") to a
        local path (whole or not at all), a stream, or with `daemon_path` a path the daemon
        writes itself. Returns the archive's size."""
        req = images_pb2.ExportRequest(
            names=list(names),
            format=format,
            all_platforms=all_platforms,
            platform=_platform_pb(platform),
        )
        if daemon_path:
            req.path = os.path.abspath(os.fspath(out))  # type: ignore[arg-type]
            answers = list(self._c.stream(self._stub.Export, req, timeout=TRANSFER_TIMEOUT))
            return answers[-1].size if answers else 0
        if not isinstance(out, str | os.PathLike):
            return self._receive(req, out)
        path = os.path.abspath(os.fspath(out))
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as f:
                size = self._receive(req, f)  # type: ignore[arg-type]
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return size

    def _receive(self, req: images_pb2.ExportRequest, out: BinaryIO) -> int:
        size = 0
        for r in self._c.stream(self._stub.Export, req, timeout=TRANSFER_TIMEOUT):
            if r.data:
                out.write(r.data)
                size += len(r.data)
        return size


class ContentService:
    """Blobs by digest and the ingests that write them."""

    def __init__(self, client: Client) -> None:
        self._c = client
        self._stub = client._content

    def info(self, digest: str) -> ContentInfo:
        r = self._c.call(self._stub.Info, content_pb2.InfoRequest(digest=digest))
        return _content_info(r.info)

    def list(self, *filters: str) -> list[ContentInfo]:
        req = content_pb2.ListRequest(filters=filters)
        return [_content_info(i) for r in self._c.stream(self._stub.List, req) for i in r.info]

    def update_labels(
        self, digest: str, labels: Mapping[str, str], paths: Sequence[str] | None = None
    ) -> ContentInfo:
        req = content_pb2.UpdateRequest(
            info=content_pb2.Info(digest=digest, labels=dict(labels)), update_mask=_mask(paths)
        )
        return _content_info(self._c.call(self._stub.Update, req).info)

    def delete(self, digest: str) -> None:
        self._c.call(self._stub.Delete, content_pb2.DeleteRequest(digest=digest))

    def chunks(self, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        req = content_pb2.ReadRequest(digest=digest, offset=offset, size=size)
        for r in self._c.stream(self._stub.Read, req, timeout=TRANSFER_TIMEOUT):
            yield r.data

    def read(self, digest: str, offset: int = 0, size: int = 0) -> bytes:
        return b"".join(self.chunks(digest, offset, size))

    def opener(self, digest: str) -> Any:
        """A function opening the blob as a stream (for readers that want a file)."""

        def open_blob() -> BinaryIO:
            return io.BufferedReader(_ChunkReader(self.chunks(digest)), _CHUNK)  # type: ignore[return-value]

        return open_blob

    def fetcher(self) -> Any:
        """Verified bytes of a (small) blob by descriptor, for manifest walking."""
        from containerd_py.images.digests import sha256_digest
        from containerd_py.images.errors import CorruptBlobError
        from containerd_py.images.manifest import MAX_CONFIG_SIZE

        def fetch(desc: Any) -> bytes:
            if desc.size > MAX_CONFIG_SIZE:
                raise CorruptBlobError(f"{desc.digest}: {desc.size} bytes is too large to read")
            data = self.read(desc.digest)
            if len(data) != desc.size or sha256_digest(data) != desc.digest:
                raise CorruptBlobError(f"{desc.digest}: content does not match its descriptor")
            return data

        return fetch

    def write(
        self,
        ref: str,
        data: bytes,
        *,
        expected: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Write a whole blob; returns its digest."""

        def requests() -> Iterator[content_pb2.WriteRequest]:
            yield content_pb2.WriteRequest(
                action=content_pb2.WRITE_ACTION_STAT, ref=ref, total=len(data), expected=expected
            )
            for off in range(0, len(data), _CHUNK):
                yield content_pb2.WriteRequest(
                    action=content_pb2.WRITE_ACTION_WRITE,
                    ref=ref,
                    offset=off,
                    data=data[off : off + _CHUNK],
                )
            yield content_pb2.WriteRequest(
                action=content_pb2.WRITE_ACTION_COMMIT,
                ref=ref,
                offset=len(data),
                total=len(data),
                expected=expected,
                labels=dict(labels or {}),
            )

        try:
            answers = list(
                self._stub.Write(requests(), metadata=self._c.metadata, timeout=TRANSFER_TIMEOUT)
            )
        except grpc.RpcError as e:
            raise translate(e, self._c.address, "Write") from None
        return answers[-1].digest if answers else ""

    def status(self, ref: str) -> IngestStatus:
        return _status(self._c.call(self._stub.Status, content_pb2.StatusRequest(ref=ref)).status)

    def statuses(self, *filters: str) -> list[IngestStatus]:
        req = content_pb2.ListStatusesRequest(filters=filters)
        return [_status(s) for s in self._c.call(self._stub.ListStatuses, req).statuses]

    def abort(self, ref: str) -> None:
        self._c.call(self._stub.Abort, content_pb2.AbortRequest(ref=ref))


class SnapshotService:
    """The snapshots of one snapshotter ("" means the daemon's default)."""

    def __init__(self, client: Client, snapshotter: str = "") -> None:
        self._c = client
        self._stub = client._snapshots
        self.snapshotter = snapshotter

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        req = snapshots_pb2.PrepareRequest(
            snapshotter=self.snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        return [_mount(m) for m in self._c.call(self._stub.Prepare, req).mounts]

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        req = snapshots_pb2.ViewRequest(
            snapshotter=self.snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        return [_mount(m) for m in self._c.call(self._stub.View, req).mounts]

    def mounts(self, key: str) -> list[Mount]:
        req = snapshots_pb2.MountsRequest(snapshotter=self.snapshotter, key=key)
        return [_mount(m) for m in self._c.call(self._stub.Mounts, req).mounts]

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        req = snapshots_pb2.CommitRequest(
            snapshotter=self.snapshotter, name=name, key=key, labels=dict(labels or {})
        )
        self._c.call(self._stub.Commit, req)

    def remove(self, key: str) -> None:
        self._c.call(
            self._stub.Remove, snapshots_pb2.RemoveRequest(snapshotter=self.snapshotter, key=key)
        )

    def stat(self, key: str) -> SnapshotInfo:
        req = snapshots_pb2.StatRequest(snapshotter=self.snapshotter, key=key)
        return _snapshot(self._c.call(self._stub.Stat, req).info)

    def update(
        self, name: str, labels: Mapping[str, str], paths: Sequence[str] | None = None
    ) -> SnapshotInfo:
        req = snapshots_pb2.UpdateRequest(
            snapshotter=self.snapshotter,
            info=snapshots_pb2.Info(name=name, labels=dict(labels)),
            update_mask=_mask(paths),
        )
        return _snapshot(self._c.call(self._stub.Update, req).info)

    def list(self, *filters: str) -> list[SnapshotInfo]:
        req = snapshots_pb2.ListRequest(snapshotter=self.snapshotter, filters=filters)
        return [_snapshot(i) for r in self._c.stream(self._stub.List, req) for i in r.info]

    def usage(self, key: str) -> Usage:
        req = snapshots_pb2.UsageRequest(snapshotter=self.snapshotter, key=key)
        r = self._c.call(self._stub.Usage, req)
        return Usage(r.size, r.inodes)

    def cleanup(self) -> None:
        self._c.call(self._stub.Cleanup, snapshots_pb2.CleanupRequest(snapshotter=self.snapshotter))


class LeaseService:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._stub = client._leases

    def create(self, lease_id: str = "", labels: Mapping[str, str] | None = None) -> Lease:
        req = leases_pb2.CreateRequest(id=lease_id, labels=dict(labels or {}))
        r = self._c.call(self._stub.Create, req).lease
        return Lease(r.id, _time(r.created_at), dict(r.labels))

    def delete(self, lease_id: str, *, sync: bool = False) -> None:
        req = leases_pb2.DeleteRequest(id=lease_id, sync=sync)
        self._c.call(self._stub.Delete, req, timeout=max(self._c.timeout, 60) if sync else None)

    def list(self, *filters: str) -> list[Lease]:
        r = self._c.call(self._stub.List, leases_pb2.ListRequest(filters=filters))
        return [Lease(x.id, _time(x.created_at), dict(x.labels)) for x in r.leases]

    def add_resource(self, lease_id: str, resource: LeaseResource) -> None:
        res = leases_pb2.Resource(id=resource.id, type=resource.type)
        self._c.call(
            self._stub.AddResource, leases_pb2.AddResourceRequest(id=lease_id, resource=res)
        )

    def delete_resource(self, lease_id: str, resource: LeaseResource) -> None:
        res = leases_pb2.Resource(id=resource.id, type=resource.type)
        self._c.call(
            self._stub.DeleteResource, leases_pb2.DeleteResourceRequest(id=lease_id, resource=res)
        )

    def list_resources(self, lease_id: str) -> list[LeaseResource]:
        r = self._c.call(self._stub.ListResources, leases_pb2.ListResourcesRequest(id=lease_id))
        return [LeaseResource(x.id, x.type) for x in r.resources]


class ContainerService:
    """Container records (containerd's containers.Store)."""

    def __init__(self, client: Client) -> None:
        self._c = client
        self._stub = client._containers

    def get(self, container_id: str) -> Container:
        r = self._c.call(self._stub.Get, containers_pb2.GetRequest(id=container_id))
        return _container(r.container)

    def list(self, *filters: str) -> list[Container]:
        r = self._c.call(self._stub.List, containers_pb2.ListRequest(filters=filters))
        return [_container(c) for c in r.containers]

    def create(self, container: Container) -> Container:
        req = containers_pb2.CreateRequest(container=_container_pb(container))
        return _container(self._c.call(self._stub.Create, req).container)

    def update(self, container: Container, paths: Sequence[str] | None = None) -> Container:
        req = containers_pb2.UpdateRequest(
            container=_container_pb(container), update_mask=_mask(paths)
        )
        return _container(self._c.call(self._stub.Update, req).container)

    def delete(self, container_id: str) -> None:
        self._c.call(self._stub.Delete, containers_pb2.DeleteRequest(id=container_id))


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


# -- tasks ---------------------------------------------------------------------------------

_TASK_STATUS = {0: "UNKNOWN", 1: "CREATED", 2: "RUNNING", 3: "STOPPED", 4: "PAUSED", 5: "PAUSING"}
# Sent by the daemon in Attach's headers once the output is subscribed.
ATTACHED_HEADER = "pycontainerd-attached"
PROCESS_SPEC_TYPE_URL = "types.pycontainerd/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.pycontainerd/opencontainers/runtime-spec/1/LinuxResources"


@dataclass(frozen=True)
class TaskProcess:
    container_id: str
    exec_id: str
    pid: int
    status: str  # CREATED, RUNNING, STOPPED, PAUSED...
    exit_status: int
    exited_at: datetime | None


@dataclass(frozen=True)
class ExitStatus:
    status: int
    exited_at: datetime | None
    pid: int = 0


def _exited_at(r: Any) -> datetime | None:
    return _time(r.exited_at) if r.HasField("exited_at") else None


def _process(p: Any) -> TaskProcess:
    return TaskProcess(
        container_id=p.container_id,
        exec_id=p.id,
        pid=p.pid,
        status=_TASK_STATUS.get(p.status, str(p.status)),
        exit_status=p.exit_status,
        exited_at=_exited_at(p),
    )


class Attachment:
    """A live Attach stream: iterate for (stream, bytes) with stream "stdout" or "stderr";
    send stdin, close it, resize; close() ends the stream."""

    _END = object()

    def __init__(self, client: Client, start: Any) -> None:
        import queue

        self._q: queue.Queue[Any] = queue.Queue()
        self._q.put(tasks_pb2.AttachRequest(start=start))
        self._address = client.address
        self._call = client._tasks.Attach(self._requests(), metadata=client.metadata)
        try:
            # The headers come once the shim has subscribed to the output: from then on
            # nothing the process writes is missed, so the caller may start it.
            headers = dict(self._call.initial_metadata() or ())
            # Without the daemon's "attached" header the call has failed (or is failing):
            # its status, not an empty stream, is the answer.
            if ATTACHED_HEADER not in headers and self._call.code() is not grpc.StatusCode.OK:
                raise self._call
        except grpc.RpcError as e:
            raise translate(e, self._address, "Attach") from None

    def _requests(self) -> Iterator[Any]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            yield item

    def send(self, data: bytes) -> None:
        self._q.put(tasks_pb2.AttachRequest(stdin=data))

    def close_stdin(self) -> None:
        self._q.put(tasks_pb2.AttachRequest(close_stdin=True))

    def resize(self, width: int, height: int) -> None:
        from containerd_py.api.types.v1 import io_pb2

        size = io_pb2.ConsoleSize(width=width, height=height)
        self._q.put(tasks_pb2.AttachRequest(resize=size))

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        try:
            for r in self._call:
                yield ("stderr" if r.stream == 3 else "stdout"), r.data
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.CANCELLED:
                return
            raise translate(e, self._address, "Attach") from None

    def close(self) -> None:
        self._q.put(self._END)
        self._call.cancel()


class TaskService:
    """Tasks: the running side of containers (containerd's task API, flattened)."""

    def __init__(self, client: Client) -> None:
        self._c = client
        self._stub = client._tasks

    def create(
        self,
        container_id: str,
        *,
        terminal: bool = False,
        open_stdin: bool = False,
        stdin_once: bool = False,
        runtime: str = "",
    ) -> int:
        req = tasks_pb2.CreateRequest(
            container_id=container_id,
            terminal=terminal,
            open_stdin=open_stdin,
            stdin_once=stdin_once,
        )
        if runtime:
            from containerd_py.api.types.v1 import runtime_pb2

            req.options.Pack(
                runtime_pb2.RuntimeOptions(binary_name=runtime),
                type_url_prefix="types.pycontainerd",
            )
        # A shim start and the runtime's create can take a while on a busy host.
        return self._c.call(self._stub.Create, req, timeout=max(self._c.timeout, 120)).pid

    def start(self, container_id: str, exec_id: str = "") -> int:
        req = tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id)
        return self._c.call(self._stub.Start, req, timeout=max(self._c.timeout, 60)).pid

    def wait(
        self, container_id: str, exec_id: str = "", timeout: float | None = None
    ) -> ExitStatus:
        """Block until the process exits (no deadline unless `timeout`)."""
        req = tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id)
        try:
            r = self._stub.Wait(req, metadata=self._c.metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise translate(e, self._c.address, "Wait") from None
        return ExitStatus(r.exit_status, _exited_at(r))

    def kill(
        self, container_id: str, signal: int = 15, exec_id: str = "", all: bool = False
    ) -> None:
        req = tasks_pb2.KillRequest(
            container_id=container_id, exec_id=exec_id, signal=signal, all=all
        )
        self._c.call(self._stub.Kill, req)

    def delete(self, container_id: str) -> ExitStatus:
        req = tasks_pb2.DeleteRequest(container_id=container_id)
        r = self._c.call(self._stub.Delete, req, timeout=max(self._c.timeout, 60))
        return ExitStatus(r.exit_status, _exited_at(r), r.pid)

    def delete_process(self, container_id: str, exec_id: str) -> ExitStatus:
        req = tasks_pb2.DeleteProcessRequest(container_id=container_id, exec_id=exec_id)
        r = self._c.call(self._stub.DeleteProcess, req)
        return ExitStatus(r.exit_status, _exited_at(r), r.pid)

    def get(self, container_id: str, exec_id: str = "") -> TaskProcess:
        req = tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id)
        return _process(self._c.call(self._stub.Get, req).process)

    def list(self, *filters: str) -> list[TaskProcess]:
        r = self._c.call(self._stub.List, tasks_pb2.ListRequest(filters=filters))
        return [_process(p) for p in r.tasks]

    def exec(
        self,
        container_id: str,
        exec_id: str,
        process: Mapping[str, Any],
        *,
        terminal: bool = False,
        open_stdin: bool = False,
    ) -> None:
        spec = any_pb2.Any(type_url=PROCESS_SPEC_TYPE_URL, value=json.dumps(dict(process)).encode())
        req = tasks_pb2.ExecRequest(
            container_id=container_id,
            exec_id=exec_id,
            terminal=terminal,
            spec=spec,
            open_stdin=open_stdin,
        )
        self._c.call(self._stub.Exec, req, timeout=max(self._c.timeout, 60))

    def pids(self, container_id: str) -> list[tuple[int, str]]:
        """(pid, exec id or "") of every process in the task."""
        from containerd_py.api.types.v1 import task_pb2 as types_pb2

        r = self._c.call(self._stub.ListPids, tasks_pb2.ListPidsRequest(container_id=container_id))
        out = []
        for p in r.processes:
            details = types_pb2.ProcessDetails()
            if p.HasField("info") and p.info.value:
                details.ParseFromString(p.info.value)
            out.append((p.pid, details.exec_id))
        return out

    def update(self, container_id: str, resources: Mapping[str, Any]) -> None:
        """Change a running task's resources (an OCI LinuxResources object)."""
        packed = any_pb2.Any(
            type_url=RESOURCES_TYPE_URL, value=json.dumps(dict(resources)).encode()
        )
        req = tasks_pb2.UpdateRequest(container_id=container_id, resources=packed)
        self._c.call(self._stub.Update, req)

    def pause(self, container_id: str) -> None:
        self._c.call(self._stub.Pause, tasks_pb2.PauseRequest(container_id=container_id))

    def resume(self, container_id: str) -> None:
        self._c.call(self._stub.Resume, tasks_pb2.ResumeRequest(container_id=container_id))

    def resize(self, container_id: str, width: int, height: int, exec_id: str = "") -> None:
        req = tasks_pb2.ResizePtyRequest(
            container_id=container_id, exec_id=exec_id, width=width, height=height
        )
        self._c.call(self._stub.ResizePty, req)

    def close_io(self, container_id: str, exec_id: str = "") -> None:
        req = tasks_pb2.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True)
        self._c.call(self._stub.CloseIO, req)

    def metrics(self, *filters: str) -> dict[str, Any]:
        """Container id -> its pycontainerd.types.v1.Stats."""
        from containerd_py.api.types.v1 import metrics_pb2

        r = self._c.call(self._stub.Metrics, tasks_pb2.MetricsRequest(filters=filters))
        out: dict[str, Any] = {}
        for m in r.metrics:
            stats = metrics_pb2.Stats()
            m.data.Unpack(stats)
            out[m.id] = stats
        return out

    def attach(
        self,
        container_id: str,
        exec_id: str = "",
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
    ) -> Attachment:
        start = tasks_pb2.AttachStart(
            container_id=container_id, exec_id=exec_id, stdin=stdin, stdout=stdout, stderr=stderr
        )
        return Attachment(self._c, start)

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        stdout: bool = False,
        stderr: bool = False,
    ) -> Iterator[tuple[str, datetime, bytes]]:
        """(stream, time, data) of each line of the container's log, oldest first."""
        req = tasks_pb2.LogsRequest(
            container_id=container_id, follow=follow, stdout=stdout, stderr=stderr
        )
        if tail is not None:
            req.tail = tail
        call = self._stub.Logs(req, metadata=self._c.metadata)
        try:
            for r in call:
                for e in r.entries:
                    yield ("stderr" if e.stream == 3 else "stdout"), _time(e.time), e.data
        except grpc.RpcError as e:
            raise translate(e, self._c.address, "Logs") from None
        finally:
            call.cancel()


# -- registries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlobProgress:
    descriptor: Descriptor
    kind: str  # "index", "manifest", "config", "layer"
    status: str  # "waiting", "transferring", "done", "exists", "mounted", "failed"
    offset: int


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """One message of a pull or push: the whole state so far."""

    ref: str
    status: str
    blobs: tuple[BlobProgress, ...]
    done: bool = False
    name: str = ""  # pull, with done: the image recorded
    target: Descriptor | None = None  # with done: the image's (pull) or pushed (push) root


def _enum_word(enum: Any, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).lower()


def _transfer_progress(r: Any) -> TransferProgress:
    blobs = tuple(
        BlobProgress(
            _descriptor(b.descriptor),
            _enum_word(transfer_pb2.BlobKind, b.kind, "BLOB_KIND_"),
            _enum_word(transfer_pb2.BlobStatus, b.status, "BLOB_STATUS_"),
            b.offset,
        )
        for b in r.blobs
    )
    target = _descriptor(r.target) if r.HasField("target") else None
    return TransferProgress(r.ref, r.status, blobs, r.done, getattr(r, "name", ""), target)


def _registry_options(
    user: str | None, plain_http: bool, skip_verify: bool
) -> transfer_pb2.RegistryOptions:
    """`user` is USER[:PASSWORD], as ctr's --user takes it."""
    opts = transfer_pb2.RegistryOptions(plain_http=plain_http, skip_verify=skip_verify)
    if user:
        username, _, password = user.partition(":")
        opts.auth.username = username
        opts.auth.password = password
    return opts


class TransferService:
    """Registry pulls and pushes; each yields the progress until the last message (done)."""

    def __init__(self, client: Client) -> None:
        self._c = client
        self._stub = client._transfer

    def pull(
        self,
        ref: str,
        *,
        platforms: Sequence[str] = (),
        all_platforms: bool = False,
        unpack: bool = True,
        snapshotter: str = "",
        user: str | None = None,
        plain_http: bool = False,
        skip_verify: bool = False,
        labels: Mapping[str, str] | None = None,
        max_concurrent_downloads: int = 0,
    ) -> Iterator[TransferProgress]:
        req = transfer_pb2.PullRequest(
            ref=ref,
            platforms=[p for p in (_platform_pb(t) for t in platforms) if p is not None],
            all_platforms=all_platforms,
            unpack=unpack,
            snapshotter=snapshotter,
            registry=_registry_options(user, plain_http, skip_verify),
            labels=dict(labels or {}),
            max_concurrent_downloads=max_concurrent_downloads,
        )
        for r in self._c.stream(self._stub.Pull, req, timeout=TRANSFER_TIMEOUT):
            yield _transfer_progress(r)

    def push(
        self,
        ref: str,
        remote_ref: str = "",
        *,
        platform: str | None = None,
        user: str | None = None,
        plain_http: bool = False,
        skip_verify: bool = False,
        chunk_size: int = 0,
        max_concurrent_uploads: int = 0,
    ) -> Iterator[TransferProgress]:
        req = transfer_pb2.PushRequest(
            ref=ref,
            remote_ref=remote_ref,
            platform=_platform_pb(platform),
            registry=_registry_options(user, plain_http, skip_verify),
            chunk_size=chunk_size,
            max_concurrent_uploads=max_concurrent_uploads,
        )
        for r in self._c.stream(self._stub.Push, req, timeout=TRANSFER_TIMEOUT):
            yield _transfer_progress(r)
