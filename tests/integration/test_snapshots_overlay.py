"""The overlay snapshotter against the kernel: real overlay mounts, whiteouts, read-only
views, usage, removal rules and long parent chains. Every mount is undone even on failure."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_py.errdefs import FailedPrecondition
from containerd_py.snapshots import Kind, Mount
from containerd_py.snapshots.mount import mount_all, unmount_all
from containerd_py.snapshots.overlay import OverlaySnapshotter, supported

pytestmark = pytest.mark.root


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sn = OverlaySnapshotter(root / "overlay")
        self.targets: list[Path] = []

    @contextlib.contextmanager
    def mounted(self, mounts: list[Mount]) -> Iterator[Path]:
        target = self.root / f"mnt{len(self.targets)}"
        target.mkdir()
        self.targets.append(target)
        mount_all(mounts, str(target))
        try:
            yield target
        finally:
            unmount_all(str(target))

    def close(self) -> None:
        for t in self.targets:
            try:
                unmount_all(str(t), 2)  # MNT_DETACH: never leave a mount behind
            except OSError:
                pass
        self.sn.close()


@pytest.fixture
def env(short_tmp: Path):
    try:
        supported(short_tmp)
    except Exception as e:
        pytest.skip(f"overlayfs not usable here: {e}")
    e = Env(short_tmp)
    try:
        yield e
    finally:
        e.close()


def layer(env: Env, name: str, parent: str, files: dict[str, str | None]) -> None:
    """Commit a layer that writes (or, with None, deletes) files on top of parent."""
    with env.mounted(env.sn.prepare(f"{name}-active", parent)) as root:
        for path, content in files.items():
            p = root / path
            if content is None:
                if p.is_dir() and not p.is_symlink():
                    for sub in sorted(p.rglob("*"), reverse=True):
                        sub.rmdir() if sub.is_dir() else sub.unlink()
                    p.rmdir()
                else:
                    p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(content)
    env.sn.commit(name, f"{name}-active")


def test_child_sees_parent_files_and_writes_stay_in_the_child(env: Env) -> None:
    layer(env, "base", "", {"etc/hostname": "base", "bin/sh": "shell"})
    mounts = env.sn.prepare("ctr", "base")
    assert mounts[0].type == "overlay"
    with env.mounted(mounts) as root:
        assert (root / "etc" / "hostname").read_text() == "base"
        (root / "etc" / "hostname").write_text("changed")
        (root / "new").write_text("only in ctr")
    with env.mounted(env.sn.view("check", "base")) as root:
        assert (root / "etc" / "hostname").read_text() == "base"
        assert not (root / "new").exists()


def test_deleting_a_parent_file_whites_it_out(env: Env) -> None:
    layer(env, "l1", "", {"a": "1", "b": "2", "dir/x": "x", "dir/y": "y"})
    layer(env, "l2", "l1", {"a": None, "dir": None})
    layer(env, "l3", "l2", {"dir/z": "z"})  # recreated dir: opaque, the old entries stay gone
    sn = env.sn
    l2_fs = sn.fs_path(sn.ms.snapshot(sn.ms.conn(), "l2").id)
    st = os.lstat(l2_fs / "a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # the whiteout is in the layer
    with env.mounted(env.sn.prepare("ctr", "l3")) as root:
        assert sorted(os.listdir(root)) == ["b", "dir"]
        assert sorted(os.listdir(root / "dir")) == ["z"]
    with env.mounted(env.sn.view("old", "l1")) as root:
        assert sorted(os.listdir(root)) == ["a", "b", "dir"]


@pytest.mark.parametrize("depth", [1, 2])
def test_views_are_read_only(env: Env, depth: int) -> None:
    layer(env, "l1", "", {"f": "1"})
    parent = "l1"
    if depth == 2:
        layer(env, "l2", "l1", {"g": "2"})
        parent = "l2"
    mounts = env.sn.view("v", parent)
    assert mounts[0].type == ("bind" if depth == 1 else "overlay")
    assert env.sn.stat("v").kind is Kind.VIEW
    with env.mounted(mounts) as root:
        assert (root / "f").read_text() == "1"
        with pytest.raises(OSError) as exc:
            (root / "f").write_text("no")
        assert exc.value.errno == errno.EROFS
        with pytest.raises(OSError):
            (root / "new").write_text("no")


def test_an_active_snapshot_without_parent_is_a_writable_bind(env: Env) -> None:
    with env.mounted(env.sn.prepare("scratch")) as root:
        (root / "f").write_text("ok")
    assert (env.sn.fs_path(1) / "f").read_text() == "ok"


def test_usage(env: Env) -> None:
    mounts = env.sn.prepare("a")
    empty = env.sn.usage("a")
    with env.mounted(mounts) as root:
        (root / "big").write_bytes(os.urandom(1 << 20))
        os.link(root / "big", root / "big2")
    grown = env.sn.usage("a")
    assert grown.size - empty.size >= 1 << 20 and grown.inodes == empty.inodes + 1
    env.sn.commit("A", "a")
    with env.mounted(env.sn.prepare("b", "A")) as root:
        (root / "small").write_text("x")
    assert env.sn.usage("A") == grown
    assert env.sn.usage("b").size < 1 << 20  # only the child's own files count


def test_remove_refuses_parents_and_cleanup_removes_orphans(env: Env) -> None:
    layer(env, "l1", "", {"f": "1"})
    env.sn.prepare("child", "l1")
    with pytest.raises(FailedPrecondition):
        env.sn.remove("l1")
    env.sn.remove("child")
    env.sn.remove("l1")
    (env.sn.snapshots_dir / "77" / "fs").mkdir(parents=True)
    (env.sn.snapshots_dir / "new-x").mkdir()
    env.sn.cleanup()
    assert os.listdir(env.sn.snapshots_dir) == []


def test_child_root_takes_the_parent_root_owner(env: Env) -> None:
    env.sn.prepare("a")
    os.chown(env.sn.fs_path(1), 1000, 1000)
    env.sn.commit("A", "a")
    env.sn.prepare("b", "A")
    st = os.stat(env.sn.fs_path(2))
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_a_long_chain_beyond_one_page_of_options_mounts(short_tmp: Path) -> None:
    try:
        supported(short_tmp)
    except Exception as e:
        pytest.skip(f"overlayfs not usable here: {e}")
    root = short_tmp / ("long-snapshotter-root-directory-name-" * 2)
    env = Env(short_tmp)
    env.sn.close()
    env.sn = OverlaySnapshotter(root)
    try:
        parent = ""
        for i in range(60):
            env.sn.prepare(f"a{i}", parent)
            (env.sn.fs_path(i + 1) / f"f{i}").write_text(str(i))
            env.sn.commit(f"l{i}", f"a{i}")
            parent = f"l{i}"
        mounts = env.sn.prepare("top", parent)
        assert len(",".join(mounts[0].options)) > 4096
        cwd = os.getcwd()
        with env.mounted(mounts) as target:
            assert os.getcwd() == cwd  # the chdir happened in a helper thread only
            assert len([n for n in os.listdir(target) if n.startswith("f")]) == 60
            assert (target / "f0").read_text() == "0" and (target / "f59").read_text() == "59"
    finally:
        env.close()
