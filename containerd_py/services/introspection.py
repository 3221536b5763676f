"""Introspection service: which daemon this is (a persistent uuid, pid, pid namespace) and
what it is made of (its plugins: every registered service and core component)."""

from __future__ import annotations

import logging
import os
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from containerd_py import filters as flt
from containerd_py.api.services.introspection.v1 import (
    introspection_pb2,
    introspection_pb2_grpc,
)

if TYPE_CHECKING:
    from containerd_py.services import Deps

log = logging.getLogger(__name__)

# Plugin types, reverse-DNS as containerd's ("io.containerd.grpc.v1"...).
GRPC_PLUGIN = "io.pycontainerd.grpc.v1"
EVENT_PLUGIN = "io.pycontainerd.event.v1"
METADATA_PLUGIN = "io.pycontainerd.metadata.v1"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    type: str
    id: str
    requires: tuple[str, ...] = ()
    exports: Mapping[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    # Why it failed to load: (grpc status code number, message); None when it loaded.
    init_error: tuple[int, str] | None = None

    def to_proto(self) -> introspection_pb2.Plugin:
        p = introspection_pb2.Plugin(
            type=self.type,
            id=self.id,
            requires=self.requires,
            exports=dict(self.exports),
            capabilities=self.capabilities,
        )
        if self.init_error is not None:
            p.init_error.code, p.init_error.message = self.init_error
        return p

    def field(self, path: Sequence[str]) -> tuple[str, bool]:
        """The filter adaptor: `type`, `id`, and `exports.<key>`."""
        path = tuple(path)
        if path == ("type",):
            return self.type, bool(self.type)
        if path == ("id",):
            return self.id, bool(self.id)
        if len(path) == 2 and path[0] == "exports" and path[1] in self.exports:
            return self.exports[path[1]], True
        return "", False


def load_uuid(root: Path) -> str:
    """The daemon's uuid: made the first time it runs with this root, then kept.

    A file that does not hold a uuid (half-written, edited) is replaced with a new one
    rather than stopping the daemon.
    """
    path = root / "introspection" / "uuid"
    try:
        return str(uuidlib.UUID(path.read_text().strip()))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("replacing unreadable daemon uuid in %s: %s", path, e)
    value = str(uuidlib.uuid4())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".uuid.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return value


def pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


class IntrospectionService(introspection_pb2_grpc.IntrospectionServicer):
    def __init__(self, uuid: str, plugins: Callable[[], Sequence[PluginInfo]]) -> None:
        self._uuid = uuid
        self._plugins = plugins

    def Server(
        self, request: introspection_pb2.ServerRequest, context: grpc.ServicerContext
    ) -> introspection_pb2.ServerResponse:
        return introspection_pb2.ServerResponse(
            uuid=self._uuid, pid=os.getpid(), pidns=pid_namespace()
        )

    def Plugins(
        self, request: introspection_pb2.PluginsRequest, context: grpc.ServicerContext
    ) -> introspection_pb2.PluginsResponse:
        match = flt.parse(*request.filters)
        return introspection_pb2.PluginsResponse(
            plugins=[p.to_proto() for p in self._plugins() if match.match(p.field)]
        )


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    # Read the plugin list at call time: services registered after this one show up too.
    service = IntrospectionService(load_uuid(deps.config.root), lambda: list(deps.plugins))
    introspection_pb2_grpc.add_IntrospectionServicer_to_server(service, server)
    return [PluginInfo(GRPC_PLUGIN, "introspection")]
