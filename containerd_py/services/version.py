"""Version service: the release and the source revision the daemon runs."""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from containerd_py.api.services.version.v1 import version_pb2, version_pb2_grpc
from containerd_py.services.introspection import GRPC_PLUGIN, PluginInfo

if TYPE_CHECKING:
    from containerd_py.services import Deps

DISTRIBUTION = "pydocker-stack"


@functools.cache
def version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@functools.cache
def revision() -> str:
    """The git commit of the source tree the package runs from ("" outside a checkout).

    Asked once, before the server starts: the daemon forks only to exec, and only while
    it can afford to wait (two seconds at most).
    """
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return ""
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


class VersionService(version_pb2_grpc.VersionServicer):
    def __init__(self, version: str, revision: str) -> None:
        self._response = version_pb2.VersionResponse(version=version, revision=revision)

    def Version(
        self, request: version_pb2.VersionRequest, context: grpc.ServicerContext
    ) -> version_pb2.VersionResponse:
        return self._response


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    version_pb2_grpc.add_VersionServicer_to_server(VersionService(version(), revision()), server)
    return [PluginInfo(GRPC_PLUGIN, "version")]
