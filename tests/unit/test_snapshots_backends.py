"""Snapshotter backends without mounting: bookkeeping shared by overlay and native, the
mounts overlay describes, native's copies, and crash leftovers. The kernel side of overlay
is in tests/integration/test_snapshots_overlay.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from containerd_py.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from containerd_py.snapshots import Info, Kind, Mount
from containerd_py.snapshots.base import DirSnapshotter
from containerd_py.snapshots.native import NativeSnapshotter
from containerd_py.snapshots.overlay import OverlaySnapshotter


@pytest.fixture(params=["overlay", "native"])
def sn(request: pytest.FixtureRequest, tmp_path: Path):
    cls = OverlaySnapshotter if request.param == "overlay" else NativeSnapshotter
    s = cls(tmp_path / request.param)
    try:
        yield s
    finally:
        s.close()


def fs_of(s: DirSnapshotter, key: str) -> Path:
    return s.fs_path(s.ms.snapshot(s.ms.conn(), key).id)


def test_lifecycle_and_stat(sn: DirSnapshotter) -> None:
    sn.prepare("a", labels={"x": "1"})
    info = sn.stat("a")
    assert (info.name, info.kind, info.parent, info.labels) == ("a", Kind.ACTIVE, "", {"x": "1"})
    (fs_of(sn, "a") / "file").write_text("hi")
    sn.commit("base", "a", labels={"y": "2"})
    with pytest.raises(NotFound):
        sn.stat("a")
    base = sn.stat("base")
    assert base.kind is Kind.COMMITTED and base.labels == {"y": "2"}
    sn.prepare("child", "base")
    sn.view("v", "base")
    assert sn.stat("child").parent == "base" and sn.stat("v").kind is Kind.VIEW
    assert sorted(i.name for i in sn.walk()) == ["base", "child", "v"]
    assert [i.name for i in sn.walk("kind==Committed")] == ["base"]
    assert sorted(i.name for i in sn.walk("parent==base")) == ["child", "v"]


def test_errors(sn: DirSnapshotter) -> None:
    sn.prepare("a")
    with pytest.raises(AlreadyExists):
        sn.prepare("a")
    with pytest.raises(NotFound):
        sn.prepare("b", "missing")
    with pytest.raises(InvalidArgument, match="not a committed"):
        sn.prepare("b", "a")  # an active snapshot cannot be a parent
    with pytest.raises(InvalidArgument):
        sn.prepare("")
    sn.view("v")
    with pytest.raises(FailedPrecondition):
        sn.commit("c", "v")  # views are not committed
    sn.commit("c", "a")
    with pytest.raises(AlreadyExists):
        sn.prepare("x")
        sn.commit("c", "x")
    with pytest.raises(NotFound):
        sn.commit("d", "nope")
    with pytest.raises(NotFound):
        sn.mounts("nope")
    with pytest.raises(NotFound):
        sn.remove("nope")


def test_remove_refuses_a_parent_then_works(sn: DirSnapshotter) -> None:
    sn.prepare("a")
    sn.commit("base", "a")
    sn.prepare("child", "base")
    with pytest.raises(FailedPrecondition, match="child"):
        sn.remove("base")
    d = fs_of(sn, "child").parent
    sn.remove("child")
    assert not d.exists()
    sn.remove("base")
    assert list(sn.walk()) == []
    assert os.listdir(sn.snapshots_dir) == []


def test_update_labels_only(sn: DirSnapshotter) -> None:
    sn.prepare("a", labels={"x": "1", "y": "2"})
    got = sn.update(Info("a", Kind.ACTIVE, labels={"x": "9"}), ["labels.x"])
    assert got.labels == {"x": "9", "y": "2"}
    got = sn.update(Info("a", Kind.ACTIVE, labels={"z": "3"}))
    assert got.labels == {"z": "3"}
    with pytest.raises(InvalidArgument):
        sn.update(Info("a", Kind.ACTIVE), ["parent"])
    with pytest.raises(NotFound):
        sn.update(Info("nope", Kind.ACTIVE))


def test_usage_counts_hard_links_once(sn: DirSnapshotter) -> None:
    sn.prepare("a")
    fs = fs_of(sn, "a")
    empty = sn.usage("a")
    (fs / "big").write_bytes(b"x" * 100_000)
    os.link(fs / "big", fs / "link")
    u = sn.usage("a")
    assert u.inodes == empty.inodes + 1
    assert 100_000 <= u.size - empty.size < 100_000 + 16384
    sn.commit("c", "a")
    assert sn.usage("c") == u  # recorded at commit


def test_cleanup_removes_what_no_record_owns(sn: DirSnapshotter) -> None:
    sn.prepare("a")
    kept = fs_of(sn, "a").parent
    for leftover in ("new-abc", "rm-7", "999"):
        (sn.snapshots_dir / leftover / "fs").mkdir(parents=True)
    sn.cleanup()
    assert os.listdir(sn.snapshots_dir) == [kept.name]


def test_metadata_survives_reopening(tmp_path: Path) -> None:
    s = OverlaySnapshotter(tmp_path)
    s.prepare("a", labels={"k": "v"})
    s.commit("base", "a")
    s.prepare("b", "base")
    s.close()
    s = OverlaySnapshotter(tmp_path)
    assert s.stat("b").parent == "base" and s.stat("base").labels == {}
    assert s.mounts("b") == s.mounts("b")
    s.close()


# -- overlay mounts -----------------------------------------------------------------


def test_overlay_mounts(tmp_path: Path) -> None:
    s = OverlaySnapshotter(tmp_path, index_off=True, mount_options=["metacopy=off"])
    root = tmp_path / "snapshots"
    assert s.prepare("a") == [Mount("bind", f"{root}/1/fs", ("rw", "rbind"))]
    assert (root / "1" / "work").is_dir()
    s.commit("l1", "a")
    assert s.view("v1", "l1") == [Mount("bind", f"{root}/1/fs", ("ro", "rbind"))]
    assert not (root / "2" / "work").exists()  # views have no upper, hence no workdir
    s.prepare("b", "l1")
    s.commit("l2", "b")
    assert s.prepare("c", "l2") == [
        Mount(
            "overlay",
            "overlay",
            (
                "index=off",
                f"workdir={root}/4/work",
                f"upperdir={root}/4/fs",
                f"lowerdir={root}/3/fs:{root}/1/fs",
                "metacopy=off",
            ),
        )
    ]
    assert s.view("v2", "l2") == [
        Mount(
            "overlay", "overlay", ("index=off", f"lowerdir={root}/3/fs:{root}/1/fs", "metacopy=off")
        )
    ]
    assert s.view("v0") == [Mount("bind", f"{root}/6/fs", ("ro", "rbind"))]
    s.close()


# -- native copies ------------------------------------------------------------------


def test_native_prepare_copies_the_parent(tmp_path: Path) -> None:
    s = NativeSnapshotter(tmp_path)
    s.prepare("a")
    fs = fs_of(s, "a")
    (fs / "dir").mkdir(0o750)
    (fs / "dir" / "f").write_text("data")
    os.chmod(fs / "dir" / "f", 0o4755)
    os.symlink("dir/f", fs / "sym")
    os.link(fs / "dir" / "f", fs / "hard")
    os.mkfifo(fs / "fifo")
    s.commit("base", "a")
    mounts = s.prepare("b", "base")
    child = fs_of(s, "b")
    assert mounts == [Mount("bind", str(child), ("rw", "rbind"))]
    assert (child / "dir" / "f").read_text() == "data"
    assert os.stat(child / "dir" / "f").st_mode & 0o7777 == 0o4755
    assert os.stat(child / "dir").st_mode & 0o777 == 0o750
    assert os.readlink(child / "sym") == "dir/f"
    assert os.stat(child / "hard").st_ino == os.stat(child / "dir" / "f").st_ino
    assert os.stat(child / "fifo").st_mode & 0o170000 == 0o010000
    # A copy, not a share: the child's changes do not reach the parent.
    (child / "dir" / "f").write_text("changed")
    assert (fs / "dir" / "f").read_text() == "data"
    assert s.view("v", "base") == [Mount("bind", str(fs_of(s, "v")), ("ro", "rbind"))]
    s.close()


def test_backends_implement_the_protocol(sn: DirSnapshotter) -> None:
    from containerd_py.snapshots import Snapshotter

    assert isinstance(sn, Snapshotter)


def test_backend_bookkeeping_migration_1(tmp_path: Path) -> None:
    from containerd_py.metadata.db import MetadataDB
    from containerd_py.snapshots.storage import MIGRATIONS

    db = MetadataDB(tmp_path / "m.db", MIGRATIONS[:1])
    cols = [r[1] for r in db.conn().execute("PRAGMA table_info(snapshots)")]
    assert db.version == 1
    assert cols == [
        "id",
        "key",
        "kind",
        "parent_id",
        "labels",
        "created_at",
        "updated_at",
        "size",
        "inodes",
    ]
    db.close()
