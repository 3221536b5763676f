"""Mount options and symlink-safe path joining (pure functions, no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oci_runtime.linux.flags import Mount as M
from oci_runtime.rootfs import MountError, parse_options, secure_join


def test_flags_and_data() -> None:
    o = parse_options(["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])
    assert o.flags == M.NOSUID | M.NOEXEC | M.NODEV
    assert o.data == "mode=1777,size=65536k"
    assert o.propagation == 0


def test_later_option_wins() -> None:
    assert parse_options(["ro", "rw"]).flags & M.RDONLY == 0
    assert parse_options(["rw", "ro"]).flags & M.RDONLY


def test_bind_and_propagation() -> None:
    o = parse_options(["rbind", "ro", "rprivate"])
    assert o.flags & (M.BIND | M.REC | M.RDONLY) == M.BIND | M.REC | M.RDONLY
    assert o.propagation == M.PRIVATE | M.REC
    assert parse_options(["slave"]).propagation == M.SLAVE


def test_idmap_refused() -> None:
    with pytest.raises(MountError, match="idmap"):
        parse_options(["idmap"])


def test_symlinks_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../outside", root / "rel")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert secure_join(str(root), "/abs/passwd") == str(root / "etc" / "passwd")
    assert secure_join(str(root), "/rel/x") == str(root / "outside" / "x")
    assert secure_join(str(root), "/../../etc") == str(root / "etc")
    with pytest.raises(MountError, match="too many levels"):
        secure_join(str(root), "/loop1/x")


_parts = st.lists(st.sampled_from(["a", "b", "..", ".", "lnk", "abs", "up"]), max_size=8)


@settings(max_examples=200, deadline=None)
@given(_parts)
def test_never_escapes(tmp_path_factory, parts: list[str]) -> None:
    root = tmp_path_factory.mktemp("r")
    (root / "a" / "b").mkdir(parents=True)
    if not (root / "lnk").exists():
        os.symlink("a/b/../..", root / "lnk")
        os.symlink("/a", root / "abs")
        os.symlink("../../..", root / "a" / "up")
    joined = secure_join(str(root), "/" + "/".join(parts))
    assert joined == str(root) or joined.startswith(str(root) + os.sep)
