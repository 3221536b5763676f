"""Garbage collection in a real daemon: what a deleted image alone held goes (content,
snapshots, blobs on disk), what another image or a container still uses stays, leases
protect what they hold, and collections after plain (non-sync) deletes happen by
themselves in the background."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from containerd_py.client import Client, LeaseResource
from containerd_py.unpack import chain_ids
from tests.daemon import Daemon, running_daemon
from tests.unit.services_stack import layer_tar, oci_layout_tar

BASE = layer_tar({"base": b"base" * 1000})
TOP = layer_tar({"top": b"top" * 1000})


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with running_daemon(short_tmp) as d:
        yield d


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


def blobs_on_disk(daemon: Daemon) -> set[str]:
    d = daemon.root / "content" / "blobs" / "sha256"
    return {"sha256:" + p.name for p in d.iterdir()} if d.exists() else set()


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_deleting_an_image_frees_only_what_it_alone_held(daemon: Daemon, client: Client) -> None:
    one, _ = oci_layout_tar("example.com/one:1", [BASE])
    two, _ = oci_layout_tar("example.com/two:1", [BASE, TOP])
    client.images().import_archive(io.BytesIO(one))
    client.images().import_archive(io.BytesIO(two))
    c0, c1 = chain_ids([sha(BASE), sha(TOP)])
    two_blobs = {c.digest for c in client.content().list()} - _blobs_of(client, "example.com/one:1")
    assert {s.name for s in client.snapshots().list()} == {c0, c1}

    client.images().delete("example.com/two:1", sync=True)
    assert {s.name for s in client.snapshots().list()} == {c0}
    remaining = {c.digest for c in client.content().list()}
    assert remaining == _blobs_of(client, "example.com/one:1")
    assert not two_blobs & blobs_on_disk(daemon)
    assert sha(BASE) in remaining  # the shared layer stays

    client.images().delete("example.com/one:1", sync=True)
    assert client.snapshots().list() == [] and client.content().list() == []
    assert blobs_on_disk(daemon) == set()


def _blobs_of(client: Client, name: str) -> set[str]:
    image = client.images().get(name)
    rootfs = client.image_rootfs(image)
    return {image.target.digest, rootfs.config.digest, *(layer.digest for layer in rootfs.layers)}


def test_background_collection_after_plain_deletes(daemon: Daemon, client: Client) -> None:
    data, _ = oci_layout_tar("example.com/bg:1", [BASE])
    client.images().import_archive(io.BytesIO(data))
    client.images().delete("example.com/bg:1")  # returns before any collection
    eventually(lambda: client.content().list() == [] and client.snapshots().list() == [])
    eventually(lambda: blobs_on_disk(daemon) == set())


def test_a_container_keeps_its_snapshot_chain(daemon: Daemon, client: Client) -> None:
    data, _ = oci_layout_tar("example.com/app:1", [BASE, TOP])
    client.images().import_archive(io.BytesIO(data))
    client.new_container("c1", "example.com/app:1")
    client.images().delete("example.com/app:1", sync=True)
    c0, c1 = chain_ids([sha(BASE), sha(TOP)])
    assert {s.name for s in client.snapshots().list()} == {c0, c1, "c1"}
    assert client.content().list() == []  # the blobs were the image's alone
    client.delete_container("c1")
    eventually(lambda: client.snapshots().list() == [])


def test_leases_protect_content(daemon: Daemon, client: Client) -> None:
    data = b"precious" * 100
    lease = client.leases().create("hold")
    digest = client.with_lease(lease.id).content().write("w1", data, expected=sha(data))
    loose = b"loose" * 100
    client.content().write("w2", loose, expected=sha(loose))
    assert client.leases().list_resources("hold") == [LeaseResource(digest, "content")]

    client.leases().create("other")
    client.leases().delete("other", sync=True)  # runs a collection now
    assert [c.digest for c in client.content().list()] == [digest]
    assert client.content().read(digest) == data

    client.leases().delete("hold", sync=True)
    assert client.content().list() == [] and blobs_on_disk(daemon) == set()


def test_an_expired_lease_stops_protecting(daemon: Daemon, client: Client) -> None:
    data = b"short-lived"
    lease = client.leases().create("brief", {"containerd.io/gc.expire": "2000-01-01T00:00:00Z"})
    client.with_lease(lease.id).content().write("w", data, expected=sha(data))
    client.leases().create("tick")
    client.leases().delete("tick", sync=True)
    assert client.leases().list() == [] and client.content().list() == []


def test_namespaces_collect_separately(daemon: Daemon, client: Client) -> None:
    data, _ = oci_layout_tar("example.com/shared:1", [BASE])
    a, b = client.with_namespace("a"), client.with_namespace("b")
    a.images().import_archive(io.BytesIO(data))
    b.images().import_archive(io.BytesIO(data))
    a.images().delete("example.com/shared:1", sync=True)
    assert a.content().list() == [] and a.snapshots().list() == []
    # b's records keep the bytes on disk, which both namespaces shared.
    assert sha(BASE) in blobs_on_disk(daemon)
    assert {s.name for s in b.snapshots().list()} == {sha(BASE)}
