"""Index/manifest/config parsing, children for GC, and platform selection from a hand-made
multi-platform index."""

from __future__ import annotations

import json

import pytest

from containerd_py.images import mediatypes as mt
from containerd_py.images.errors import (
    InvalidManifestError,
    PlatformNotFoundError,
    UnsupportedMediaTypeError,
)
from containerd_py.images.manifest import (
    Descriptor,
    children,
    parse_config,
    parse_index,
    parse_manifest,
    resolve_manifest,
    select_platform,
)
from containerd_py.images.platforms import (
    Platform,
    PlatformMatcher,
    host_platform,
    normalize,
    parse_platform,
)


def d(n: int) -> str:
    return f"sha256:{n:064x}"


def entry(n: int, platform: dict | None, media_type: str = mt.OCI_MANIFEST, **extra) -> dict:
    out = {"mediaType": media_type, "digest": d(n), "size": 100 + n, **extra}
    if platform is not None:
        out["platform"] = platform
    return out


MULTI = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        entry(1, {"os": "linux", "architecture": "amd64"}),
        entry(2, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        entry(3, {"os": "linux", "architecture": "arm", "variant": "v6"}),
        entry(4, {"os": "linux", "architecture": "arm", "variant": "v7"}),
        entry(5, {"os": "linux", "architecture": "386"}),
        entry(6, {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763"}),
        # BuildKit's provenance: a manifest for "unknown/unknown", never a runnable image.
        entry(
            7,
            {"os": "unknown", "architecture": "unknown"},
            annotations={"vnd.docker.reference.type": "attestation-manifest"},
        ),
        entry(8, {"os": "linux", "architecture": "s390x"}),
    ],
}


def index_bytes(doc: dict = MULTI) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("wanted", "digest"),
    [
        ("linux/amd64", d(1)),
        ("linux/x86_64", d(1)),
        ("linux/arm64", d(2)),
        ("linux/arm64/v8", d(2)),
        ("linux/aarch64", d(2)),
        ("linux/arm/v7", d(4)),
        ("linux/arm", d(4)),
        ("linux/armhf", d(4)),
        ("linux/arm/v6", d(3)),
        ("linux/386", d(5)),
        ("windows/amd64", d(6)),
        ("s390x", d(8)),
    ],
)
def test_select_platform(wanted: str, digest: str) -> None:
    index = parse_index(index_bytes(), mt.OCI_INDEX)
    assert select_platform(index.manifests, wanted).digest == digest


def test_host_default_and_fallbacks() -> None:
    index = parse_index(index_bytes())
    host = host_platform()
    assert host.os == "linux" and host.architecture in ("amd64", "arm64", "arm", "386", "s390x")
    chosen = select_platform(index.manifests)
    assert chosen.platform is not None
    assert normalize(chosen.platform).architecture == host.architecture
    # An arm64 host runs 32-bit arm images when nothing better is there; amd64 runs 386.
    only_32 = [m for m in index.manifests if m.digest in (d(3), d(4))]
    assert select_platform(only_32, "linux/arm64").digest == d(4)
    assert select_platform([index.manifests[4]], "linux/amd64").digest == d(5)
    with pytest.raises(PlatformNotFoundError, match="linux/ppc64le"):
        select_platform(index.manifests, "linux/ppc64le")
    # arm/v5 cannot run a v6 image
    with pytest.raises(PlatformNotFoundError):
        select_platform(only_32, "linux/arm/v5")


def test_first_match_wins_and_unplatformed_entries_come_last() -> None:
    doc = {
        "schemaVersion": 2,
        "manifests": [
            entry(1, None),
            entry(2, {"os": "linux", "architecture": "amd64"}),
            entry(3, {"os": "linux", "architecture": "amd64"}),
        ],
    }
    index = parse_index(index_bytes(doc))
    assert select_platform(index.manifests, "linux/amd64").digest == d(2)
    assert select_platform(index.manifests, "linux/riscv64").digest == d(1)


def test_platform_parsing_and_normalization() -> None:
    assert str(parse_platform("linux/arm64/v8")) == "linux/arm64"
    assert str(parse_platform("linux/armel")) == "linux/arm/v6"
    assert str(parse_platform("linux/amd64/v1")) == "linux/amd64"
    assert str(parse_platform("Linux/AMD64/v3")) == "linux/amd64/v3"
    assert parse_platform("arm64") == Platform("linux", "arm64")
    assert parse_platform("linux").architecture == host_platform().architecture
    for bad in ("", "linux/", "a/b/c/d"):
        with pytest.raises(InvalidManifestError):
            parse_platform(bad)
    assert PlatformMatcher("linux/amd64").rank(None) == 1000


def test_nested_index_is_followed() -> None:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": d(20), "size": 2},
            "layers": [],
        }
    ).encode()
    inner = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": "sha256:" + "c" * 64,
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "arm64"},
                }
            ],
        }
    ).encode()
    outer_desc = Descriptor(mt.OCI_INDEX, "sha256:" + "a" * 64, 0)
    outer = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": mt.OCI_INDEX,
                    "digest": "sha256:" + "b" * 64,
                    "size": len(inner),
                    "platform": {"os": "linux", "architecture": "arm64"},
                }
            ],
        }
    ).encode()
    blobs = {"a": outer, "b": inner, "c": manifest}
    desc, m = resolve_manifest(lambda x: blobs[x.digest[7]], outer_desc, "linux/arm64")
    assert desc.digest == "sha256:" + "c" * 64
    assert m.config.digest == d(20)


def test_manifest_and_config_parsing_and_children() -> None:
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": d(1), "size": 10},
        "layers": [
            {"mediaType": mt.DOCKER_LAYER_GZIP, "digest": d(2), "size": 20},
            {
                "mediaType": mt.DOCKER_LAYER_FOREIGN_GZIP,
                "digest": d(3),
                "size": 30,
                "urls": ["https://example.invalid/layer"],
            },
        ],
    }
    data = json.dumps(manifest_doc).encode()
    m = parse_manifest(data, mt.DOCKER_MANIFEST)
    assert m.media_type == mt.DOCKER_MANIFEST
    assert [x.digest for x in m.layers] == [d(2), d(3)]
    assert m.layers[1].urls == ("https://example.invalid/layer",)
    assert mt.is_foreign(m.layers[1].media_type)
    got = children(Descriptor(mt.DOCKER_MANIFEST, d(9), len(data)), data)
    assert [c.digest for c in got] == [d(1), d(2), d(3)]
    idx = children(Descriptor(mt.OCI_INDEX, d(9), 1), index_bytes())
    assert len(idx) == 8
    assert children(Descriptor(mt.OCI_LAYER_GZIP, d(9), 1), b"\x1f\x8b") == []

    config = parse_config(
        json.dumps(
            {
                "architecture": "arm",
                "variant": "v7",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [d(4)]},
                "config": {"Cmd": ["sh"]},
            }
        ).encode()
    )
    assert config.diff_ids == (d(4),)
    assert str(config.platform) == "linux/arm/v7"
    assert config.raw["config"] == {"Cmd": ["sh"]}


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        (b"not json", InvalidManifestError),
        (b"[]", InvalidManifestError),
        (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), UnsupportedMediaTypeError),
        (json.dumps({"schemaVersion": 2, "config": {}}).encode(), InvalidManifestError),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_INDEX,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": d(1), "size": 1},
                    "layers": [],
                }
            ).encode(),
            InvalidManifestError,
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": "sha256:xyz", "size": 1},
                    "layers": [],
                }
            ).encode(),
            InvalidManifestError,
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": d(1), "size": -1},
                    "layers": [],
                }
            ).encode(),
            InvalidManifestError,
        ),
    ],
)
def test_bad_manifests(doc: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_manifest(doc, mt.OCI_MANIFEST)


def test_descriptor_media_type_must_agree_with_the_document() -> None:
    with pytest.raises(InvalidManifestError, match="descriptor says"):
        parse_index(index_bytes(), mt.DOCKER_MANIFEST_LIST)
    with pytest.raises(InvalidManifestError):
        parse_config(b'{"os": "linux", "architecture": "amd64", "rootfs": {"type": "x"}}')


def test_descriptor_round_trip() -> None:
    raw = entry(
        1,
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        annotations={"k": "v"},
        urls=["u"],
    )
    desc = Descriptor.from_dict(raw)
    assert Descriptor.from_dict(desc.to_dict()) == desc
    assert desc.to_dict()["platform"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
