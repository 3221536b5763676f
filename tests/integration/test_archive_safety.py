"""Hostile layers: every way out of the snapshot directory is refused with a clear error,
and nothing outside it is created, changed or deleted.

The tree under test is tmp_path/jail/dest; everything else under tmp_path (an "outside"
directory holding a precious file, the jail around dest) is fingerprinted before and
compared after each apply.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from containerd_py.archive import ArchiveError, UnsafeArchiveError, apply_layer
from tests.unit.test_archive_apply import E, tar_layer

pytestmark = pytest.mark.root

MODES = ["delete", "overlay"]


class Jail:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        (self.outside / "precious").write_text("keep me")
        self.dest = tmp_path / "jail" / "dest"
        self.dest.mkdir(parents=True)

    def fingerprint(self) -> dict[str, tuple[int, int, int]]:
        """Everything outside dest: path -> (mode, size, mtime)."""
        out = {}
        for root, dirs, files in os.walk(self.root):
            if Path(root) == self.dest.parent:
                dirs[:] = [d for d in dirs if d != "dest"]
            for name in dirs + files:
                p = os.path.join(root, name)
                st = os.lstat(p)
                out[p] = (st.st_mode, st.st_size, st.st_mtime_ns)
        return out

    def apply(self, layer: bytes, mode: str = "delete") -> int:
        return apply_layer(io.BytesIO(layer), str(self.dest), whiteout_mode=mode)  # type: ignore[arg-type]

    def refused(self, layer: bytes, mode: str = "delete", error=UnsafeArchiveError) -> str:  # type: ignore[no-untyped-def]
        before = self.fingerprint()
        with pytest.raises(error) as info:
            self.apply(layer, mode)
        assert self.fingerprint() == before, "something outside the snapshot changed"
        assert (self.outside / "precious").read_text() == "keep me"
        assert os.listdir(self.outside) == ["precious"]
        assert not Path("/abs").exists()
        return str(info.value)


@pytest.fixture
def jail(tmp_path: Path) -> Jail:
    return Jail(tmp_path)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name",
    [
        "../../escape",
        "../outside/pwned",
        "/abs/path",
        "a/../../escape",
        "./../escape",
        "a/b/../../..",
    ],
)
def test_names_that_climb_out(jail: Jail, mode: str, name: str) -> None:
    message = jail.refused(tar_layer(E(name, data=b"x")), mode)
    assert message == f"layer entry {name!r} would be written outside the snapshot"


@pytest.mark.parametrize("mode", MODES)
def test_absolute_symlink_then_write_through_it(jail: Jail, mode: str) -> None:
    layer = tar_layer(E("evil", "symlink", link=str(jail.outside)), E("evil/pwned", data=b"x"))
    message = jail.refused(layer, mode)
    assert "'evil/pwned' would be written outside the snapshot" in message
    assert "through symlink 'evil'" in message


@pytest.mark.parametrize("mode", MODES)
def test_symlink_planted_in_one_layer_used_in_the_next(jail: Jail, mode: str) -> None:
    jail.apply(tar_layer(E("sub", "dir"), E("sub/evil", "symlink", link="../../../outside")), mode)
    for attack in (
        E("sub/evil/pwned", data=b"x"),
        E("sub/evil/newdir", "dir"),
        E("sub/evil/fifo", "fifo"),
        E("sub/evil/link", "symlink", link="/etc/passwd"),
        E("sub/evil/.wh.precious"),  # a whiteout through the link would delete outside
        E("sub/evil/.wh..wh..opq"),  # and an opaque marker would empty the directory
    ):
        jail.refused(tar_layer(attack), mode)


@pytest.mark.parametrize("mode", MODES)
def test_symlink_chain_climbing_out(jail: Jail, mode: str) -> None:
    layer = tar_layer(
        E("c1", "symlink", link="c2"),
        E("d", "dir"),
        E("c2", "symlink", link="d/c3"),
        E("d/c3", "symlink", link="../../.."),
        E("c1/outside/pwned", data=b"x"),
    )
    jail.refused(layer, mode)


def test_symlink_loops_are_an_error(jail: Jail) -> None:
    layer = tar_layer(E("loop", "symlink", link="loop"), E("loop/x", data=b"x"))
    assert "too many levels" in jail.refused(layer, error=ArchiveError)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["/etc/shadow", "../../../../etc/shadow", "../outside/precious"])
def test_hard_links_out_of_the_snapshot(jail: Jail, mode: str, target: str) -> None:
    message = jail.refused(tar_layer(E("shadow", "hardlink", link=target)), mode)
    assert message == f"layer entry 'shadow' links to {target!r}, outside the snapshot"
    assert not (jail.dest / "shadow").exists()


@pytest.mark.parametrize("mode", MODES)
def test_hard_link_through_a_symlink(jail: Jail, mode: str) -> None:
    layer = tar_layer(
        E("evil", "symlink", link=str(jail.outside)),
        E("stolen", "hardlink", link="evil/precious"),
    )
    assert "outside the snapshot" in jail.refused(layer, mode)
    assert os.stat(jail.outside / "precious").st_nlink == 1


def test_symlinks_that_stay_inside_are_fine(jail: Jail) -> None:
    jail.apply(
        tar_layer(
            E("usr/lib", "dir"),
            E("lib", "symlink", link="usr/lib"),
            E("lib/x", data=b"x"),
            E("up", "symlink", link="usr/../usr/lib/."),
            E("up/y", data=b"y"),
            # The link text itself may point anywhere: only writing through it matters.
            E("etc-link", "symlink", link="/etc"),
        )
    )
    assert (jail.dest / "usr/lib/x").read_bytes() == b"x"
    assert (jail.dest / "usr/lib/y").read_bytes() == b"y"
