"""Differential: a user namespace (uid/gid 0 -> 100000, 65536 ids) under pyrunc, runc, crun.

The container's root is host uid 100000, so it needs a rootfs it can reach and own: a copy,
chowned to 100000:100000, in a directory every uid may traverse (pytest's tmp dirs are 0700).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import probes
from tests.probes import Outcome, host_ns, mount_table, probe, words
from tests.runtimes import make_bundle

pytestmark = [pytest.mark.root]
reference = probes.reference  # the fixture

HOST_ID = 100000
SIZE = 65536


@pytest.fixture(scope="module")
def userns_base(rootfs_template: Path) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="pyt-userns-", dir="/tmp"))
    try:
        base.chmod(0o755)
        rootfs = base / "rootfs"
        subprocess.run(["cp", "-a", str(rootfs_template), str(rootfs)], check=True)
        subprocess.run(["chown", "-R", f"{HOST_ID}:{HOST_ID}", str(rootfs)], check=True)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def userns(cfg):
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": SIZE}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": SIZE}]


@pytest.fixture
def ubundle(userns_base: Path, short_tmp: Path):
    """Like `bundle`, with the user namespace and the chowned rootfs (read-only, shared)."""
    bundles = short_tmp / "ubundles"
    bundles.mkdir()
    bundles.chmod(0o755)
    short_tmp.chmod(0o755)

    def factory(args=None, *, writable: bool = False, edit=None) -> Path:
        def both(cfg):
            userns(cfg)
            if edit is not None:
                edit(cfg)

        b = make_bundle(bundles, userns_base / "rootfs", args, writable=writable, edit=both)
        if writable:
            subprocess.run(["chown", "-R", f"{HOST_ID}:{HOST_ID}", str(b / "rootfs")], check=True)
        return b

    return factory


def test_id_maps(runtime, ubundle):
    got = probe(runtime, ubundle, "cat /proc/self/uid_map; cat /proc/self/gid_map; id")
    assert got.code == 0, got
    lines = got.out.splitlines()
    assert words("\n".join(lines[:2])) == [["0", str(HOST_ID), str(SIZE)]] * 2
    assert lines[2] == "uid=0(root) gid=0(root)"


def test_user_namespace_is_new(runtime, ubundle):
    got = probe(runtime, ubundle, "readlink /proc/self/ns/user")
    assert got.code == 0, got
    assert got.out.strip() != host_ns("user")
    assert got.out.startswith("user:[")


def test_files_created_inside_belong_to_mapped_ids(runtime, ubundle, short_tmp):
    share = short_tmp / "share"
    share.mkdir()
    os.chown(share, HOST_ID, HOST_ID)
    (short_tmp / "host-owned").mkdir()

    def edit(cfg):
        cfg["mounts"] += [
            {"destination": "/var", "type": "bind", "source": str(share), "options": ["rbind"]},
            {
                "destination": "/home",
                "type": "bind",
                "source": str(short_tmp / "host-owned"),
                "options": ["rbind", "ro"],
            },
        ]
        cfg["process"]["capabilities"]["effective"].append("CAP_CHOWN")
        cfg["process"]["capabilities"]["permitted"].append("CAP_CHOWN")
        cfg["process"]["capabilities"]["bounding"].append("CAP_CHOWN")

    script = (
        "touch /var/by-root && touch /var/by-user && chown 1000:29 /var/by-user && "
        "stat -c '%u %g' /var/by-root /var/by-user /home / /etc/passwd"
    )
    got = probe(runtime, ubundle, script, edit=edit)
    assert got.code == 0, got
    assert got.out.splitlines() == [
        "0 0",
        "1000 29",
        "65534 65534",  # host root is not mapped: the overflow ids
        "0 0",  # the chowned rootfs
        "0 0",
    ]
    by_root = (share / "by-root").stat()
    by_user = (share / "by-user").stat()
    assert (by_root.st_uid, by_root.st_gid) == (HOST_ID, HOST_ID)
    assert (by_user.st_uid, by_user.st_gid) == (HOST_ID + 1000, HOST_ID + 29)


def test_non_root_user_in_userns(runtime, ubundle):
    def edit(cfg):
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10]}

    got = probe(runtime, ubundle, "id; grep -E '^(Uid|Gid|Groups):' /proc/self/status", edit=edit)
    assert got.code == 0, got
    lines = got.out.splitlines()
    assert lines[0] == "uid=1000(user) gid=1000(user) groups=10(wheel)"
    # /proc/self/status shows ids as the reader's namespace maps them: the container's.
    assert lines[1].split()[1:] == ["1000"] * 4
    assert lines[3].split()[1:] == ["10"]


def test_writable_rootfs_in_userns(runtime, ubundle, short_tmp):
    b = ubundle(["sh", "-c", "echo hi > /made-inside && stat -c '%u' /made-inside"], writable=True)
    p = runtime.run(b)
    assert (p.returncode, p.stdout) == (0, b"0\n"), p.stderr
    assert (b / "rootfs" / "made-inside").stat().st_uid == HOST_ID


def test_capabilities_are_the_namespace_s(runtime, ubundle):
    # Capabilities in the user namespace do not reach the host: mounting fails for want of
    # CAP_SYS_ADMIN inside, and with it the host's root stays out of reach.
    got = probe(runtime, ubundle, "grep -E '^Cap(Eff|Bnd)' /proc/self/status")
    assert got.code == 0, got
    default = f"{(1 << 29) | (1 << 5) | (1 << 10):016x}"
    assert [w[1] for w in words(got.out)] == [default, default]


def table(o: Outcome):
    assert o.code == 0, o
    return mount_table(o.out)


def test_mount_table_in_userns(runtime, ubundle, reference):
    # Mounts made in a user namespace have their flags locked by the kernel (nosuid, nodev...
    # of the source stay); the table must still read like runc's.
    rows = table(probe(runtime, ubundle, "cat /proc/self/mountinfo"))
    assert [str(r) for r in rows if r.mountpoint == "/proc/sys"] == ["/proc/sys proc ro"]
    reference.same(runtime, rows, ubundle, "cat /proc/self/mountinfo", table)


def test_masked_and_readonly_in_userns(runtime, ubundle):
    script = (
        "echo 1 > /proc/sys/kernel/ns_last_pid; echo sys=$?; "
        "ls -A /sys/firmware | wc -l; touch /x; echo root=$?"
    )
    got = probe(runtime, ubundle, script)
    assert got.out.splitlines() == ["sys=1", "0", "root=1"], got
