"""write_layer on two full trees (the native snapshotter's diff): applying the diff onto the
lower tree gives the upper tree back, and the same trees always give the same bytes.
The overlay-upperdir form needs whiteout devices and trusted xattrs: see
tests/integration/test_archive_apply_root.py."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

from containerd_py.archive import apply_layer, write_layer
from tests.unit.test_archive_apply import E, tar_layer

BASE = (
    E("etc", "dir"),
    E("etc/passwd", data=b"root:x:0:0\n"),
    E("etc/keep", data=b"same"),
    E("var", "dir"),
    E("var/cache", "dir"),
    E("var/cache/a", data=b"a"),
    E("var/cache/b", data=b"b"),
    E("bin", "dir"),
    E("bin/tool", data=b"v1", mode=0o755),
    E("bin/alias", "symlink", link="tool"),
    E("gone", "dir"),
    E("gone/file"),
    E("was-dir", "dir"),
    E("was-dir/x"),
)


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def snapshot(path: Path) -> dict[str, tuple]:
    """What a tree holds, as comparable values (mtimes of files and symlinks included)."""
    out: dict[str, tuple] = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                out[rel] = ("f", st.st_mode, Path(full).read_bytes(), st.st_mtime_ns // 10**9)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(full))
            else:
                out[rel] = ("d", st.st_mode)
    return out


def make_trees(tmp_path: Path) -> tuple[Path, Path]:
    lower = tmp_path / "lower"
    lower.mkdir()
    apply_layer(io.BytesIO(tar_layer(*BASE)), str(lower), same_owner=False)
    upper = tmp_path / "upper"
    shutil.copytree(lower, upper, symlinks=True)  # copy2: mtimes kept, as a snapshot copy
    (upper / "etc/passwd").write_bytes(b"root:x:0:0\nuser:x:1000:1000\n")
    (upper / "etc/new").write_bytes(b"new")
    (upper / "var/cache/a").unlink()
    shutil.rmtree(upper / "gone")
    shutil.rmtree(upper / "was-dir")
    (upper / "was-dir").write_bytes(b"now a file")
    os.chmod(upper / "bin/tool", 0o700)
    (upper / "bin/alias").unlink()
    os.symlink("../etc/new", upper / "bin/alias")
    os.link(upper / "etc/new", upper / "etc/new-link")
    return lower, upper


def test_native_diff_applied_to_lower_gives_upper(tmp_path: Path) -> None:
    lower, upper = make_trees(tmp_path)
    buf = io.BytesIO()
    write_layer(str(lower), str(upper), buf, overlay_upper=False)
    names = [m.name for m in members(buf.getvalue())]
    assert "gone/file" not in names and ".wh.gone" in names
    assert "var/cache/.wh.a" in names and "var/cache/b" not in names
    assert "etc/keep" not in names
    target = tmp_path / "target"
    shutil.copytree(lower, target, symlinks=True)
    apply_layer(io.BytesIO(buf.getvalue()), str(target), same_owner=False)
    assert snapshot(target) == snapshot(upper)
    assert os.stat(target / "etc/new-link").st_ino == os.stat(target / "etc/new").st_ino


def test_diff_from_scratch_and_determinism(tmp_path: Path) -> None:
    _, upper = make_trees(tmp_path)
    one, two = io.BytesIO(), io.BytesIO()
    write_layer(None, str(upper), one, overlay_upper=False)
    write_layer(None, str(upper), two, overlay_upper=False)
    assert one.getvalue() == two.getvalue()
    entries = members(one.getvalue())
    names = [m.name for m in entries]
    assert names.index("etc") < names.index("etc/passwd")
    assert all(m.uname == "" and m.gname == "" for m in entries)
    target = tmp_path / "fresh"
    target.mkdir()
    apply_layer(io.BytesIO(one.getvalue()), str(target), same_owner=False)
    assert snapshot(target) == snapshot(upper)


def test_unchanged_trees_give_an_empty_layer(tmp_path: Path) -> None:
    lower, _ = make_trees(tmp_path)
    same = tmp_path / "same"
    shutil.copytree(lower, same, symlinks=True)
    buf = io.BytesIO()
    write_layer(str(lower), str(same), buf, overlay_upper=False)
    assert members(buf.getvalue()) == []
