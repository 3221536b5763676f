"""Pulls that fail: each failure is one line from pyctr and a non-zero exit, no image record
is written, and what was stored goes with the next collection, unless the failure was a
lost connection, whose blobs and partial ingest stay leased so that the retry resumes
(committed blobs not fetched again, the partial one asked for with Range).

Interruptions are made with a loopback TCP proxy in front of the registry (tests/tcp_proxy):
it closes every connection after a given number of bytes (the registry "died"), or stops
forwarding (it "hung") while the test kills the daemon."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import ROOT, Daemon
from tests.oci_images import Image, Layer, image, layer, write_layout
from tests.registry import RegistryServer, free_port
from tests.tcp_proxy import Cut, TcpProxy
from tests.transfer import (
    DaemonFactory,
    blob_gets,
    collect,
    content_digests,
    daemon_factory,
    fails,
    image_names,
    pyctr,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs /bin/busybox"),
]

BIG = 8 << 20  # the random layer an interruption cuts in the middle of
CUT_AT = 3 << 20  # bytes the proxy lets through: the manifest, config, busybox, part of BIG
WAIT = 60.0


@pytest.fixture
def daemons(short_tmp: Path) -> Iterator[DaemonFactory]:
    with daemon_factory(short_tmp) as factory:
        yield factory


@pytest.fixture
def proxy(registry_plain: RegistryServer) -> Iterator[TcpProxy]:
    p = TcpProxy(registry_plain.port).start()
    try:
        yield p
    finally:
        p.stop()


def _big_image(reg: RegistryServer, tmp: Path) -> tuple[Image, bytes]:
    data = os.urandom(BIG)
    img = image([layer({"data/blob": data})])
    layout = write_layout(tmp / "big", {"latest": img.manifest}, img.blobs)
    reg.skopeo(
        "copy",
        *reg.skopeo_flags("dest"),
        f"oci:{layout}:latest",
        f"docker://{reg.host}/big/app:1",
    )
    return img, data


def _nothing_left(d: Daemon) -> None:
    assert image_names(d) == []
    collect(d)
    assert content_digests(d) == set()
    with d.client() as c:
        assert c.content().statuses() == []
        assert c.leases().list() == []


def _partial_ingest(d: Daemon, digest: str) -> int:
    with d.client() as c:
        found = [s for s in c.content().statuses() if s.expected == digest]
    return found[0].offset if found else 0


def test_refusals_are_one_line_and_leave_nothing(
    registry_plain: RegistryServer, daemons: DaemonFactory
) -> None:
    registry_plain.seed("library/busybox:1")
    host = registry_plain.host
    d = daemons()
    cases = {
        f"{host}/no/such:1": ("not found", "name unknown"),
        f"{host}/library/busybox:nope": ("not found", "manifest unknown"),
        f"127.0.0.1:{free_port()}/library/busybox:1": ("unreachable", "connection refused"),
    }
    for ref, words in cases.items():
        line = fails(d, "images", "pull", "--plain-http", ref)
        assert any(w in line for w in words), line
        _nothing_left(d)
    line = fails(d, "images", "pull", "--plain-http", "example.invalid/app:1")
    assert "plain http refused" in line
    assert "invalid reference" in fails(d, "images", "pull", "Upper/Case:1")
    assert "not found" in fails(d, "images", "push", "--plain-http", f"{host}/x/y:1")
    _nothing_left(d)


def test_a_blob_that_does_not_match_its_digest_is_never_stored(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    img, _ = _big_image(registry_plain, short_tmp)
    bad = img.layers[1]
    # Same size, other bytes, straight into the registry's storage (it serves what it has).
    hexd = bad.digest.removeprefix("sha256:")
    data = registry_plain.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    data.write_bytes(os.urandom(bad.size))
    d = daemons()
    line = fails(d, "images", "pull", "--plain-http", f"{registry_plain.host}/big/app:1")
    assert "digest mismatch" in line and bad.digest in line
    _nothing_left(d)


def test_a_layer_that_does_not_match_its_diff_id_is_not_recorded(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    good = layer({"etc/good": b"good\n"})
    other = layer({"etc/other": b"other\n"})
    img = image([good])
    # The same image, but its config names another layer's diff id: every blob matches
    # its digest, only unpacking can tell.
    config = json.loads(img.config.data)
    config["rootfs"]["diff_ids"][1] = other.diff_id
    lying = image([Layer(good.blob, other.diff_id)])
    assert json.loads(lying.config.data) == config
    layout = write_layout(short_tmp / "lying", {"latest": lying.manifest}, lying.blobs)
    registry_plain.skopeo(
        "copy",
        *registry_plain.skopeo_flags("dest"),
        f"oci:{layout}:latest",
        f"docker://{registry_plain.host}/lying/app:1",
    )
    d = daemons()
    line = fails(d, "images", "pull", "--plain-http", f"{registry_plain.host}/lying/app:1")
    assert f"layer unpacks to {good.diff_id}, but the image config says {other.diff_id}" in line
    assert image_names(d) == []
    collect(d)
    assert content_digests(d) == set()
    with d.client() as c:
        assert c.snapshots().list() == []


def test_a_pull_cut_off_midway_leaves_no_image_and_the_retry_resumes(
    registry_plain: RegistryServer, proxy: TcpProxy, daemons: DaemonFactory, short_tmp: Path
) -> None:
    img, data = _big_image(registry_plain, short_tmp)
    ref = f"{proxy.host}/big/app:1"
    big, busybox = img.layers[1], img.layers[0]
    d = daemons()
    proxy.limit(CUT_AT, Cut.CLOSE)
    pull = ("images", "pull", "--plain-http", "--max-concurrent-downloads", "1", ref)
    line = fails(d, *pull)
    assert "connection" in line and proxy.host in line
    assert image_names(d) == []
    offset = _partial_ingest(d, big.digest)
    assert 0 < offset < big.size
    # What was committed stays through a collection: the pull's lease holds it.
    collect(d)
    assert {img.config.digest, busybox.digest} <= content_digests(d)

    proxy.unlimit()
    pyctr(d, *pull)
    assert image_names(d) == [ref]
    assert f"Range: bytes={offset}-".encode() in proxy.requests()
    assert blob_gets(registry_plain, busybox.digest) == 1
    r = pyctr(d, "run", "--rm", ref, "r1", "sha256sum", "/data/blob")
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    with d.client() as c:
        assert c.content().statuses() == []
        assert c.leases().list() == []  # the retry's lease is gone, the first one kept nothing


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_daemon_killed_or_stopped_midway_leaves_no_image_and_the_retry_resumes(
    how: str,
    registry_plain: RegistryServer,
    proxy: TcpProxy,
    daemons: DaemonFactory,
    short_tmp: Path,
) -> None:
    img, data = _big_image(registry_plain, short_tmp)
    ref = f"{proxy.host}/big/app:1"
    big, busybox = img.layers[1], img.layers[0]
    d = daemons()
    proxy.limit(CUT_AT, Cut.STALL)
    pull = ("images", "pull", "--plain-http", "--max-concurrent-downloads", "1", ref)
    client = subprocess.Popen(
        [sys.executable, "-m", "cli.ctr", "--address", d.address, *pull],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if not proxy.stalled.wait(WAIT):
            client.kill()
            raise AssertionError(
                f"the pull never reached the cut: {client.communicate()[1].decode()}\n"
                + d.logs_tail()
            )
        deadline = time.monotonic() + WAIT
        while _partial_ingest(d, big.digest) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        # A collection while the pull is in flight takes none of what it stored.
        collect(d)
        assert {img.config.digest, busybox.digest} <= content_digests(d)
        if how == "SIGKILL":
            d.kill9()
        else:
            # A clean stop, though a download hangs on a registry that went silent.
            assert d.stop() == 0
        assert client.wait(WAIT) != 0
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
            client.wait()
    d.start()
    assert image_names(d) == []
    offset = _partial_ingest(d, big.digest)
    assert 0 < offset < big.size

    proxy.unlimit()
    pyctr(d, *pull)
    assert f"Range: bytes={offset}-".encode() in proxy.requests()
    assert blob_gets(registry_plain, busybox.digest) == 1
    r = pyctr(d, "run", "--rm", ref, "r1", "sha256sum", "/data/blob")
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
