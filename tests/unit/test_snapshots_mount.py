"""Mount option parsing and the mount(2) calls a Mount makes, with a recording double;
tests/integration/test_snapshots_overlay.py does the same against the kernel."""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass, field

import pytest

from containerd_py.errdefs import InvalidArgument
from containerd_py.snapshots.mount import (
    CLONE_FS,
    PAGESIZE,
    Mount,
    compact_lowerdirs,
    mount_all,
    parse_options,
    unmount,
    unmount_all,
)
from oci_runtime.linux.flags import Mount as MS


@dataclass
class Recorder:
    calls: list[tuple] = field(default_factory=list)
    fail: dict[str, list[int]] = field(default_factory=dict)  # call name -> errnos to raise

    def _maybe_fail(self, name: str, *args: object) -> None:
        if self.fail.get(name):
            err = self.fail[name].pop(0)
            raise OSError(err, f"{name}: {os.strerror(err)}")

    def mount(self, source, target, fstype, flags, data) -> None:
        self.calls.append(("mount", source, target, fstype, flags, data, threading.get_ident()))
        self._maybe_fail("mount")

    def umount2(self, target, flags) -> None:
        self.calls.append(("umount2", target, flags))
        self._maybe_fail("umount2")

    def unshare(self, flags) -> None:
        self.calls.append(("unshare", flags, threading.get_ident()))

    def chdir(self, path) -> None:
        self.calls.append(("chdir", path, threading.get_ident()))


def test_parse_options() -> None:
    flags, prop, data = parse_options(
        ["ro", "nosuid", "nodev", "rbind", "rprivate", "lowerdir=/a", "rw", "index=off"]
    )
    assert flags == MS.NOSUID | MS.NODEV | MS.BIND | MS.REC  # rw after ro clears it
    assert prop == MS.PRIVATE | MS.REC
    assert data == ["lowerdir=/a", "index=off"]


def test_ro_bind_is_a_bind_then_a_remount() -> None:
    rec = Recorder()
    Mount("bind", "/src", ["ro", "rbind"]).mount("/dst", rec)
    assert [c[:6] for c in rec.calls] == [
        ("mount", "/src", "/dst", "none", MS.BIND | MS.REC | MS.RDONLY, None),
        ("mount", "", "/dst", None, MS.BIND | MS.REC | MS.RDONLY | MS.REMOUNT, None),
    ]


def test_rw_bind_needs_no_remount_and_propagation_is_separate() -> None:
    rec = Recorder()
    Mount("bind", "/src", ("rw", "rbind", "rslave"), target="sub").mount("/dst", rec)
    assert [c[:6] for c in rec.calls] == [
        ("mount", "/src", "/dst/sub", "none", MS.BIND | MS.REC, None),
        ("mount", "", "/dst/sub", None, MS.SLAVE | MS.REC, None),
    ]


def test_overlay_options_become_data() -> None:
    rec = Recorder()
    m = Mount("overlay", "overlay", ["workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"])
    m.mount("/dst", rec)
    assert [c[:6] for c in rec.calls] == [
        ("mount", "overlay", "/dst", "overlay", 0, "workdir=/w,upperdir=/u,lowerdir=/l1:/l2")
    ]


def test_a_failed_remount_undoes_the_bind() -> None:
    calls = []

    class FailSecond(Recorder):
        def mount(self, *a) -> None:
            calls.append(a)
            if len(calls) == 2:
                raise OSError(errno.EPERM, "remount")

        def umount2(self, target, flags) -> None:
            calls.append(("umount2", target, flags))

    with pytest.raises(OSError):
        Mount("bind", "/src", ["ro", "bind"]).mount("/dst", FailSecond())
    assert calls[-1] == ("umount2", "/dst", 2)


def test_compact_lowerdirs() -> None:
    base = "/var/lib/pycontainerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
    data = ["upperdir=/u", f"lowerdir={base}/3/fs:{base}/2/fs:{base}/1/fs"]
    cwd, out = compact_lowerdirs(data)
    assert cwd == base and out == ["upperdir=/u", "lowerdir=3/fs:2/fs:1/fs"]
    assert compact_lowerdirs(["lowerdir=/a/fs"]) == ("", ["lowerdir=/a/fs"])
    assert compact_lowerdirs(["lowerdir=/a/fs:/b/fs"]) == ("", ["lowerdir=/a/fs:/b/fs"])
    assert compact_lowerdirs(["upperdir=/u"]) == ("", ["upperdir=/u"])


def test_long_lowerdir_mounts_from_a_thread_with_its_own_cwd() -> None:
    base = "/var/lib/pycontainerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
    lowers = ":".join(f"{base}/{i}/fs" for i in range(200, 0, -1))
    m = Mount("overlay", "overlay", [f"upperdir={base}/201/fs", f"lowerdir={lowers}"])
    rec = Recorder()
    m.mount("/dst", rec)
    unshare, chdir, mount = rec.calls
    assert unshare[:2] == ("unshare", CLONE_FS) and chdir[:2] == ("chdir", base)
    # Same helper thread for all three, and not ours: our cwd never moves.
    assert unshare[2] == chdir[2] == mount[6] != threading.get_ident()
    data = mount[5]
    assert len(data) < PAGESIZE
    assert data.endswith("lowerdir=" + ":".join(f"{i}/fs" for i in range(200, 0, -1)))
    assert mount[2] == "/dst"


def test_too_many_layers_even_when_relative_is_a_clear_error() -> None:
    lowers = ":".join(f"/s/{i:08d}/fs" for i in range(800))
    with pytest.raises(InvalidArgument, match="800 lower layers"):
        Mount("overlay", "overlay", [f"lowerdir={lowers}"]).mount("/dst", Recorder())


def test_mount_all_undoes_earlier_mounts_on_failure() -> None:
    rec = Recorder()

    class FailOnB(Recorder):
        def mount(self, source, target, fstype, flags, data) -> None:
            rec.calls.append(("mount", source, target))
            if source == "/b":
                raise OSError(errno.ENOENT, "no /b")

        def umount2(self, target, flags) -> None:
            rec.calls.append(("umount2", target, flags))

    with pytest.raises(OSError):
        mount_all([Mount("bind", "/a", ["rbind"]), Mount("bind", "/b", ["rbind"])], "/t", FailOnB())
    assert rec.calls[-1] == ("umount2", "/t", 2)


def test_unmount_retries_busy_and_unmount_all_stops_when_nothing_is_mounted() -> None:
    rec = Recorder(fail={"umount2": [errno.EBUSY, errno.EBUSY]})
    unmount("/t", 0, rec)
    assert len(rec.calls) == 3

    class Stacked(Recorder):
        n = 0

        def umount2(self, target, flags) -> None:
            self.n += 1
            if self.n > 2:
                raise OSError(errno.EINVAL, "not mounted")

    s = Stacked()
    unmount_all("/t", 0, s)
    assert s.n == 3
    with pytest.raises(OSError):
        unmount("/t", 0, Recorder(fail={"umount2": [errno.EPERM]}))


def test_mounts_are_values() -> None:
    a = Mount("bind", "/s", ["ro"])
    assert a == Mount("bind", "/s", ("ro",)) and hash(a) == hash(Mount("bind", "/s", ("ro",)))
