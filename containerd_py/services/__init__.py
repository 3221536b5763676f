"""The daemon's gRPC services, each a thin adapter from the wire to core objects.

Adding a service: write `containerd_py/services/<name>.py` with a servicer and
`register(server, deps) -> list[PluginInfo]`, put what it needs on `Deps` (constructor
injection: the server builds the core objects once, tests can build their own), and
append the module to `SERVICES`. Introspection lists what the registrations return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

import grpc

from containerd_py.config import Config
from containerd_py.events.exchange import Exchange
from containerd_py.metadata.db import MetadataDB
from containerd_py.services import (
    containers,
    content,
    events,
    images,
    introspection,
    leases,
    namespaces,
    snapshots,
    tasks,
    transfer,
    version,
)
from containerd_py.services.introspection import PluginInfo
from containerd_py.services.namespaces import NamespaceStore

if TYPE_CHECKING:
    from containerd_py.runtime.task_manager import TaskManager
    from containerd_py.storage import Storage

Register = Callable[[grpc.Server, "Deps"], list[PluginInfo]]


@dataclass
class Deps:
    """Everything the services share, built once by the server."""

    config: Config
    exchange: Exchange
    namespaces: NamespaceStore
    # The metadata database the stores share (None when a test injects its own stores).
    db: MetadataDB | None = None
    # Content, snapshotters and the garbage collector over `db` (None: the image,
    # container, content, snapshot and lease services are not registered).
    storage: Storage | None = None
    # What Introspection.Plugins reports: core components (added by the server) and the
    # services (added by `register_all`).
    plugins: list[PluginInfo] = field(default_factory=list)
    # The task manager (set by the Tasks service's registration; None without storage).
    tasks: TaskManager | None = None


SERVICES: list[ModuleType] = [
    version,
    introspection,
    namespaces,
    events,
    content,
    snapshots,
    images,
    containers,
    leases,
    tasks,
    transfer,
]


def register_all(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    """Register every service in `SERVICES` on `server`; returns their plugin records
    (also appended to `deps.plugins`)."""
    added: list[PluginInfo] = []
    for module in SERVICES:
        register: Register = module.register
        added.extend(register(server, deps))
    deps.plugins.extend(added)
    return added
