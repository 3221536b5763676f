"""Interop with containerd's own `ctr` (Debian package containerd): `ctr images import`
accepts what `pyctr images export` writes (OCI layout and docker-save), and `pyctr images
import` accepts what `ctr images export` writes, keeping the manifest digest both ways.

A private containerd runs for the test: its own root, state, socket and a minimal config
(no CRI, no metrics or debug listeners, its opt dir inside the root), so it never meets a
containerd of the host. It is stopped, its mounts undone and its dirs removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_py.snapshots.mount import unmount_all
from tests.daemon import ROOT, Daemon, running_daemon

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
PYMKIMAGE = shutil.which("pymkimage")
BUSYBOX = "docker.io/library/busybox:latest"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        CONTAINERD is None or CTR is None,
        reason="needs containerd and ctr (Debian package containerd)",
    ),
    pytest.mark.skipif(
        PYMKIMAGE is None or not Path("/bin/busybox").exists(),
        reason="needs pymkimage and /bin/busybox (busybox-static)",
    ),
]

CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


class PrivateContainerd:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "ctd-root"
        self.state = tmp / "ctd-state"
        self.address = str(tmp / "ctd.sock")
        self.config = tmp / "ctd.toml"
        self.log = tmp / "ctd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateContainerd:
        self.config.write_text(
            CONFIG.format(root=self.root, state=self.state, address=self.address)
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [CONTAINERD or "containerd", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"containerd exited:\n{self.log.read_text()[-3000:]}")
            if os.path.exists(self.address) and self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise AssertionError(f"containerd not ready:\n{self.log.read_text()[-3000:]}")

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [CTR or "ctr", "--address", self.address, "--namespace", "interop", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert r.returncode == 0, f"ctr {' '.join(args)}: {r.stderr}"
        return r

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Whatever containerd left mounted under its dirs (unpack mounts are temporary,
        # but a killed daemon leaves them).
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            where = line.split()[1]
            if where.startswith((str(self.root), str(self.state))):
                unmount_all(where)


@pytest.fixture
def containerd(short_tmp: Path) -> Iterator[PrivateContainerd]:
    c = PrivateContainerd(short_tmp)
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with running_daemon(short_tmp) as d:
        yield d


def pyctr(d: Daemon, *args: str, ns: str = "default") -> str:
    r = subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", d.address, "-n", ns, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"pyctr {' '.join(args)}: {r.stderr}"
    return r.stdout


def ctr_images(c: PrivateContainerd) -> dict[str, str]:
    lines = c.ctr("images", "ls").stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[2] for line in lines}


def test_ctr_imports_our_exports(
    daemon: Daemon, containerd: PrivateContainerd, short_tmp: Path
) -> None:
    src = short_tmp / "bb.tar"
    digest = subprocess.run(
        [PYMKIMAGE or "pymkimage", "oci-layout", "--tar", str(src)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pyctr(daemon, "images", "import", str(src))
    oci, docker = short_tmp / "ours-oci.tar", short_tmp / "ours-docker.tar"
    pyctr(daemon, "images", "export", str(oci), BUSYBOX)
    pyctr(daemon, "images", "export", "--format", "docker", str(docker), BUSYBOX)

    containerd.ctr("images", "import", str(oci))
    assert ctr_images(containerd) == {BUSYBOX: digest}
    containerd.ctr("images", "rm", BUSYBOX)
    containerd.ctr("images", "import", str(docker))
    # A docker-save archive carries no manifest: ctr makes one; the image is there.
    assert list(ctr_images(containerd)) == [BUSYBOX]
    check = containerd.ctr("images", "check").stdout
    assert "complete" in check


def test_we_import_ctr_exports(
    daemon: Daemon, containerd: PrivateContainerd, short_tmp: Path
) -> None:
    src = short_tmp / "bb.tar"
    digest = subprocess.run(
        [PYMKIMAGE or "pymkimage", "oci-layout", "--tar", str(src)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    containerd.ctr("images", "import", "--no-unpack", str(src))
    theirs = short_tmp / "theirs.tar"
    containerd.ctr("images", "export", str(theirs), BUSYBOX)
    with tarfile.open(theirs) as tar:
        names = set(tar.getnames())
        assert {"index.json", "manifest.json"} <= names  # OCI layout plus Docker's file
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["digest"] == digest

    out = pyctr(daemon, "images", "import", str(theirs), ns="fromctr")
    assert out == f"unpacking {BUSYBOX} ({digest})...done\n"
    assert pyctr(daemon, "images", "ls", "-q", ns="fromctr").split() == [BUSYBOX]
    # Round trip back: our export of their image is imported by ctr with the same digest.
    back = short_tmp / "back.tar"
    pyctr(daemon, "images", "export", str(back), BUSYBOX, ns="fromctr")
    containerd.ctr("images", "rm", BUSYBOX)
    containerd.ctr("images", "import", "--no-unpack", str(back))
    assert ctr_images(containerd) == {BUSYBOX: digest}
