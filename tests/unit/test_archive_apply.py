"""apply_layer without privileges: formats, whiteouts, links, names, modes, times, and the
refusal of entries that leave the snapshot. Owners, devices and overlay mounts are in
tests/integration/test_archive_apply_root.py; the hostile layers in test_archive_safety.py.

The layer builders at the top are shared with those modules.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from containerd_py.archive import (
    ArchiveError,
    DiffIDMismatchError,
    UnsafeArchiveError,
    UnsupportedCompressionError,
    apply_layer,
)


@dataclass
class E:
    """One tar entry for a hand-made layer."""

    name: str
    kind: str = "file"  # file dir symlink hardlink char block fifo
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_600_000_000
    link: str = ""
    dev: tuple[int, int] = (0, 0)
    pax: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_layer(*entries: E) -> bytes:
    """An uncompressed layer tar with exactly these entries, in this order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TYPES[e.kind]
            info.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            info.uid, info.gid, info.mtime = e.uid, e.gid, e.mtime
            info.uname = info.gname = ""
            info.linkname = e.link
            info.devmajor, info.devminor = e.dev
            info.pax_headers = dict(e.pax)
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def gzip_layer(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zstd_layer(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def apply(layer: bytes, dest: Path, **kw: object) -> int:
    kw.setdefault("same_owner", os.geteuid() == 0)
    return apply_layer(io.BytesIO(layer), str(dest), **kw)  # type: ignore[arg-type]


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "rootfs"
    d.mkdir()
    return d


BASIC = (
    E("etc", "dir"),
    E("etc/hostname", data=b"box\n"),
    E("bin", "dir"),
    E("bin/busybox", data=b"\x7fELF...", mode=0o755),
    E("bin/sh", "hardlink", link="bin/busybox"),
    E("bin/ls", "symlink", link="busybox"),
)


@pytest.mark.parametrize("compress", [None, gzip_layer, zstd_layer], ids=["tar", "gzip", "zstd"])
def test_plain_gzip_and_zstd_layers_unpack_the_same(dest: Path, compress) -> None:
    raw = tar_layer(*BASIC)
    size = apply(compress(raw) if compress else raw, dest)
    assert size == len(raw)
    assert (dest / "etc/hostname").read_bytes() == b"box\n"
    assert os.readlink(dest / "bin/ls") == "busybox"
    assert os.stat(dest / "bin/sh").st_ino == os.stat(dest / "bin/busybox").st_ino
    assert stat.S_IMODE(os.stat(dest / "bin/busybox").st_mode) == 0o755


def test_diff_id_is_checked(dest: Path) -> None:
    raw = tar_layer(*BASIC)
    good = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert apply(gzip_layer(raw), dest, expected_diff_id=good) == len(raw)
    with pytest.raises(DiffIDMismatchError):
        apply(raw, dest, expected_diff_id="sha256:" + "0" * 64)


def test_media_type_is_checked_but_the_bytes_decide_compression(dest: Path) -> None:
    raw = tar_layer(E("a", data=b"1"))
    # Mislabelled (a plain tar as tar+gzip) still unpacks, as containerd sniffs too.
    apply(raw, dest, media_type="application/vnd.oci.image.layer.v1.tar+gzip")
    with pytest.raises(UnsupportedCompressionError):
        apply(raw, dest, media_type="application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
    with pytest.raises(UnsupportedCompressionError):
        apply(raw, dest, media_type="application/vnd.oci.image.config.v1+json")


def test_empty_stream_is_an_empty_layer_and_garbage_is_an_error(dest: Path) -> None:
    assert apply(b"", dest) == 0
    with pytest.raises(ArchiveError):
        apply(b"this is not a tar archive, not at all" * 40, dest)
    with pytest.raises(ArchiveError):
        apply(gzip_layer(tar_layer(*BASIC))[:-30], dest)


def test_whiteout_removes_lower_entries_only(dest: Path) -> None:
    apply(tar_layer(E("a", data=b"lower"), E("d", "dir"), E("d/x", data=b"x"), E("k")), dest)
    apply(
        tar_layer(
            E(".wh.a"),
            E(".wh.d"),
            E(".wh.missing"),
            # Same layer: a whiteout never hides its own layer's entries, before or after.
            E(".wh.n"),
            E("n", data=b"new"),
            E("k", data=b"kept"),
            E(".wh.k"),
        ),
        dest,
    )
    assert sorted(os.listdir(dest)) == ["k", "n"]
    assert (dest / "k").read_bytes() == b"kept"


def test_opaque_directory_keeps_only_this_layers_entries(dest: Path) -> None:
    apply(tar_layer(E("d", "dir"), E("d/old"), E("d/sub", "dir"), E("d/sub/old2"), E("e")), dest)
    apply(
        tar_layer(
            E("d", "dir"),
            E("d/sub", "dir"),
            E("d/sub/new2", data=b"2"),  # written before the marker: must survive it
            E("d/.wh..wh..opq"),
            E("d/new", data=b"1"),
        ),
        dest,
    )
    assert sorted(os.listdir(dest / "d")) == ["new", "sub"]
    assert os.listdir(dest / "d/sub") == ["new2"]
    assert (dest / "e").exists()


def test_aufs_metadata_is_skipped(dest: Path) -> None:
    apply(tar_layer(E(".wh..wh.plnk", "dir"), E(".wh..wh.plnk/123.456"), E("a")), dest)
    assert os.listdir(dest) == ["a"]


def test_hard_links_to_this_layer_and_to_lower_layers(dest: Path) -> None:
    apply(tar_layer(E("lower", data=b"L")), dest)
    apply(
        tar_layer(
            E("f", data=b"F"), E("g", "hardlink", link="f"), E("h", "hardlink", link="lower")
        ),
        dest,
    )
    assert os.stat(dest / "g").st_ino == os.stat(dest / "f").st_ino
    assert os.stat(dest / "h").st_ino == os.stat(dest / "lower").st_ino
    with pytest.raises(ArchiveError, match="not found"):
        apply(tar_layer(E("x", "hardlink", link="nope")), dest)


def test_hard_link_to_a_symlink_links_the_symlink_itself(dest: Path, tmp_path: Path) -> None:
    apply(tar_layer(E("s", "symlink", link="/etc/passwd"), E("t", "hardlink", link="s")), dest)
    assert os.path.islink(dest / "t")
    assert os.lstat(dest / "t").st_ino == os.lstat(dest / "s").st_ino


def test_long_names_and_link_targets_via_pax(dest: Path) -> None:
    deep = "/".join(["directory-with-a-long-name"] * 6)
    target = deep + "/file-" + "x" * 120
    apply(
        tar_layer(
            E(deep, "dir"),
            E(target, data=b"deep"),
            E("lnk", "symlink", link=target),
            E("hl", "hardlink", link=target),
        ),
        dest,
    )
    assert (dest / target).read_bytes() == b"deep"
    assert os.readlink(dest / "lnk") == target
    assert (dest / "hl").read_bytes() == b"deep"


def test_mtimes_including_directories_after_their_children(dest: Path) -> None:
    apply(
        tar_layer(
            E("d", "dir", mtime=1_000_000),
            E("d/f", data=b"x", mtime=2_000_000),
            E("d/s", "symlink", link="f", mtime=3_000_000),
            E("p", data=b"y", pax={"mtime": "1700000000.123456789"}),
        ),
        dest,
    )
    assert os.stat(dest / "d").st_mtime == 1_000_000
    assert os.stat(dest / "d/f").st_mtime == 2_000_000
    assert os.lstat(dest / "d/s").st_mtime == 3_000_000
    assert os.stat(dest / "p").st_mtime_ns == 1_700_000_000_123_456_789


def test_modes_including_setuid_and_sticky(dest: Path) -> None:
    apply(
        tar_layer(
            E("tmp", "dir", mode=0o1777),
            E("su", data=b"", mode=0o4755),
            E("ro", "dir", mode=0o555),
            E("ro/inside", data=b"z", mode=0o400),
        ),
        dest,
    )
    assert stat.S_IMODE(os.stat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(dest / "su").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(dest / "ro").st_mode) == 0o555
    assert (dest / "ro/inside").read_bytes() == b"z"


def test_entries_replace_what_is_there_without_following_symlinks(
    dest: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"untouched")
    apply(tar_layer(E("a", "dir"), E("a/x"), E("b"), E("c", "symlink", link=str(outside))), dest)
    apply(tar_layer(E("a", data=b"now a file"), E("b", "dir"), E("c", data=b"replaced")), dest)
    assert (dest / "a").read_bytes() == b"now a file"
    assert (dest / "b").is_dir()
    assert not os.path.islink(dest / "c")
    assert (dest / "c").read_bytes() == b"replaced"
    assert outside.read_bytes() == b"untouched"


def test_parents_missing_from_the_tar_are_created(dest: Path) -> None:
    apply(tar_layer(E("x/y/z", data=b"1")), dest)
    assert (dest / "x/y/z").read_bytes() == b"1"
    assert stat.S_IMODE(os.stat(dest / "x").st_mode) == 0o755


def test_symlinks_inside_the_snapshot_are_followed(dest: Path) -> None:
    apply(tar_layer(E("usr/lib", "dir"), E("lib", "symlink", link="usr/lib")), dest)
    apply(tar_layer(E("lib/libc.so", data=b"c")), dest)
    assert (dest / "usr/lib/libc.so").read_bytes() == b"c"


def test_escapes_are_refused(dest: Path, tmp_path: Path) -> None:
    for bad in ("../escape", "/abs/path", "a/../../escape"):
        with pytest.raises(UnsafeArchiveError, match="outside the snapshot"):
            apply(tar_layer(E(bad, data=b"x")), dest)
    with pytest.raises(UnsafeArchiveError):
        apply(tar_layer(E("evil", "symlink", link=str(tmp_path)), E("evil/pwned")), dest)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path.parent / "escape").exists()


def test_user_xattrs_are_applied_and_overlay_ones_dropped(dest: Path) -> None:
    probe = dest / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip("no user xattrs on this file system")
        raise
    warnings: list[str] = []
    apply(
        tar_layer(
            E("f", pax={"SCHILY.xattr.user.comment": "hello"}),
            E("d", "dir", pax={"SCHILY.xattr.user.dir": "yes"}),
            E("g", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
        ),
        dest,
        warnings=warnings,
    )
    assert os.getxattr(dest / "f", "user.comment") == b"hello"
    assert os.getxattr(dest / "d", "user.dir") == b"yes"
    assert any("trusted.overlay.redirect" in w for w in warnings)


def test_devices_that_cannot_be_made_are_skipped_with_a_warning(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kw: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "mknod", refuse)
    warnings: list[str] = []
    apply(
        tar_layer(E("dev", "dir"), E("dev/null", "char", dev=(1, 3)), E("ok")),
        dest,
        warnings=warnings,
    )
    assert not (dest / "dev/null").exists()
    assert (dest / "ok").exists()
    assert warnings == ["skipped device 'dev/null' (1:3): mknod not permitted"]
    # An overlay whiteout is never skipped: the deleted file would come back.
    with pytest.raises(ArchiveError, match="whiteout"):
        apply(tar_layer(E(".wh.gone")), dest, whiteout_mode="overlay")


def test_unsupported_entry_types_are_errors(dest: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("weird")
        info.type = b"V"  # a volume header
        tar.addfile(info)
    with pytest.raises(ArchiveError):
        apply(buf.getvalue(), dest)
