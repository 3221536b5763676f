"""The image, container, content, snapshot and lease services in-process, for unit tests.

A real grpc server with the daemon's interceptors on a unix socket under a short /tmp dir,
real stores (SQLite, the blob store) in a temp root and the native snapshotter (no root,
no mounts), so these tests run anywhere; the overlay snapshotter is covered by the root
integration tests against a daemon process.

    stack = Stack(short_tmp)
    stub = stack.stub(images_pb2_grpc.ImagesStub)
    stub.List(images_pb2.ListRequest(), metadata=md("default"))
"""

from __future__ import annotations

import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from containerd_py.api.services.containers.v1 import containers_pb2_grpc
from containerd_py.api.services.content.v1 import content_pb2_grpc
from containerd_py.api.services.images.v1 import images_pb2_grpc
from containerd_py.api.services.leases.v1 import leases_pb2_grpc
from containerd_py.api.services.snapshots.v1 import snapshots_pb2_grpc
from containerd_py.content.store import ContentStore
from containerd_py.events.exchange import Exchange
from containerd_py.gc_service import GCScheduler
from containerd_py.interceptors import ErrorInterceptor
from containerd_py.metadata.containers import ContainerStore
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.gc import collect
from containerd_py.metadata.images import ImageStore
from containerd_py.metadata.leases import LeaseStore
from containerd_py.namespaces import METADATA_KEY, NamespaceInterceptor
from containerd_py.services.containers import ContainersService
from containerd_py.services.content import ContentService
from containerd_py.services.images import ImagesService
from containerd_py.services.leases import LEASE_METADATA_KEY, LeasesService
from containerd_py.services.snapshots import SnapshotsService, Snapshotters
from containerd_py.snapshots.native import NativeSnapshotter


def md(namespace: str = "default", lease: str | None = None) -> tuple[tuple[str, str], ...]:
    out = [(METADATA_KEY, namespace)]
    if lease:
        out.append((LEASE_METADATA_KEY, lease))
    return tuple(out)


class Stack:
    def __init__(self, tmp: Path, *, gc_delay: float = 0.05) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.db = MetadataDB(self.root / "metadata.db")
        self.content = ContentStore(self.root, self.db)
        self.snapshotters = Snapshotters(
            self.db, {"native": NativeSnapshotter(self.root / "snapshots" / "native")}, "native"
        )
        self.exchange = Exchange()
        self.gc = GCScheduler(
            lambda: collect(self.db, self.content.blobs, self.snapshotters.backends),
            delay=gc_delay,
        )
        self.leases = LeaseStore(self.db)
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=16),
            interceptors=[ErrorInterceptor(), NamespaceInterceptor()],
        )
        containers_pb2_grpc.add_ContainersServicer_to_server(
            ContainersService(ContainerStore(self.db), self.exchange, self.gc), self.server
        )
        content_pb2_grpc.add_ContentServicer_to_server(
            ContentService(self.content, self.exchange), self.server
        )
        images_pb2_grpc.add_ImagesServicer_to_server(
            ImagesService(
                ImageStore(self.db),
                self.content,
                self.snapshotters,
                self.leases,
                self.exchange,
                gc=self.gc,
                work_dir=self.root / "tmp",
            ),
            self.server,
        )
        leases_pb2_grpc.add_LeasesServicer_to_server(
            LeasesService(self.leases, self.gc), self.server
        )
        snapshots_pb2_grpc.add_SnapshotsServicer_to_server(
            SnapshotsService(self.snapshotters, self.exchange), self.server
        )
        self.address = str(tmp / "s.sock")
        self.server.add_insecure_port(f"unix:{self.address}")
        self.server.start()
        self.channel = grpc.insecure_channel(f"unix:{self.address}")

    def stub(self, cls: type) -> Any:
        return cls(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None).wait()
        self.gc.close()
        self.exchange.close()
        self.snapshotters.close()
        self.db.close()


def layer_tar(files: dict[str, bytes], *, whiteouts: tuple[str, ...] = ()) -> bytes:
    """A layer tar with regular files (parent directories added) and whiteouts."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        names = sorted([*files, *whiteouts])
        for name in names:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            if name in files:
                info = tarfile.TarInfo(name)
                info.size = len(files[name])
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(files[name]))
            else:
                head, _, base = name.rpartition("/")
                info = tarfile.TarInfo(f"{head}/.wh.{base}" if head else f".wh.{base}")
                tar.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_layout_tar(
    name: str,
    layers: list[bytes],
    *,
    config: dict[str, Any] | None = None,
    gzip_layers: bool = False,
) -> tuple[bytes, str]:
    """An OCI layout tar holding one image named `name` with these plain layer tars
    (gzipped with gzip_layers); returns (the tar, the manifest digest)."""
    import gzip
    import json

    blobs: dict[str, bytes] = {}
    descs = []
    for layer in layers:
        data = gzip.compress(layer, mtime=0) if gzip_layers else layer
        blobs[_sha(data)] = data
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        descs.append({"mediaType": media, "digest": _sha(data), "size": len(data)})
    cfg = {
        "architecture": _host_arch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], **(config or {})},
        "rootfs": {"type": "layers", "diff_ids": [_sha(layer) for layer in layers]},
    }
    cfg_bytes = json.dumps(cfg).encode()
    blobs[_sha(cfg_bytes)] = cfg_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _sha(cfg_bytes),
            "size": len(cfg_bytes),
        },
        "layers": descs,
    }
    m_bytes = json.dumps(manifest).encode()
    blobs[_sha(m_bytes)] = m_bytes
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": _sha(m_bytes),
                "size": len(m_bytes),
                "annotations": {"io.containerd.image.name": name},
            }
        ],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        entries = {
            "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
            "index.json": json.dumps(index).encode(),
            **{f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()},
        }
        for path, data in entries.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue(), _sha(m_bytes)


def _host_arch() -> str:
    from containerd_py.images.platforms import host_platform

    return host_platform().architecture


# Shared by the test_services_* modules; their `stack` fixture is in tests/unit/conftest.py.
def code(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        result = call(*args, **kwargs)
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)
    return e.value.code()
