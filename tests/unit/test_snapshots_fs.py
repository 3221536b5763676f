"""copy_tree, disk_usage and remove_tree: what the native snapshotter and removal rely on."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from containerd_py.snapshots import fs


def xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    os.removexattr(path, "user.probe")
    return True


def test_copy_tree_keeps_types_modes_links_times(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f").write_bytes(b"payload")
    os.chmod(src / "a" / "b" / "f", 0o2751)
    os.symlink("/nonexistent/target", src / "dangling")
    os.symlink("a", src / "dirlink")
    os.link(src / "a" / "b" / "f", src / "a" / "hard1")
    os.link(src / "a" / "b" / "f", src / "hard2")
    os.mkfifo(src / "fifo", 0o640)
    os.chmod(src / "a", 0o711)
    os.utime(src / "a" / "b", ns=(1_000_000_000, 2_000_000_000))
    os.utime(src / "dangling", ns=(3_000_000_000, 4_000_000_000), follow_symlinks=False)
    fs.copy_tree(str(src), str(dst))

    assert (dst / "a" / "b" / "f").read_bytes() == b"payload"
    assert stat.S_IMODE(os.stat(dst / "a" / "b" / "f").st_mode) == 0o2751
    assert stat.S_IMODE(os.stat(dst / "a").st_mode) == 0o711
    assert os.readlink(dst / "dangling") == "/nonexistent/target"
    assert os.lstat(dst / "dangling").st_mtime_ns == 4_000_000_000
    assert os.path.islink(dst / "dirlink")
    ino = os.stat(dst / "a" / "b" / "f").st_ino
    assert os.stat(dst / "a" / "hard1").st_ino == ino == os.stat(dst / "hard2").st_ino
    assert os.stat(dst / "a" / "b" / "f").st_nlink == 3
    assert stat.S_ISFIFO(os.stat(dst / "fifo").st_mode)
    # Directory times survive their contents being written.
    assert os.stat(dst / "a" / "b").st_mtime_ns == 2_000_000_000


def test_copy_tree_keeps_user_xattrs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    if not xattrs_supported(src / "f"):
        pytest.skip("no user xattrs on this filesystem")
    os.setxattr(src / "f", "user.note", b"kept")
    os.setxattr(src, "user.dir", b"too")
    fs.copy_tree(str(src), str(tmp_path / "dst"))
    assert os.getxattr(tmp_path / "dst" / "f", "user.note") == b"kept"
    assert os.getxattr(tmp_path / "dst", "user.dir") == b"too"


@pytest.mark.root
def test_copy_tree_keeps_owners_devices_and_trusted_xattrs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 1234, 5678)
    os.chmod(src / "f", 0o4755)  # chown first in the copy, or this bit would be cleared
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(src / "whiteout", stat.S_IFCHR, os.makedev(0, 0))  # overlay's deletion marker
    os.symlink("f", src / "l")
    os.chown(src / "l", 42, 43, follow_symlinks=False)
    (src / "opaque").mkdir()
    os.setxattr(src / "opaque", "trusted.overlay.opaque", b"y")
    dst = tmp_path / "dst"
    fs.copy_tree(str(src), str(dst))
    st = os.stat(dst / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4755)
    st = os.stat(dst / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert os.stat(dst / "whiteout").st_rdev == 0
    assert (os.lstat(dst / "l").st_uid, os.lstat(dst / "l").st_gid) == (42, 43)
    assert os.getxattr(dst / "opaque", "trusted.overlay.opaque") == b"y"


def test_disk_usage(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 50_000)
    os.link(tmp_path / "d" / "f", tmp_path / "g")
    os.symlink("d", tmp_path / "s")
    u = fs.disk_usage(str(tmp_path))
    assert u.inodes == 4  # root, d, f (once), s
    assert u.size >= 50_000
    assert fs.disk_usage(str(tmp_path / "missing")) == (0, 0)


def test_remove_tree(tmp_path: Path) -> None:
    t = tmp_path / "t"
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "b" / "f").write_text("x")
    os.symlink(str(tmp_path / "outside"), t / "link-out")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_text("keep")
    os.chmod(t / "a" / "b", 0o500)  # not writable: root ignores it, others need the bit
    if os.geteuid() != 0:
        os.chmod(t / "a" / "b", 0o700)
    fs.remove_tree(str(t))
    assert not t.exists()
    assert (tmp_path / "outside" / "keep").exists()
    fs.remove_tree(str(t))  # already gone: fine


def test_mountpoints_under_parses_escapes(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 27 0:21 / /proc rw - proc proc rw\n"
        "90 27 0:50 / /var/lib/x/snap\\040shot/1/fs/mnt rw - tmpfs t rw\n"
        "91 27 0:51 / /var/lib/x/snap\\040shot rw - tmpfs t rw\n"
    )
    assert fs.mountpoints_under("/var/lib/x/snap shot", str(info)) == {
        "/var/lib/x/snap shot/1/fs/mnt"
    }


@pytest.mark.root
def test_remove_tree_never_enters_a_mount(tmp_path: Path) -> None:
    from containerd_py.snapshots.mount import Mount, unmount

    t = tmp_path / "t"
    (t / "inner").mkdir(parents=True)
    (t / "file").write_text("x")
    src = tmp_path / "src"
    src.mkdir()
    (src / "precious").write_text("do not delete")
    Mount("bind", str(src), ["rbind"]).mount(str(t / "inner"))
    try:
        with pytest.raises(OSError, match="mounts inside"):
            fs.remove_tree(str(t))
        assert (src / "precious").exists()
        assert not (t / "file").exists()
    finally:
        unmount(str(t / "inner"))
    fs.remove_tree(str(t))
    assert not t.exists()
