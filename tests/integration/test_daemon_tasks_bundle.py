"""Task bundles without a daemon: the layout, bootstrap.json written whole and read
leniently (a torn or foreign record is None, never an exception), the walk over
`<state>/tasks/<ns>/<id>`, and the refusal to replace a bundle that still has mounts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from containerd_py import errdefs
from containerd_py.runtime.bundle import BootstrapInfo, Bundle, existing, mounts_under


def test_create_and_bootstrap_round_trip(tmp_path: Path) -> None:
    b = Bundle.at(tmp_path, "ns1", "web")
    assert b.path == tmp_path / "tasks" / "ns1" / "web"
    b.create({"ociVersion": "1.0.2", "root": {"path": "rootfs"}})
    assert json.loads((b.path / "config.json").read_text())["root"]["path"] == "rootfs"
    assert (b.path / "rootfs").is_dir()
    assert b.read_bootstrap() is None
    info = BootstrapInfo("unix:///run/x.sock", 1234, 1700000000.25)
    b.write_bootstrap(info)
    assert b.read_bootstrap() == info
    assert [p.name for p in b.path.iterdir() if p.name.startswith(".")] == []  # no temp left
    # A leftover bundle of an earlier life is replaced.
    b.create({"ociVersion": "1.0.2"})
    assert b.read_bootstrap() is None
    b.remove()
    assert not b.path.exists()


@pytest.mark.parametrize(
    "text", ["", "{not json", "[]", '{"address": "a"}', '{"address":"a","shim_pid":"x"}']
)
def test_torn_or_foreign_bootstrap_is_none(tmp_path: Path, text: str) -> None:
    b = Bundle.at(tmp_path, "default", "t")
    b.create({})
    (b.path / "bootstrap.json").write_text(text)
    assert b.read_bootstrap() is None


def test_existing_walks_namespaces_and_ids(tmp_path: Path) -> None:
    assert existing(tmp_path) == []
    for ns, cid in (("b", "2"), ("a", "1"), ("a", "0")):
        Bundle.at(tmp_path, ns, cid).create({})
    (tmp_path / "tasks" / "a" / "stray-file").write_text("")
    assert [(b.namespace, b.id) for b in existing(tmp_path)] == [("a", "0"), ("a", "1"), ("b", "2")]


@pytest.mark.root
def test_a_bundle_with_mounts_is_never_replaced(tmp_path: Path) -> None:
    b = Bundle.at(tmp_path, "default", "m")
    b.create({})
    keep = b.path / "rootfs" / "keep"
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(b.path / "rootfs")], check=True)
    try:
        keep.write_text("data")
        assert mounts_under(b.path) == [str(b.path / "rootfs")]
        with pytest.raises(errdefs.FailedPrecondition, match="still has mounts"):
            b.create({})
        assert keep.read_text() == "data"
    finally:
        subprocess.run(["umount", str(b.path / "rootfs")], check=False)
    assert mounts_under(b.path) == []
