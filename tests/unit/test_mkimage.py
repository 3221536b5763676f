"""pymkimage without root: the bytes it writes, their digests, and how it fails."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from mkimage import (
    MkimageError,
    build_bundle,
    build_image,
    load_busybox,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)
from mkimage import tree as tree_module
from mkimage.busybox import DEFAULT_BUSYBOX
from mkimage.reference import parse_reference
from oci_runtime.default_spec import default_spec

pytestmark = pytest.mark.skipif(
    not DEFAULT_BUSYBOX.exists(), reason="needs /bin/busybox (Debian package busybox-static)"
)

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pymkimage(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkimage", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert err.startswith("pymkimage: error: "), err
    assert "\n" not in err, err
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in err, err


def leftovers(parent: Path) -> list[str]:
    """Temporary names pymkimage would have left beside a destination."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def verify_layout(root: Path) -> dict:
    """Walks index -> manifest -> config and layer, checking every digest and size."""
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == MT_INDEX
    assert len(index["manifests"]) == 1

    def blob(desc: dict) -> bytes:
        algo, hexd = desc["digest"].split(":")
        assert algo == "sha256"
        data = (root / "blobs" / "sha256" / hexd).read_bytes()
        assert sha256(data) == desc["digest"]
        assert len(data) == desc["size"]
        return data

    mdesc = index["manifests"][0]
    assert mdesc["mediaType"] == MT_MANIFEST
    manifest = json.loads(blob(mdesc))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MT_MANIFEST
    assert manifest["config"]["mediaType"] == MT_CONFIG
    config = json.loads(blob(manifest["config"]))
    assert [layer["mediaType"] for layer in manifest["layers"]] == [MT_LAYER]
    layer_tar = gzip.decompress(blob(manifest["layers"][0]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(layer_tar)]}
    blobs_on_disk = {p.name for p in (root / "blobs" / "sha256").iterdir()}
    referenced = {
        d["digest"].split(":")[1] for d in [mdesc, manifest["config"], *manifest["layers"]]
    }
    assert blobs_on_disk == referenced
    return {"index": index, "manifest": manifest, "config": config, "layer_tar": layer_tar}


@pytest.fixture(scope="module")
def image():
    return build_image()


@pytest.fixture(scope="module")
def layer_members(image) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(image.layer_tar)) as tar:
        return tar.getmembers()


# --- determinism ---------------------------------------------------------------------------


def test_two_builds_give_the_same_digests(image):
    again = build_image()
    assert again.layer_tar == image.layer_tar
    assert again.layer.digest == image.layer.digest
    assert again.config.digest == image.config.digest
    assert again.manifest.digest == image.manifest.digest


def test_two_layouts_are_byte_identical(tmp_path):
    d1 = write_oci_layout(tmp_path / "a")
    d2 = write_oci_layout(tmp_path / "b")
    assert d1 == d2
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    assert files_a == files_b
    for rel in files_a:
        if (tmp_path / "a" / rel).is_file():
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_archives_are_byte_identical(tmp_path):
    write_docker_archive(tmp_path / "a.tar")
    write_docker_archive(tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    write_oci_archive(tmp_path / "a.oci.tar")
    write_oci_archive(tmp_path / "b.oci.tar")
    assert (tmp_path / "a.oci.tar").read_bytes() == (tmp_path / "b.oci.tar").read_bytes()


def test_host_state_does_not_reach_the_digest(tmp_path, image):
    # Another process, umask, time zone and working directory: the same manifest digest.
    proc = subprocess.run(
        ["sh", "-c", f'umask 077; exec "{sys.executable}" -m mkimage oci-layout out'],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TZ": "Asia/Tokyo"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == image.manifest.digest


# --- the layer ---------------------------------------------------------------------------


def test_layer_entries_are_normalized(layer_members):
    for m in layer_members:
        assert m.mtime == 0, m.name
        assert not m.name.startswith("/") and ".." not in PurePosixPath(m.name).parts
        assert m.uname == "" and m.gname == ""
        assert m.pax_headers == {}, m.name
        assert m.type in (tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.LNKTYPE), m.name
        if m.name != "home/user":
            assert (m.uid, m.gid) == (0, 0), m.name
    home = next(m for m in layer_members if m.name == "home/user")
    assert (home.uid, home.gid) == (1000, 1000)


def test_layer_order_lets_a_streaming_reader_extract_it(layer_members):
    seen: set[str] = set()
    for m in layer_members:
        parent = str(PurePosixPath(m.name).parent)
        assert parent == "." or parent in seen, f"{m.name} before its directory"
        if m.islnk():
            assert m.linkname in seen, f"{m.name} before its target {m.linkname}"
        seen.add(m.name)
    regular = [m.name for m in layer_members if not m.islnk()]
    links = [m.name for m in layer_members if m.islnk()]
    key = lambda name: PurePosixPath(name).parts  # noqa: E731
    assert regular == sorted(regular, key=key)
    assert links == sorted(links, key=key)


def test_layer_holds_busybox_and_every_applet(layer_members):
    by_name = {m.name: m for m in layer_members}
    bb = by_name["bin/busybox"]
    assert bb.isreg() and bb.mode == 0o755
    assert bb.size == DEFAULT_BUSYBOX.stat().st_size
    applets = subprocess.run(
        [str(DEFAULT_BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in set(applets) - {"bin/busybox"}:
        assert by_name[applet].islnk() and by_name[applet].linkname == "bin/busybox", applet
    for must in ["bin/sh", "bin/true", "bin/cat", "bin/sleep", "usr/bin/id", "usr/bin/wc"]:
        assert by_name[must].linkname == "bin/busybox"
    assert "sbin/ip" in by_name


def test_layer_directories_and_modes(layer_members):
    modes = {m.name: m.mode for m in layer_members if m.isdir()}
    assert modes["tmp"] == 0o1777
    assert modes["root"] == 0o700
    for d in ["proc", "sys", "dev", "etc", "var", "run", "usr/bin", "usr/sbin", "sbin", "bin"]:
        assert d in modes, d
    assert modes["home/user"] == 0o755


def test_layer_accounts(image):
    with tarfile.open(fileobj=io.BytesIO(image.layer_tar)) as tar:
        passwd = tar.extractfile("etc/passwd").read().decode().splitlines()
        group = tar.extractfile("etc/group").read().decode().splitlines()
        hosts = tar.extractfile("etc/hosts").read().decode()
    assert "root:x:0:0:root:/root:/bin/sh" in passwd
    assert "user:x:1000:1000::/home/user:/bin/sh" in passwd
    assert any(line.startswith("nobody:x:65534:65534:") for line in passwd)
    assert {"root:x:0:", "user:x:1000:", "nogroup:x:65534:"} <= set(group)
    assert {"wheel:x:10:user", "audio:x:29:user"} <= set(group)
    assert "localhost" in hosts


# --- OCI layout ----------------------------------------------------------------------------


def test_layout_verifies_end_to_end(tmp_path, image):
    digest = write_oci_layout(tmp_path / "layout")
    assert digest == image.manifest.digest
    got = verify_layout(tmp_path / "layout")
    assert got["index"]["manifests"][0]["digest"] == digest
    assert got["layer_tar"] == image.layer_tar
    assert leftovers(tmp_path) == []


def test_layout_config(image):
    config = json.loads(image.config.data)
    if HOST_ARCH:
        assert config["architecture"] == HOST_ARCH
    assert config["os"] == "linux"
    assert config["config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") and "/bin" in e for e in config["config"]["Env"])
    assert config["rootfs"]["diff_ids"] == [image.diff_id] == [sha256(image.layer_tar)]
    assert len(config["history"]) == 1
    assert "BusyBox" in config["history"][0]["created_by"]
    assert config["created"] == config["history"][0]["created"]


@pytest.mark.parametrize(
    ("tag", "ref_name", "full"),
    [
        ("busybox:latest", "latest", "docker.io/library/busybox:latest"),
        ("busybox", "latest", "docker.io/library/busybox:latest"),
        ("test/bb:1.35", "1.35", "docker.io/test/bb:1.35"),
        ("localhost:5000/bb:v1", "v1", "localhost:5000/bb:v1"),
    ],
)
def test_layout_tag_annotations(tmp_path, tag, ref_name, full):
    write_oci_layout(tmp_path / "l", tag)
    annotations = json.loads((tmp_path / "l" / "index.json").read_text())["manifests"][0][
        "annotations"
    ]
    assert annotations == {
        "org.opencontainers.image.ref.name": ref_name,
        "io.containerd.image.name": full,
    }


def test_layout_as_tar_holds_the_same_layout(tmp_path, image):
    digest = write_oci_archive(tmp_path / "oci.tar")
    assert digest == image.manifest.digest
    with tarfile.open(tmp_path / "oci.tar") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "x", filter="data")
    assert {"oci-layout", "index.json", "blobs", "blobs/sha256"} <= set(names)
    verify_layout(tmp_path / "x")


def test_layout_into_an_existing_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    write_oci_layout(tmp_path / "empty")
    verify_layout(tmp_path / "empty")


# --- docker archive --------------------------------------------------------------------------


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_docker_archive_structure(tmp_path, image):
    write_docker_archive(tmp_path / "bb.tar")
    files = read_archive(tmp_path / "bb.tar")
    manifest = json.loads(files["manifest.json"])
    assert isinstance(manifest, list) and len(manifest) == 1
    entry = manifest[0]
    assert set(entry) == {"Config", "RepoTags", "Layers"}
    assert entry["RepoTags"] == ["busybox:latest"]
    config_bytes = files[entry["Config"]]
    assert entry["Config"] == sha256(config_bytes).split(":")[1] + ".json"
    assert config_bytes == image.config.data
    assert len(entry["Layers"]) == 1
    layer_name = entry["Layers"][0]
    assert layer_name.endswith("/layer.tar")
    layer = files[layer_name]
    assert json.loads(config_bytes)["rootfs"]["diff_ids"] == [sha256(layer)]
    assert layer == image.layer_tar
    layer_dir = layer_name.split("/")[0]
    assert json.loads(files["repositories"]) == {"busybox": {"latest": layer_dir}}
    assert set(files) == {"manifest.json", "repositories", entry["Config"], layer_name}


@pytest.mark.parametrize(
    ("tag", "repo_tag", "repo"),
    [
        ("busybox", "busybox:latest", "busybox"),
        ("docker.io/library/busybox:1.35", "busybox:1.35", "busybox"),
        ("myorg/tool:2", "myorg/tool:2", "myorg/tool"),
        ("reg.example.com:5000/a/b:x", "reg.example.com:5000/a/b:x", "reg.example.com:5000/a/b"),
    ],
)
def test_docker_archive_tags(tmp_path, tag, repo_tag, repo):
    write_docker_archive(tmp_path / "a.tar", tag)
    files = read_archive(tmp_path / "a.tar")
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == [repo_tag]
    repositories = json.loads(files["repositories"])
    assert list(repositories) == [repo]
    assert list(repositories[repo]) == [repo_tag.rsplit(":", 1)[1]]


def test_docker_archive_replaces_an_existing_file(tmp_path):
    (tmp_path / "a.tar").write_text("old")
    write_docker_archive(tmp_path / "a.tar")
    assert "manifest.json" in read_archive(tmp_path / "a.tar")
    assert leftovers(tmp_path) == []


# --- references --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Busybox:latest",
        "busybox:",
        "busybox:-x",
        "busybox@sha256:" + "0" * 64,
        "a//b",
        "bad_domain.com:x/y:z:w",
        "busybox:" + "x" * 200,
    ],
)
def test_bad_references_are_refused(bad):
    with pytest.raises(MkimageError, match="invalid tag"):
        parse_reference(bad)


def test_reference_normalization():
    ref = parse_reference("index.docker.io/busybox")
    assert (ref.full, ref.familiar) == ("docker.io/library/busybox:latest", "busybox:latest")
    ref = parse_reference("localhost/x:1")
    assert (ref.domain, ref.path, ref.tag) == ("localhost", "x", "1")


# --- bundle --------------------------------------------------------------------------------


def test_bundle_config_is_the_default_spec(tmp_path):
    bundle = build_bundle(tmp_path / "b")
    assert bundle == (tmp_path / "b").absolute()
    config = json.loads((bundle / "config.json").read_text())
    assert config == default_spec(["sh"], terminal=False, readonly=True)
    assert sorted(p.name for p in bundle.iterdir()) == ["config.json", "rootfs"]


def test_bundle_options(tmp_path):
    args = ["/bin/sh", "-c", "echo hello; id"]
    bundle = build_bundle(tmp_path / "b", args, terminal=True, readonly=False)
    config = json.loads((bundle / "config.json").read_text())
    assert config == default_spec(args, terminal=True, readonly=False)


def test_bundle_rootfs_runs_without_a_runtime(tmp_path):
    rootfs = build_bundle(tmp_path / "b") / "rootfs"
    assert (rootfs / "bin" / "sh").samefile(rootfs / "bin" / "busybox")
    assert (rootfs / "usr" / "bin" / "wc").samefile(rootfs / "bin" / "busybox")
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (rootfs / "root").stat().st_mode & 0o7777 == 0o700
    for d in ["proc", "sys", "dev", "run", "var", "home/user", "sbin", "usr/sbin"]:
        assert (rootfs / d).is_dir(), d
    if os.geteuid() == 0:
        st = (rootfs / "home" / "user").stat()
        assert (st.st_uid, st.st_gid) == (1000, 1000)
    # A static busybox picks the applet from argv[0], so the links work straight from disk.
    out = subprocess.run(
        [str(rootfs / "bin" / "sh"), "-c", "echo ok"], capture_output=True, text=True, timeout=30
    )
    assert out.stdout == "ok\n"


def test_bundle_as_non_root_skips_ownership(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tree_module.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(tree_module.os, "chown", refuse)
    monkeypatch.setattr(tree_module.os, "lchown", refuse)
    rootfs = build_bundle(tmp_path / "b") / "rootfs"
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777


def test_bundle_and_layer_hold_the_same_tree(tmp_path, layer_members):
    rootfs = build_bundle(tmp_path / "b") / "rootfs"
    on_disk = {str(p.relative_to(rootfs)) for p in rootfs.rglob("*")}
    assert on_disk == {m.name for m in layer_members}


def test_bundle_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("mine")
    with pytest.raises(MkimageError, match="not an empty directory"):
        build_bundle(tmp_path / "b")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["keep"]
    assert leftovers(tmp_path) == []


def test_bundle_replace(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old").write_text("x")
    build_bundle(tmp_path / "b", replace=True)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["config.json", "rootfs"]
    assert leftovers(tmp_path) == []


def test_failure_halfway_leaves_nothing(tmp_path, monkeypatch):
    calls = 0
    real_link = os.link

    def failing_link(src, dst, *a, **kw):
        nonlocal calls
        calls += 1
        if calls == 50:
            raise OSError(28, "No space left on device", str(dst))
        return real_link(src, dst, *a, **kw)

    monkeypatch.setattr(tree_module.os, "link", failing_link)
    with pytest.raises(OSError, match="No space"):
        build_bundle(tmp_path / "b")
    assert calls == 50
    assert list(tmp_path.iterdir()) == []


def test_archive_failure_halfway_leaves_nothing(tmp_path, monkeypatch):
    import mkimage.docker_archive as docker_archive

    def failing_write_tar(nodes, out):
        out.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(docker_archive, "write_tar", failing_write_tar)
    (tmp_path / "a.tar").write_text("previous")
    with pytest.raises(OSError):
        write_docker_archive(tmp_path / "a.tar")
    assert (tmp_path / "a.tar").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]


# --- busybox checks --------------------------------------------------------------------------


def fake_elf(interp: bool) -> bytes:
    """A 64-bit little-endian ELF header with one program header, PT_INTERP or PT_LOAD."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<H", header, 18, 62)
    struct.pack_into("<Q", header, 32, 64)
    struct.pack_into("<HH", header, 54, 56, 1)
    phdr = bytearray(56)
    struct.pack_into("<I", phdr, 0, 3 if interp else 1)
    return bytes(header + phdr)


def test_missing_busybox_names_the_package(tmp_path):
    with pytest.raises(MkimageError, match="busybox-static"):
        load_busybox(tmp_path / "nope")


def test_dynamic_busybox_is_refused(tmp_path):
    (tmp_path / "bb").write_bytes(fake_elf(interp=True))
    with pytest.raises(MkimageError, match=r"dynamically linked.*busybox-static"):
        load_busybox(tmp_path / "bb")


def test_non_elf_busybox_is_refused(tmp_path):
    (tmp_path / "bb").write_text("#!/bin/sh\n")
    with pytest.raises(MkimageError, match="not an ELF"):
        load_busybox(tmp_path / "bb")


def test_busybox_facts():
    bb = load_busybox()
    assert bb.version.startswith("BusyBox v")
    assert "bin/busybox" not in bb.applets
    assert "bin/sh" in bb.applets
    if HOST_ARCH:
        assert bb.architecture == HOST_ARCH


# --- CLI -----------------------------------------------------------------------------------


def test_cli_bundle_with_args(tmp_path):
    proc = pymkimage("bundle", str(tmp_path / "b"), "--args", "/bin/sh", "-c", "echo hi; id")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh", "-c", "echo hi; id"]
    assert config["process"]["terminal"] is False
    assert config["root"]["readonly"] is True


def test_cli_bundle_flags(tmp_path):
    proc = pymkimage("bundle", str(tmp_path / "b"), "--terminal", "--no-readonly")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["process"]["terminal"] is True
    assert config["root"]["readonly"] is False
    assert config["process"]["args"] == ["sh"]
    proc = pymkimage("bundle", str(tmp_path / "b"))
    assert_one_line_error(proc, "not an empty directory")
    proc = pymkimage("bundle", str(tmp_path / "b"), "--force")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "b" / "config.json").read_text())["process"]["terminal"] is False


def test_cli_oci_layout_prints_the_manifest_digest(tmp_path, image):
    proc = pymkimage("oci-layout", str(tmp_path / "l"), "--tag", "busybox:latest")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == image.manifest.digest + "\n"
    verify_layout(tmp_path / "l")
    proc = pymkimage("oci-layout", "--tar", str(tmp_path / "l.tar"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == image.manifest.digest + "\n"


def test_cli_docker_archive(tmp_path):
    proc = pymkimage("docker-archive", str(tmp_path / "a.tar"), "--tag", "tools/bb:1")
    assert proc.returncode == 0, proc.stderr
    files = read_archive(tmp_path / "a.tar")
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == ["tools/bb:1"]


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        (["bundle", "{t}/b", "--busybox", "{t}/none"], ["busybox-static"], 1),
        (["oci-layout", "{t}/l", "--busybox", "{t}/none"], ["busybox-static"], 1),
        (["docker-archive", "{t}/a.tar", "--busybox", "{t}/none"], ["busybox-static"], 1),
        (["oci-layout", "{t}/l", "--tag", "Bad:Tag"], ["invalid tag"], 1),
        (["docker-archive", "{t}/a.tar", "--tag", "x@sha256:00"], ["invalid tag"], 1),
        (["docker-archive", "{t}/no/such/dir/a.tar"], ["no such directory"], 1),
        (["docker-archive", "{t}"], ["is a directory"], 1),
        (["docker-archive", "/proc/pymkimage.tar"], ["cannot write /proc/pymkimage.tar"], 1),
        (["bundle", "/proc/pymkimage-bundle"], ["cannot create /proc/pymkimage-bundle"], 1),
        (["bundle", "{t}/b", "--args"], ["--args needs"], 2),
        (["oci-layout"], ["either DIR or --tar"], 2),
        (["oci-layout", "{t}/l", "--tar", "{t}/l.tar"], ["either DIR or --tar"], 2),
        (["frobnicate"], ["invalid choice"], 2),
        ([], ["required"], 2),
    ],
)
def test_cli_errors_are_one_line_and_leave_nothing(tmp_path, args, words, code):
    work = tmp_path / "work"
    work.mkdir()
    proc = pymkimage(*(a.replace("{t}", str(work)) for a in args))
    assert_one_line_error(proc, *words)
    assert proc.returncode == code
    assert list(work.iterdir()) == []


def test_cli_help():
    proc = pymkimage("--help")
    assert proc.returncode == 0
    for command in ["bundle", "oci-layout", "docker-archive"]:
        assert command in proc.stdout
    proc = pymkimage("bundle", "--help")
    assert "--terminal" in proc.stdout and "--no-readonly" in proc.stdout
