"""pyctr images/content/leases as a user runs them (subprocesses) against a real daemon:
import of `pymkimage oci-layout --tar` and `pymkimage docker-archive`, ls, tag, usage,
export (OCI and docker) read back by our import and by skopeo, rm, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import ROOT, Daemon, running_daemon

PYMKIMAGE = shutil.which("pymkimage")
SKOPEO = shutil.which("skopeo")
BUSYBOX = "docker.io/library/busybox:latest"

pytestmark = pytest.mark.skipif(
    not Path("/bin/busybox").exists() or PYMKIMAGE is None,
    reason="needs /bin/busybox (busybox-static) and pymkimage",
)


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with running_daemon(short_tmp) as d:
        yield d


def pyctr(d: Daemon, *args: str, ns: str = "default") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", d.address, "-n", ns, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(d: Daemon, *args: str, ns: str = "default") -> str:
    r = pyctr(d, *args, ns=ns)
    assert r.returncode == 0, f"pyctr {' '.join(args)}: {r.stderr}\n{d.logs_tail()}"
    return r.stdout


def fails(d: Daemon, *args: str, ns: str = "default") -> str:
    r = pyctr(d, *args, ns=ns)
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyctr: "), r.stderr
    return lines[0]


def mkimage(*args: str) -> str:
    r = subprocess.run(
        [PYMKIMAGE or "pymkimage", *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:]]


@pytest.fixture
def archives(short_tmp: Path) -> dict[str, object]:
    oci = short_tmp / "bb-oci.tar"
    digest = mkimage("oci-layout", "--tar", str(oci))
    docker = short_tmp / "bb-docker.tar"
    mkimage("docker-archive", "--tag", "example.com/team/bb:1", str(docker))
    return {"oci": oci, "docker": docker, "digest": digest}


def test_import_ls_tag_usage_rm(daemon: Daemon, archives: dict) -> None:
    out = ok(daemon, "images", "import", str(archives["oci"]))
    assert out == f"unpacking {BUSYBOX} ({archives['digest']})...done\n"
    out = ok(daemon, "images", "import", "--no-unpack", str(archives["docker"]))
    assert out.startswith("example.com/team/bb:1 (sha256:")

    lines = ok(daemon, "images", "ls").splitlines()
    assert lines[0].split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    rows = {r[0]: r for r in table("\n".join(lines))}
    assert set(rows) == {BUSYBOX, "example.com/team/bb:1"}
    bb = rows[BUSYBOX]
    assert bb[1] == "application/vnd.oci.image.manifest.v1+json" and bb[2] == archives["digest"]
    assert bb[4] in ("KiB", "MiB") and bb[5].startswith("linux/") and bb[6] == "-"
    assert ok(daemon, "images", "ls", "-q").split() == sorted(rows)

    assert ok(daemon, "images", "tag", BUSYBOX, "example.com/bb:2") == "example.com/bb:2\n"
    assert "already exists" in fails(daemon, "images", "tag", BUSYBOX, "example.com/bb:2")
    assert ok(daemon, "images", "tag", "--force", BUSYBOX, "example.com/bb:2")
    filtered = ok(daemon, "images", "ls", "-q", "name==example.com/bb:2").split()
    assert filtered == ["example.com/bb:2"]

    usage = ok(daemon, "images", "usage", "example.com/bb:2").splitlines()
    assert usage[0].split() == ["KEY", "SIZE", "INODES"]
    chain = usage[1].split()[0]
    assert chain.startswith("sha256:") and int(usage[1].split()[-1]) > 5
    snaps = table(ok(daemon, "snapshots", "ls"))
    assert snaps == [[chain, "Committed"]]  # one shared layer: one snapshot

    content = ok(daemon, "content", "ls").splitlines()
    assert content[0].split() == ["DIGEST", "SIZE", "AGE", "LABELS"]
    assert any(f"containerd.io/gc.ref.snapshot.overlay={chain}" in line for line in content) or any(
        f"containerd.io/gc.ref.snapshot.native={chain}" in line for line in content
    )

    r = pyctr(daemon, "images", "rm", "nope", "example.com/bb:2", "--sync")
    assert r.returncode == 0 and r.stdout == "example.com/bb:2\n"
    assert r.stderr.strip() == "pyctr: nope: image not found"
    assert ok(daemon, "images", "ls", "-q").split() == sorted({BUSYBOX, "example.com/team/bb:1"})


def test_export_round_trip_and_skopeo(daemon: Daemon, archives: dict, short_tmp: Path) -> None:
    ok(daemon, "images", "import", str(archives["oci"]))
    oci = short_tmp / "export-oci.tar"
    docker = short_tmp / "export-docker.tar"
    ok(daemon, "images", "export", str(oci), BUSYBOX)
    ok(daemon, "images", "export", "--format", "docker", str(docker), BUSYBOX)
    with tarfile.open(oci) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["digest"] == archives["digest"]
    with tarfile.open(docker) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["busybox:latest"]

    # Round trip through another namespace: the manifest digest is kept.
    out = ok(daemon, "images", "import", str(oci), ns="copy")
    assert out == f"unpacking {BUSYBOX} ({archives['digest']})...done\n"
    ok(daemon, "images", "import", str(docker), ns="fromdocker")
    assert ok(daemon, "images", "ls", "-q", ns="fromdocker").split() == [BUSYBOX]

    # Through stdout and stdin as well.
    piped = subprocess.run(
        [sys.executable, "-m", "cli.ctr", "-a", daemon.address, "images", "export", "-", BUSYBOX],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert piped.returncode == 0 and piped.stdout == oci.read_bytes()

    if SKOPEO is None:
        pytest.skip("skopeo not installed (Debian package skopeo)")
    for transport, path in (("oci-archive", oci), ("docker-archive", docker)):
        r = subprocess.run(
            [SKOPEO, "--insecure-policy", "inspect", f"{transport}:{path}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["Os"] == "linux" and len(doc["Layers"]) == 1
        if transport == "oci-archive":
            assert doc["Digest"] == archives["digest"]


def test_errors_are_one_line_and_the_daemon_keeps_serving(daemon: Daemon, short_tmp: Path) -> None:
    junk = short_tmp / "junk.tar"
    junk.write_bytes(b"not a tar" * 100)
    assert "not a tar archive" in fails(daemon, "images", "import", str(junk))
    assert "cannot read" in fails(daemon, "images", "import", str(short_tmp / "missing.tar"))
    assert "not found" in fails(daemon, "images", "export", str(short_tmp / "x.tar"), "nope")
    assert not (short_tmp / "x.tar").exists()
    assert "not found" in fails(daemon, "images", "usage", "nope")
    assert "invalid digest" in fails(daemon, "content", "get", "sha256:short")
    assert "not loaded" in fails(daemon, "images", "import", "--snapshotter", "zfs", str(junk))
    assert "bad namespace" not in ok(daemon, "images", "ls")
    assert fails(daemon, "images", "ls", ns="-bad").startswith("pyctr: invalid namespace")
    assert ok(daemon, "version")


def test_leases_commands(daemon: Daemon) -> None:
    lease_id = ok(daemon, "leases", "create", "--id", "hold", "team=a").strip()
    assert lease_id == "hold"
    generated = ok(daemon, "leases", "create", "--expires", "0").strip()
    rows = table(ok(daemon, "leases", "ls"))
    assert sorted(r[0] for r in rows) == sorted(["hold", generated])
    hold = next(r for r in rows if r[0] == "hold")
    assert hold[2].startswith("containerd.io/gc.expire=") and "team=a" in hold[2]
    assert ok(daemon, "leases", "ls", "-q", "id==hold").split() == ["hold"]
    assert ok(daemon, "leases", "rm", "hold", generated, "--sync").split() == ["hold", generated]
    assert "not found" in fails(daemon, "leases", "rm", "hold")
    assert "invalid duration" in fails(daemon, "leases", "create", "--expires", "soon")


def test_environment_has_no_stray_files(daemon: Daemon, archives: dict) -> None:
    """An import spools through the daemon's tmp dir and leaves nothing there."""
    ok(daemon, "images", "import", str(archives["docker"]))
    assert os.listdir(daemon.root / "tmp") == []
    assert ok(daemon, "leases", "ls", "-q") == ""  # the import's lease is gone
