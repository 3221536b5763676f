"""Pull and push against a real registry (Debian's docker-registry on 127.0.0.1), with
pyctr and real daemons: round trips by tag and by digest ending in `pyctr run`, interop
with skopeo and containerd's ctr both ways, platforms of an index, layers not fetched
twice, and the push paths (HEAD skip, cross-repository mount, chunked upload)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_py.images.platforms import host_platform
from tests.daemon import ROOT
from tests.oci_images import Blob, image, index, layer, sha256, write_layout
from tests.registry import RegistryServer
from tests.transfer import (
    DaemonFactory,
    access_log,
    blob_gets,
    content_digests,
    daemon_factory,
    image_names,
    import_busybox,
    pyctr,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs /bin/busybox"),
]

BUSYBOX = "docker.io/library/busybox:latest"


@pytest.fixture
def daemons(short_tmp: Path) -> Iterator[DaemonFactory]:
    with daemon_factory(short_tmp) as factory:
        yield factory


def seed_layout(reg: RegistryServer, layout: Path, tag: str, dest: str, *all_: str) -> None:
    """skopeo copies oci:LAYOUT:TAG to the registry as DEST (`--all` for indexes)."""
    reg.skopeo(
        "copy",
        *all_,
        *reg.skopeo_flags("dest"),
        f"oci:{layout}:{tag}",
        f"docker://{reg.host}/{dest}",
    )


def test_push_then_pull_by_tag_and_by_digest_and_run(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    a = daemons("a")
    digest = import_busybox(a, short_tmp)
    ref = f"{registry_plain.host}/library/busybox:1"
    out = pyctr(a, "images", "push", "--plain-http", ref, BUSYBOX).stdout
    assert out.splitlines()[-1] == f"{ref}: {digest}"
    # What the registry holds, read by another client.
    assert sha256(registry_plain.inspect_raw("library/busybox:1")) == digest

    b = daemons("b")
    out = pyctr(b, "images", "pull", "--plain-http", ref).stdout
    assert out.splitlines()[-1] == f"{ref}: {digest}"
    assert image_names(b) == [ref]
    assert pyctr(b, "run", "--rm", ref, "r1", "echo", "hi").stdout == "hi\n"

    c = daemons("c")
    by_digest = f"{registry_plain.host}/library/busybox@{digest}"
    pyctr(c, "images", "pull", "--plain-http", by_digest)
    assert image_names(c) == [by_digest]
    assert pyctr(c, "run", "--rm", by_digest, "r2", "echo", "hi").stdout == "hi\n"


def test_pull_what_skopeo_pushed_and_skopeo_pulls_what_we_pushed(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    digest = registry_plain.seed("library/busybox:skopeo")
    d = daemons()
    theirs = f"{registry_plain.host}/library/busybox:skopeo"
    pyctr(d, "images", "pull", "--plain-http", theirs)
    assert d.client().images().get(theirs).target.digest == digest
    assert pyctr(d, "run", "--rm", theirs, "r1", "echo", "hi").stdout == "hi\n"

    # The pull recorded where the blobs came from...
    layer = d.client().image_rootfs(d.client().images().get(theirs)).layers[0]
    labels = d.client().content().info(layer.digest).labels
    assert labels[f"containerd.io/distribution.source.{registry_plain.host}"] == "library/busybox"
    # ...so a push to another repository there mounts them; skopeo copies the result out
    # and checks every digest.
    ours = f"{registry_plain.host}/team/bb:ours"
    pyctr(d, "images", "tag", theirs, ours)
    out = pyctr(d, "images", "push", "--plain-http", ours).stdout.splitlines()
    assert f"layer-{layer.digest}: mounted" in out
    copy = registry_plain.copy_out("team/bb:ours", short_tmp / "copy")
    assert sha256((copy / "manifest.json").read_bytes()) == digest


def test_docker_schema2_images_pull_run_and_push_back_unchanged(
    registry_plain: RegistryServer, daemons: DaemonFactory
) -> None:
    registry_plain.seed("library/busybox:oci")
    # skopeo converts to Docker's media types on the way to another repository.
    registry_plain.skopeo(
        "copy",
        "--format=v2s2",
        *registry_plain.skopeo_flags("src"),
        *registry_plain.skopeo_flags("dest"),
        f"docker://{registry_plain.host}/library/busybox:oci",
        f"docker://{registry_plain.host}/docker/bb:v2s2",
    )
    raw = registry_plain.inspect_raw("docker/bb:v2s2")
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    d = daemons()
    ref = f"{registry_plain.host}/docker/bb:v2s2"
    pyctr(d, "images", "pull", "--plain-http", ref)
    image = d.client().images().get(ref)
    assert image.target.digest == sha256(raw)
    assert image.target.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert pyctr(d, "run", "--rm", ref, "r1", "echo", "hi").stdout == "hi\n"
    pyctr(d, "images", "push", "--plain-http", f"{registry_plain.host}/docker/back:1", ref)
    assert registry_plain.inspect_raw("docker/back:1") == raw


@pytest.mark.skipif(
    shutil.which("containerd") is None or shutil.which("ctr") is None,
    reason="needs containerd and ctr (Debian package containerd)",
)
def test_containerd_pulls_what_we_pushed_and_we_pull_what_it_pushed(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    from tests.integration.test_ctr_images_containerd import PrivateContainerd

    d = daemons()
    digest = import_busybox(d, short_tmp)
    ours = f"{registry_plain.host}/from/pycontainerd:1"
    pyctr(d, "images", "push", "--plain-http", ours, BUSYBOX)
    ctd = PrivateContainerd(short_tmp)
    try:
        ctd.start()
        ctd.ctr("images", "pull", "--plain-http", ours)
        listed = {
            line.split()[0]: line.split()[2]
            for line in ctd.ctr("images", "ls").stdout.splitlines()[1:]
        }
        assert listed == {ours: digest}
        # And back: ctr pushes under a new name, we pull that and run it.
        theirs = f"{registry_plain.host}/from/containerd:1"
        ctd.ctr("images", "tag", ours, theirs)
        ctd.ctr("images", "push", "--plain-http", theirs)
    finally:
        ctd.stop()
    e = daemons("e")
    pyctr(e, "images", "pull", "--plain-http", theirs)
    assert e.client().images().get(theirs).target.digest == digest
    assert pyctr(e, "run", "--rm", theirs, "r1", "echo", "hi").stdout == "hi\n"


def test_layers_already_stored_are_not_fetched_again(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    base = image()
    extended = image([layer({"etc/extended": b"yes\n"})])
    layout = write_layout(
        short_tmp / "layout",
        {"base": base.manifest, "extended": extended.manifest},
        base.blobs + extended.blobs,
    )
    seed_layout(registry_plain, layout, "base", "app/base:1")
    seed_layout(registry_plain, layout, "extended", "app/extended:1")
    shared = base.layers[0].digest
    assert extended.layers[0].digest == shared

    d = daemons()
    pyctr(d, "images", "pull", "--plain-http", f"{registry_plain.host}/app/base:1")
    assert blob_gets(registry_plain, shared) == 1
    out = pyctr(d, "images", "pull", "--plain-http", f"{registry_plain.host}/app/extended:1").stdout
    assert f"layer-{shared}: exists" in out.splitlines()
    assert f"layer-{extended.layers[1].digest}: done" in out.splitlines()
    assert blob_gets(registry_plain, shared) == 1
    assert blob_gets(registry_plain, extended.layers[1].digest) == 1
    # A second pull of the same image fetches no blob at all.
    before = len(access_log(registry_plain))
    pyctr(d, "images", "pull", "--plain-http", f"{registry_plain.host}/app/extended:1")
    again = access_log(registry_plain)[before:]
    assert [r for r in again if r[0] == "GET" and "/blobs/" in r[1]] == []
    r = pyctr(
        d, "run", "--rm", f"{registry_plain.host}/app/extended:1", "r1", "cat", "/etc/extended"
    )
    assert r.stdout == "yes\n"


def test_push_skips_what_the_registry_has_mounts_across_repositories_and_uploads_in_chunks(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    d = daemons()
    digest = import_busybox(d, short_tmp)
    bb = d.client().image_rootfs(d.client().images().get(BUSYBOX)).layers[0]
    first = f"{registry_plain.host}/one/bb:1"
    chunk = 256 << 10
    out = pyctr(d, "images", "push", "--plain-http", "--chunk-size", str(chunk), first, BUSYBOX)
    assert f"layer-{bb.digest}: done" in out.stdout.splitlines()
    patches = [r for r in access_log(registry_plain) if r[0] == "PATCH"]
    # The layer in 256 KiB pieces, the config (smaller than a chunk) in one.
    assert len(patches) == -(-bb.size // chunk) + 1
    assert sha256(registry_plain.inspect_raw("one/bb:1")) == digest

    # Again to the same place: the registry has every blob.
    before = len(access_log(registry_plain))
    out = pyctr(d, "images", "push", "--plain-http", first, BUSYBOX).stdout.splitlines()
    assert f"layer-{bb.digest}: exists" in out
    assert not [r for r in access_log(registry_plain)[before:] if r[0] in ("POST", "PATCH")]

    # To another repository of the same registry: mounted, not uploaded.
    second = f"{registry_plain.host}/two/bb:1"
    before = len(access_log(registry_plain))
    out = pyctr(d, "images", "push", "--plain-http", second, BUSYBOX).stdout.splitlines()
    assert f"layer-{bb.digest}: mounted" in out
    sent = access_log(registry_plain)[before:]
    mounts = [r for r in sent if r[0] == "POST" and "mount=" in r[1]]
    assert mounts and all(r[2] == 201 for r in mounts)
    assert not [r for r in sent if r[0] == "PATCH" or (r[0] == "PUT" and "/blobs/" in r[1])]
    assert registry_plain.blob_exists("two/bb", bb.digest)
    assert sha256(registry_plain.inspect_raw("two/bb:1")) == digest


def _platform_images() -> tuple[str, dict[str, tuple[Blob, str]], Blob, list[Blob]]:
    """An index of two images for linux/amd64 and linux/arm64, each with a /platform file
    naming its own architecture (both run here: the busybox binary is the host's)."""
    host = host_platform().architecture
    if host not in ("amd64", "arm64"):
        pytest.skip(f"the test index has amd64 and arm64 images, the host is {host}")
    built = {}
    blobs: list[Blob] = []
    for arch in ("amd64", "arm64"):
        img = image([layer({"platform": f"{arch}\n".encode()})], architecture=arch)
        built[arch] = (img.manifest, img.layers[1].digest)
        blobs += img.blobs
    idx = index([(built["amd64"][0], "linux/amd64"), (built["arm64"][0], "linux/arm64")])
    return host, built, idx, blobs


def test_index_pulls_the_host_platform_by_default_and_another_when_asked(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    host, built, idx, blobs = _platform_images()
    other = "arm64" if host == "amd64" else "amd64"
    layout = write_layout(short_tmp / "multi", {"latest": idx}, blobs)
    seed_layout(registry_plain, layout, "latest", "multi/app:1", "--all")
    ref = f"{registry_plain.host}/multi/app:1"
    assert sha256(registry_plain.inspect_raw("multi/app:1")) == idx.digest

    d = daemons()
    pyctr(d, "images", "pull", "--plain-http", ref)
    assert d.client().images().get(ref).target.digest == idx.digest
    stored = content_digests(d)
    assert built[host][1] in stored and built[other][1] not in stored
    assert pyctr(d, "run", "--rm", ref, "r1", "cat", "/platform").stdout == f"{host}\n"

    pyctr(d, "images", "pull", "--plain-http", "--platform", f"linux/{other}", ref, ns="other")
    stored = content_digests(d, "other")
    assert built[other][1] in stored and built[host][1] not in stored
    # Unpacked too: the snapshot of the other platform's layers is there.
    with d.client("other") as c:
        rootfs = c.image_rootfs(c.images().get(ref), f"linux/{other}")
        assert c.snapshots().stat(rootfs.chain_id).kind == "Committed"

    # A platform the index does not list: one line, nothing recorded.
    r = pyctr(
        d,
        "images",
        "pull",
        "--plain-http",
        "--platform",
        "linux/s390x",
        ref,
        ns="none",
        check=False,
    )
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "pyctr: no manifest for platform linux/s390x (the index lists: linux/amd64, linux/arm64)"
    )
    assert image_names(d, "none") == []

    # Every platform: the index can then be pushed whole, and comes back byte for byte.
    pyctr(d, "images", "pull", "--plain-http", "--all-platforms", ref, ns="all")
    assert {built["amd64"][1], built["arm64"][1]} <= content_digests(d, "all")
    copy = f"{registry_plain.host}/multi/copy:1"
    pyctr(d, "images", "push", "--plain-http", copy, ref, ns="all")
    assert registry_plain.inspect_raw("multi/copy:1") == idx.data
    manifests = json.loads(idx.data)["manifests"]
    for m in manifests:
        assert sha256(registry_plain.inspect_raw(f"multi/copy@{m['digest']}")) == m["digest"]


def test_partly_pulled_index_pushes_one_platform_only(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    host, built, idx, blobs = _platform_images()
    layout = write_layout(short_tmp / "multi", {"latest": idx}, blobs)
    seed_layout(registry_plain, layout, "latest", "multi/app:1", "--all")
    ref = f"{registry_plain.host}/multi/app:1"
    d = daemons()
    pyctr(d, "images", "pull", "--plain-http", ref)
    whole = pyctr(
        d,
        "images",
        "push",
        "--plain-http",
        f"{registry_plain.host}/multi/whole:1",
        ref,
        check=False,
    )
    assert whole.returncode == 1
    assert "--platform" in whole.stderr and len(whole.stderr.strip().splitlines()) == 1
    one = f"{registry_plain.host}/multi/one:1"
    pyctr(d, "images", "push", "--plain-http", "--platform", f"linux/{host}", one, ref)
    assert sha256(registry_plain.inspect_raw("multi/one:1")) == built[host][0].digest


def test_blobs_download_concurrently_up_to_the_limit(
    registry_plain: RegistryServer, daemons: DaemonFactory, short_tmp: Path
) -> None:
    from tests.tcp_proxy import TcpProxy

    img = image([layer({f"data/{i}": os.urandom(1024)}) for i in range(4)])  # 6 blobs
    layout = write_layout(short_tmp / "layout", {"latest": img.manifest}, img.blobs)
    seed_layout(registry_plain, layout, "latest", "many/layers:1")
    d = daemons()
    proxy = TcpProxy(registry_plain.port).start()
    try:
        # No blob request is ever answered: each worker waits on one, so the requests
        # in flight are the workers that run at once.
        proxy.hold(b"/blobs/sha256:")
        for flag, workers in ((), 3), (("--max-concurrent-downloads", "2"), 2):
            pull = subprocess.Popen(
                [sys.executable, "-m", "cli.ctr", "--address", d.address, "images", "pull",
                 "--plain-http", *flag, f"{proxy.host}/many/layers:1"],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while proxy.held() < workers and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)  # room for a worker too many to show up
                assert proxy.held() == workers
            finally:
                proxy.unlimit()  # the held connections drop: the pull fails
                assert pull.wait(60) != 0
    finally:
        proxy.stop()
    assert image_names(d) == []
