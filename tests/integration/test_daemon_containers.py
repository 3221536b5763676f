"""Containers through a real daemon: `pyctr containers create/ls/info/rm` (a record plus an
active snapshot on the unpacked image, the spec from the image config), user names looked
up in the image, nothing left behind by a failed create, and the writable rootfs mounted
for real (root)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_py import errdefs
from containerd_py.client import Client
from containerd_py.snapshots.mount import Mount, mount_all, unmount_all
from tests.daemon import ROOT, Daemon, running_daemon
from tests.unit.services_stack import layer_tar, oci_layout_tar

PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = b"root:x:0:\napp:x:1001:\nstaff:x:50:\n"
IMAGE = "example.com/app:1"


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with running_daemon(short_tmp) as d:
        yield d


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with daemon.client() as c:
        base = layer_tar({"etc/passwd": b"old", "etc/group": GROUP, "srv/data": b"1"})
        top = layer_tar({"etc/passwd": PASSWD})
        data, _ = oci_layout_tar(
            IMAGE,
            [base, top],
            config={
                "Entrypoint": ["/bin/app"],
                "Cmd": ["--serve"],
                "Env": ["PATH=/bin", "MODE=prod"],
                "WorkingDir": "/srv",
                "User": "app:staff",
            },
        )
        c.images().import_archive(io.BytesIO(data))
        yield c


def pyctr(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", d.address, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_create_ls_info_rm(daemon: Daemon, client: Client) -> None:
    r = pyctr(
        daemon, "containers", "create", "--label", "app=web", "--env", "MODE=dev", IMAGE, "web"
    )
    assert r.returncode == 0 and r.stdout == "", r.stderr
    r = pyctr(daemon, "containers", "create", IMAGE, "job", "--", "run", "--once")
    assert r.returncode == 0, r.stderr

    ls = pyctr(daemon, "containers", "ls").stdout.splitlines()
    assert [line.split() for line in ls] == [
        ["CONTAINER", "IMAGE", "RUNTIME"],
        ["job", IMAGE, "pyrunc"],
        ["web", IMAGE, "pyrunc"],
    ]
    assert pyctr(daemon, "containers", "ls", "-q", "labels.app==web").stdout.split() == ["web"]

    info = json.loads(pyctr(daemon, "containers", "info", "web").stdout)
    assert info["ID"] == "web" and info["Labels"] == {"app": "web"}
    assert info["Runtime"]["Name"] == "pyrunc" and info["SnapshotKey"] == "web"
    process = info["Spec"]["process"]
    assert process["args"] == ["/bin/app", "--serve"]
    assert process["env"] == ["PATH=/bin", "MODE=dev"]
    assert process["cwd"] == "/srv" and process["user"] == {"uid": 1000, "gid": 50}
    assert info["Spec"]["root"] == {"path": "rootfs", "readonly": False}
    spec = json.loads(pyctr(daemon, "containers", "info", "--spec", "job").stdout)
    assert spec["process"]["args"] == ["/bin/app", "run", "--once"]

    snaps = {s.name: s for s in client.snapshots().list()}
    top = client.image_rootfs(client.images().get(IMAGE)).chain_id
    assert snaps["web"].kind == "Active" and snaps["web"].parent == top
    assert info["Snapshotter"] == client.snapshotter_name()

    r = pyctr(daemon, "containers", "rm", "web", "nope")
    assert r.returncode == 1 and "nope" in r.stderr and len(r.stderr.splitlines()) == 1
    assert "web" not in {s.name for s in client.snapshots().list()}
    with pytest.raises(errdefs.NotFound):
        client.containers().get("web")
    r = pyctr(daemon, "containers", "rm", "--keep-snapshot", "job")
    assert r.returncode == 0 and "job" in {s.name for s in client.snapshots().list()}


def test_failed_creates_leave_nothing(daemon: Daemon, client: Client) -> None:
    client.new_container("c1", IMAGE)
    before = sorted(s.name for s in client.snapshots().list())
    with pytest.raises(errdefs.AlreadyExists):
        client.new_container("c1", IMAGE)  # the snapshot key is taken
    with pytest.raises(errdefs.NotFound):
        client.new_container("c2", "example.com/none:1")
    with pytest.raises(errdefs.InvalidArgument):
        client.new_container("bad/id", IMAGE)
    # Stored, not unpacked: no snapshot to start from.
    data, _ = oci_layout_tar("example.com/packed:1", [layer_tar({"x": b"1"})])
    client.images().import_archive(io.BytesIO(data), unpack=False)
    with pytest.raises(errdefs.FailedPrecondition, match="not unpacked"):
        client.new_container("c3", "example.com/packed:1")
    assert sorted(s.name for s in client.snapshots().list()) == before
    assert [c.id for c in client.containers().list()] == ["c1"]
    assert client.leases().list() == []
    r = pyctr(daemon, "containers", "create", "example.com/packed:1", "c4")
    assert r.returncode == 1 and r.stderr.startswith("pyctr: image example.com/packed:1 is not")


@pytest.mark.root
def test_the_rootfs_mounts_writable(client: Client, short_tmp: Path) -> None:
    c = client.new_container("rw", IMAGE)
    mounts = client.snapshots(c.snapshotter).mounts(c.snapshot_key)
    target = tempfile.mkdtemp(dir=short_tmp)
    try:
        mount_all([Mount(m.type, m.source, m.options, m.target) for m in mounts], target)
        try:
            assert Path(target, "etc/passwd").read_bytes() == PASSWD
            assert Path(target, "srv/data").read_text() == "1"
            Path(target, "srv/new").write_text("written")
        finally:
            unmount_all(target)
    finally:
        os.rmdir(target)
    usage = client.snapshots(c.snapshotter).usage("rw")
    assert usage.inodes >= 1
    client.delete_container("rw")
    assert "rw" not in {s.name for s in client.snapshots().list()}
