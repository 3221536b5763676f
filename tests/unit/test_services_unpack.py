"""How the unpacker reaches a snapshot: straight into a directory when the mounts allow
(a writable bind, an overlay's upperdir), through a temporary mount otherwise."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from containerd_py.images.manifest import Descriptor
from containerd_py.snapshots.mount import Mount
from containerd_py.unpack import Unpacker, direct_target
from tests.unit.services_stack import layer_tar


def test_direct_targets() -> None:
    assert direct_target([Mount("bind", "/s/1/fs", ("rw", "rbind"))]) == ("/s/1/fs", "delete", ())
    overlay = Mount(
        "overlay",
        "overlay",
        ("index=off", "workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1/fs"),
    )
    assert direct_target([overlay]) == ("/s/3/fs", "overlay", ("/s/2/fs", "/s/1/fs"))
    # Read-only, relative lowers, several mounts, a subpath, other types: mount them.
    assert direct_target([Mount("bind", "/s/1/fs", ("ro", "rbind"))]) is None
    rel = Mount("overlay", "overlay", ("upperdir=/u", "lowerdir=1/fs:2/fs"))
    assert direct_target([rel]) is None
    assert direct_target([Mount("bind", "/a", ("rw",)), Mount("bind", "/b", ("rw",))]) is None
    assert direct_target([Mount("bind", "/a", ("rw",), target="/sub")]) is None
    assert direct_target([Mount("tmpfs", "tmpfs", ())]) is None
    assert direct_target([]) is None


def test_direct_apply_into_an_upperdir(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "old").write_text("x")
    upper.mkdir()
    data = layer_tar({"etc/new": b"n"}, whiteouts=("etc/old",))
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar", "sha256:" + "0" * 64, len(data))
    mounts = [Mount("overlay", "overlay", (f"upperdir={upper}", f"lowerdir={lower}", "workdir=/w"))]
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    Unpacker(None, None)._apply(mounts, io.BytesIO(data), layer, diff_id)  # type: ignore[arg-type]
    assert (upper / "etc" / "new").read_text() == "n"
    st = os.lstat(upper / "etc" / "old")  # an overlay whiteout: a 0/0 character device
    if os.geteuid() == 0:
        assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0


@pytest.mark.root
def test_other_mounts_are_mounted_and_undone(tmp_path: Path) -> None:
    data = layer_tar({"f": b"1"})
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar", "sha256:" + "0" * 64, len(data))
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    work = tmp_path / "work"
    work.mkdir()
    unpacker = Unpacker(None, None, work_dir=str(work))  # type: ignore[arg-type]
    unpacker._apply([Mount("tmpfs", "tmpfs", ("size=1m",))], io.BytesIO(data), layer, diff_id)
    assert os.listdir(work) == []  # unmounted and removed
    assert str(work) not in Path("/proc/self/mounts").read_text()
