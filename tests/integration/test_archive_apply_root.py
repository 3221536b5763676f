"""apply_layer as root on the real kernel: owners, setuid after chown, devices and fifos,
xattrs (user.* on tmpfs and ext4, trusted.*, security.capability), and both whiteout forms,
the overlay one checked through a real overlay mount. Also write_layer of an upperdir."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_py.archive import apply_layer, write_layer
from tests.unit.test_archive_apply import E, gzip_layer, tar_layer, zstd_layer
from tests.unit.test_archive_diff import snapshot

pytestmark = pytest.mark.root

# security.capability for cap_net_bind_service+ep (VFS_CAP_REVISION_2, effective bit set):
# a binary value, with NUL bytes, that must arrive byte for byte.
CAP_NET_BIND = bytes.fromhex("01000002" + "00040000" + "00000000" + "00000000" + "00000000")


def apply(layer: bytes, dest: Path, **kw: object) -> int:
    return apply_layer(io.BytesIO(layer), str(dest), **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def mounted(kind: str, target: Path, options: str = "") -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    args = ["mount", "-t", kind, kind, str(target)]
    if options:
        args[3:3] = ["-o", options]
    subprocess.run(args, check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True, capture_output=True)


@pytest.mark.parametrize("compress", [None, gzip_layer, zstd_layer], ids=["tar", "gzip", "zstd"])
def test_owners_and_setuid_after_chown(tmp_path: Path, compress) -> None:
    raw = tar_layer(
        E("home", "dir"),
        E("home/user", "dir", uid=1000, gid=1000, mode=0o750),
        E("home/user/file", data=b"x", uid=1000, gid=1000),
        E("home/user/link", "symlink", link="file", uid=1002, gid=1003),
        E("bin", "dir"),
        E("bin/su", data=b"#!", mode=0o4755, uid=0, gid=0),
        E("bin/setuid-user", data=b"#!", mode=0o4755, uid=1000, gid=1000),
        E("bin/setgid", data=b"#!", mode=0o2755, uid=0, gid=1000),
        E("shared", "dir", mode=0o3777, uid=1000, gid=1000),
    )
    dest = tmp_path / "d"
    dest.mkdir()
    assert apply(compress(raw) if compress else raw, dest) == len(raw)
    st = os.stat(dest / "home/user/file")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    st = os.stat(dest / "home/user")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o750)
    st = os.lstat(dest / "home/user/link")
    assert (st.st_uid, st.st_gid) == (1002, 1003)
    assert stat.S_IMODE(os.stat(dest / "bin/su").st_mode) == 0o4755
    # chown clears setuid: it only survives because the mode comes after the owner.
    st = os.stat(dest / "bin/setuid-user")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (1000, 0o4755)
    assert stat.S_IMODE(os.stat(dest / "bin/setgid").st_mode) == 0o2755
    assert stat.S_IMODE(os.stat(dest / "shared").st_mode) == 0o3777


def test_same_owner_false_keeps_files_ours(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    apply(tar_layer(E("f", uid=1000, gid=1000)), dest, same_owner=False)
    assert os.stat(dest / "f").st_uid == os.geteuid()


def test_devices_fifos_links(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    warnings: list[str] = []
    apply(
        tar_layer(
            E("dev", "dir"),
            E("dev/null", "char", dev=(1, 3), mode=0o666),
            E("dev/loop0", "block", dev=(7, 0), mode=0o660, gid=6),
            E("dev/initctl", "fifo", mode=0o600),
            E("dev/stdout", "symlink", link="/proc/self/fd/1"),
            E("dev/null2", "hardlink", link="dev/null"),
        ),
        dest,
        warnings=warnings,
    )
    assert warnings == []
    null = os.lstat(dest / "dev/null")
    assert (
        stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    )
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(dest / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0) and loop.st_gid == 6
    assert stat.S_ISFIFO(os.lstat(dest / "dev/initctl").st_mode)
    assert os.readlink(dest / "dev/stdout") == "/proc/self/fd/1"
    assert os.lstat(dest / "dev/null2").st_ino == null.st_ino


def _xattr_layer() -> bytes:
    return tar_layer(
        E("f", data=b"x", pax={"SCHILY.xattr.user.note": "hello"}),
        E(
            "ping",
            data=b"#!",
            mode=0o755,
            uid=1000,
            gid=1000,
            pax={
                "SCHILY.xattr.security.capability": CAP_NET_BIND.decode("utf-8", "surrogateescape")
            },
        ),
        E("t", data=b"", pax={"SCHILY.xattr.trusted.mark": "1"}),
        E("d", "dir", pax={"SCHILY.xattr.user.dir": "yes"}),
    )


def _check_xattrs(dest: Path) -> None:
    assert os.getxattr(dest / "f", "user.note") == b"hello"
    assert os.getxattr(dest / "d", "user.dir") == b"yes"
    assert os.getxattr(dest / "t", "trusted.mark") == b"1"
    # chown would have cleared the capability: xattrs come after the owner.
    assert os.getxattr(dest / "ping", "security.capability") == CAP_NET_BIND
    assert os.stat(dest / "ping").st_uid == 1000


def test_xattrs_on_ext4_or_whatever_tmp_is(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    apply(_xattr_layer(), dest)
    _check_xattrs(dest)


def test_xattrs_on_tmpfs(tmp_path: Path) -> None:
    with mounted("tmpfs", tmp_path / "tmpfs") as dest:
        apply(_xattr_layer(), dest)
        _check_xattrs(dest)


def test_mtimes_as_root(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    apply(
        tar_layer(
            E("d", "dir", mtime=100, uid=1000),
            E("d/f", mtime=200, uid=1000),
            E("d/dev", "char", dev=(1, 3), mtime=300),
            E("d/l", "symlink", link="f", mtime=400),
        ),
        dest,
    )
    assert [os.lstat(dest / p).st_mtime for p in ("d", "d/f", "d/dev", "d/l")] == [
        100,
        200,
        300,
        400,
    ]


LOWER = (
    E("etc", "dir", mode=0o755),
    E("etc/keep", data=b"keep"),
    E("etc/gone", data=b"gone"),
    E("var", "dir"),
    E("var/cache", "dir", mode=0o750, uid=1000, gid=1000, mtime=1234),
    E("var/cache/old1", data=b"1"),
    E("var/cache/sub", "dir"),
    E("var/cache/sub/old2", data=b"2"),
    E("opt", "dir"),
    E("opt/tree", "dir"),
    E("opt/tree/leaf", data=b"l"),
)
UPPER = (
    E("etc", "dir", mode=0o755),
    E("etc/.wh.gone"),
    E("etc/new", data=b"new"),
    # No var/ nor var/cache/ entry: created in an upperdir, they must not mask the lower
    # directories' mode, owner and mtime.
    E("var/cache/.wh..wh..opq"),
    E("var/cache/fresh", data=b"f"),
    E(".wh.opt"),
    E("var/cache/sub2/x", data=b"x"),
)


def test_whiteouts_delete_mode_on_a_copy(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    apply(tar_layer(*LOWER), lower)
    copy = tmp_path / "copy"
    shutil.copytree(lower, copy, symlinks=True)
    apply(tar_layer(*UPPER), copy)
    assert sorted(os.listdir(copy / "etc")) == ["keep", "new"]
    assert sorted(os.listdir(copy / "var/cache")) == ["fresh", "sub2"]
    assert not (copy / "opt").exists()
    assert (lower / "etc/gone").exists()  # the copy changed, not the lower tree


def test_whiteouts_overlay_mode_through_a_real_mount(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    apply(tar_layer(*LOWER), lower)
    upper = tmp_path / "upper"
    upper.mkdir()
    apply(tar_layer(*UPPER), upper, whiteout_mode="overlay", parents=[str(lower)])
    gone = os.lstat(upper / "etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(upper / "var/cache", "trusted.overlay.opaque") == b"y"
    # var/cache was made for the opaque marker: with the lower one's mode, owner and mtime.
    cache = os.stat(upper / "var/cache")
    assert (stat.S_IMODE(cache.st_mode), cache.st_uid, cache.st_mtime) == (0o750, 1000, 1234)

    work = tmp_path / "work"
    work.mkdir()
    merged = tmp_path / "merged"
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    with mounted("overlay", merged, options):
        assert sorted(os.listdir(merged / "etc")) == ["keep", "new"]
        assert sorted(os.listdir(merged / "var/cache")) == ["fresh", "sub2"]
        assert not (merged / "opt").exists()
        view = snapshot(merged)

    # The same layer in delete mode onto a copy gives what the mount showed.
    copy = tmp_path / "copy"
    shutil.copytree(lower, copy, symlinks=True)
    apply(tar_layer(*UPPER), copy)
    assert snapshot(copy) == view

    # And the upperdir diffs back to a layer with the same meaning.
    buf = io.BytesIO()
    write_layer(None, str(upper), buf, overlay_upper=True)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        names = tar.getnames()
    assert {"etc/.wh.gone", ".wh.opt", "var/cache/.wh..wh..opq", "var/cache/fresh"} <= set(names)
    assert names.index("var/cache") + 1 == names.index("var/cache/.wh..wh..opq")
    again = tmp_path / "again"
    shutil.copytree(lower, again, symlinks=True)
    apply(buf.getvalue(), again)
    assert snapshot(again) == view


def test_a_directory_replacing_a_whiteout_in_overlay_mode_is_opaque(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    apply(tar_layer(E(".wh.opt"), E("opt", "dir"), E("opt/new")), upper, whiteout_mode="overlay")
    assert os.getxattr(upper / "opt", "trusted.overlay.opaque") == b"y"
    assert os.listdir(upper / "opt") == ["new"]
