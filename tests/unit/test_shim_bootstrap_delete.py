"""`shim delete`'s pieces without a container: mount options, finding mounts, the options
file, the reported exit (recorded or 137), and its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shim import manager
from shim.bootstrap import delete_json
from shim.exitfile import write_exit


@pytest.mark.parametrize(
    ("options", "flags", "data"),
    [
        (["ro", "nosuid", "nodev"], 1 | 2 | 4, ""),
        (["rbind", "ro"], 4096 | 16384 | 1, ""),
        (["ro", "rw"], 0, ""),
        (["lowerdir=/a:/b", "upperdir=/u", "workdir=/w", "index=off"], 0, None),
        (["defaults", "noexec", "size=64m"], 8, "size=64m"),
    ],
)
def test_parse_options(options: list[str], flags: int, data: str | None) -> None:
    got_flags, got_data = manager.parse_options(options)
    assert got_flags == flags
    expected = ",".join(o for o in options if "=" in o) if data is None else data
    assert got_data == expected


def test_mounts_under_reads_mountinfo(tmp_path: Path) -> None:
    base = tmp_path / "b w"  # a space: mountinfo writes it as \040
    (base / "rootfs").mkdir(parents=True)
    root = str(base / "rootfs").replace(" ", "\\040")
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw - ext4 /dev/sda rw\n"
        f"30 22 0:40 / {root} rw - overlay overlay rw,lowerdir=/l\n"
        f"31 30 0:41 / {root}/proc rw - proc proc rw\n"
        f"32 22 0:42 / {root}2 rw - tmpfs tmpfs rw\n"
    )
    got = manager.mounts_under(str(base / "rootfs"), str(info))
    assert got == [str(base / "rootfs"), str(base / "rootfs" / "proc")]


def test_mount_targets_stay_inside_the_rootfs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the rootfs"):
        manager.mount_rootfs(str(tmp_path), [("bind", "/", "../../etc", ["rbind"])])


def test_options_file_round_trip(tmp_path: Path) -> None:
    assert manager.read_options(str(tmp_path)) is None
    manager.write_options(str(tmp_path), {"binary_name": "runc", "root": "/r"})
    assert manager.read_options(str(tmp_path)) == {"binary_name": "runc", "root": "/r"}
    (tmp_path / "options.json").write_text("{torn")
    assert manager.read_options(str(tmp_path)) is None


def test_default_runtime_root_is_per_stack_runtime_and_namespace() -> None:
    assert manager.default_runtime_root("/run/pycontainerd/s", "runc", "k8s.io") == (
        "/run/pycontainerd/runc/k8s.io"
    )
    assert manager.default_runtime_root("/tmp/x/s", "/usr/bin/crun", "default") == (
        "/tmp/x/crun/default"
    )


def test_delete_reports_the_recorded_exit(tmp_path: Path) -> None:
    # No options.json: no task was created, so no runtime runs.
    write_exit(str(tmp_path), 99, 5, 1_700_000_000_123_456_789)
    d = manager.delete(id="c", namespace="n", bundle=str(tmp_path), socket_dir=str(tmp_path))
    assert d == {"pid": 99, "exit_status": 5, "exited_at": 1_700_000_000_123_456_789}


def test_delete_without_a_recorded_exit_is_137(tmp_path: Path) -> None:
    (tmp_path / "init.pid").write_text("1234")
    sock = tmp_path / "sock"
    sock.write_text("")
    d = manager.delete(
        id="c", namespace="n", bundle=str(tmp_path), socket_dir=str(tmp_path), socket=str(sock)
    )
    assert (d["pid"], d["exit_status"]) == (1234, 137)
    assert not sock.exists()


def test_delete_json() -> None:
    out = json.loads(delete_json({"pid": 7, "exit_status": 0, "exited_at": 1_700_000_000 * 10**9}))
    assert out == {"pid": 7, "exit_status": 0, "exited_at": "2023-11-14T22:13:20Z"}


def test_a_stranger_with_the_shims_pid_is_not_killed(tmp_path: Path) -> None:
    import os

    # Our own pid stands for a reused one: not `shim serve` in this bundle.
    assert not manager._stop_shim(os.getpid(), str(tmp_path))
