"""pymkimage's outputs read by the real tools: skopeo for the image forms, runc for bundles."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mkimage import build_bundle, build_image, write_docker_archive, write_oci_archive
from mkimage import write_oci_layout as write_layout
from mkimage.busybox import DEFAULT_BUSYBOX
from oci_runtime.default_spec import default_spec

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
RUNC = shutil.which("runc") or "/usr/sbin/runc"

pytestmark = pytest.mark.skipif(
    not DEFAULT_BUSYBOX.exists(), reason="needs /bin/busybox (Debian package busybox-static)"
)

needs_skopeo = pytest.mark.skipif(
    not os.access(SKOPEO, os.X_OK), reason="skopeo not installed (Debian package skopeo)"
)


def needs_runc(fn: Any) -> Any:
    fn = pytest.mark.skipif(
        not os.access(RUNC, os.X_OK), reason="runc not installed (Debian runc)"
    )(fn)
    fn = pytest.mark.skipif(os.geteuid() != 0, reason="runc run needs root")(fn)
    return pytest.mark.root(fn)


CGROUP_PARENT = "pyrunc-test"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    # --insecure-policy: the test must not depend on the host's /etc/containers/policy.json.
    proc = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def skopeo_json(*args: str) -> Any:
    return json.loads(skopeo(*args).stdout)


@pytest.fixture(scope="module")
def image():
    return build_image()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mkimage")
    write_layout(root / "layout")
    write_oci_archive(root / "oci.tar")
    write_docker_archive(root / "docker.tar")
    return {
        "root": root,
        "layout": root / "layout",
        "oci_tar": root / "oci.tar",
        "docker_tar": root / "docker.tar",
    }


def dir_blobs(path: Path) -> dict[str, bytes]:
    """The blobs of a skopeo `dir:` copy, by digest, each checked against its file name."""
    blobs = {}
    for p in path.iterdir():
        if p.name in ("manifest.json", "version"):
            continue
        data = p.read_bytes()
        assert sha256(data) == "sha256:" + p.name
        blobs["sha256:" + p.name] = data
    return blobs


# --- skopeo ----------------------------------------------------------------------------------


@needs_skopeo
def test_skopeo_reads_the_raw_manifest_by_tag(outputs, image):
    raw = skopeo("inspect", "--raw", f"oci:{outputs['layout']}:latest").stdout
    assert sha256(raw.rstrip(b"\n")) == image.manifest.digest


@needs_skopeo
def test_skopeo_inspects_the_layout(outputs, image):
    info = skopeo_json("inspect", f"oci:{outputs['layout']}:latest")
    assert info["Digest"] == image.manifest.digest
    assert info["Layers"] == [image.layer.digest]
    assert info["Os"] == "linux"
    assert info["Architecture"] == json.loads(image.config.data)["architecture"]
    config = skopeo_json("inspect", "--config", f"oci:{outputs['layout']}:latest")
    assert config == json.loads(image.config.data)


@needs_skopeo
def test_skopeo_inspects_the_layout_tar(outputs, image):
    info = skopeo_json("inspect", f"oci-archive:{outputs['oci_tar']}:latest")
    assert info["Digest"] == image.manifest.digest
    assert info["Layers"] == [image.layer.digest]


@needs_skopeo
def test_skopeo_inspects_the_docker_archive(outputs, image):
    archive = outputs["docker_tar"]
    info = skopeo_json("inspect", f"docker-archive:{archive}")
    assert info["Layers"] == [image.diff_id]
    assert info["Os"] == "linux"
    # Naming the image by its RepoTag only works if manifest.json carries it.
    by_tag = skopeo_json("inspect", "--config", f"docker-archive:{archive}:busybox:latest")
    assert by_tag == json.loads(image.config.data)


@needs_skopeo
def test_skopeo_copies_the_layout(outputs, image):
    dest = outputs["root"] / "copy-oci"
    skopeo("copy", "--quiet", f"oci:{outputs['layout']}:latest", f"dir:{dest}")
    blobs = dir_blobs(dest)
    assert set(blobs) == {image.layer.digest, image.config.digest}
    assert blobs[image.layer.digest] == image.layer.data
    manifest = json.loads((dest / "manifest.json").read_bytes())
    assert [layer["digest"] for layer in manifest["layers"]] == [image.layer.digest]
    assert manifest["config"]["digest"] == image.config.digest


@needs_skopeo
def test_skopeo_copies_the_docker_archive(outputs, image):
    dest = outputs["root"] / "copy-docker"
    skopeo("copy", "--quiet", f"docker-archive:{outputs['docker_tar']}", f"dir:{dest}")
    blobs = dir_blobs(dest)
    assert blobs[image.config.digest] == image.config.data
    assert blobs[image.diff_id] == image.layer_tar


@needs_skopeo
def test_skopeo_round_trip_keeps_the_image(outputs, image):
    # layout -> docker-archive -> layout: the config, and so the image ID, survives.
    root = outputs["root"]
    layout, archive = f"oci:{outputs['layout']}:latest", f"docker-archive:{root}/rt.tar"
    skopeo("copy", "--quiet", layout, f"{archive}:busybox:latest")
    skopeo("copy", "--quiet", archive, f"oci:{root}/rt:latest")
    config = skopeo_json("inspect", "--config", f"oci:{root}/rt:latest")
    assert config["rootfs"]["diff_ids"] == [image.diff_id]


# --- runc ------------------------------------------------------------------------------------


def remove_cgroups(container_id: str) -> None:
    # runc deletes its own cgroup; the parent it created under each hierarchy stays, and may
    # be shared with other tests running now, hence rmdir (refused while in use), not rmtree.
    for pattern in (
        f"/sys/fs/cgroup/*/{CGROUP_PARENT}/{container_id}",
        f"/sys/fs/cgroup/{CGROUP_PARENT}/{container_id}",
        f"/sys/fs/cgroup/*/{CGROUP_PARENT}",
        f"/sys/fs/cgroup/{CGROUP_PARENT}",
    ):
        for d in glob.glob(pattern):
            with contextlib.suppress(OSError):
                os.rmdir(d)


@contextlib.contextmanager
def runc_state() -> Iterator[tuple[str, str]]:
    """A short runc --root under /tmp and a unique container id, cleaned up whatever happens."""
    root = tempfile.mkdtemp(prefix="mkr-", dir="/tmp")
    cid = "mkimage-" + uuid.uuid4().hex[:12]
    try:
        yield root, cid
    finally:
        subprocess.run([RUNC, "--root", root, "delete", "-f", cid], capture_output=True, timeout=60)
        remove_cgroups(cid)
        shutil.rmtree(root, ignore_errors=True)


def runc_run(
    bundle: Path, args: list[str], user: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["args"] = args
    config["process"]["terminal"] = False
    if user is not None:
        config["process"]["user"] = user
    with runc_state() as (root, cid):
        config["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
        config_path.write_text(json.dumps(config))
        return subprocess.run(
            [RUNC, "--root", root, "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )


@needs_runc
def test_runc_runs_the_bundle(tmp_path):
    bundle = build_bundle(tmp_path / "bundle", ["/bin/sh", "-c", "echo hello; id"])
    proc = runc_run(bundle, ["/bin/sh", "-c", "echo hello; id"])
    assert proc.returncode == 0, proc.stderr
    assert "hello" in proc.stdout
    assert "uid=0(root)" in proc.stdout


@needs_runc
def test_runc_runs_as_the_test_user(tmp_path):
    bundle = build_bundle(tmp_path / "bundle")
    user = {"uid": 1000, "gid": 1000, "additionalGids": [10, 29]}
    proc = runc_run(bundle, ["/bin/sh", "-c", "id; cd && pwd"], user)
    assert proc.returncode == 0, proc.stderr
    assert "uid=1000(user) gid=1000(user)" in proc.stdout
    assert "10(wheel)" in proc.stdout and "29(audio)" in proc.stdout
    assert "/home/user" in proc.stdout


@needs_runc
@pytest.mark.parametrize("readonly", [True, False])
def test_runc_honours_readonly(tmp_path, readonly):
    bundle = build_bundle(tmp_path / "bundle", readonly=readonly)
    proc = runc_run(bundle, ["/bin/sh", "-c", "touch /probe && echo wrote"])
    if readonly:
        assert proc.returncode != 0
        assert "Read-only file system" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert (bundle / "rootfs" / "probe").exists()


@needs_runc
def test_runc_runs_the_unpacked_layer(tmp_path, image):
    # GNU tar streams the layer in order: this proves hard links follow their target.
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    (tmp_path / "layer.tar.gz").write_bytes(image.layer.data)
    subprocess.run(
        ["tar", "--numeric-owner", "-xpzf", str(tmp_path / "layer.tar.gz"), "-C", str(rootfs)],
        check=True,
    )
    (bundle / "config.json").write_text(json.dumps(default_spec(terminal=False)))
    proc = runc_run(bundle, ["/bin/sh", "-c", "echo hello; id; ls /usr/bin/wc"])
    assert proc.returncode == 0, proc.stderr
    assert "hello" in proc.stdout and "uid=0(root)" in proc.stdout
    assert "/usr/bin/wc" in proc.stdout
