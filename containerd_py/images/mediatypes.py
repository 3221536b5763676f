"""Media types of OCI and Docker schema 2 images, and what we need to know about each.

| role      | OCI                                               | Docker schema 2                                               |
|-----------|---------------------------------------------------|---------------------------------------------------------------|
| index     | application/vnd.oci.image.index.v1+json           | application/vnd.docker.distribution.manifest.list.v2+json     |
| manifest  | application/vnd.oci.image.manifest.v1+json        | application/vnd.docker.distribution.manifest.v2+json          |
| config    | application/vnd.oci.image.config.v1+json          | application/vnd.docker.container.image.v1+json                |
| layer     | application/vnd.oci.image.layer.v1.tar[+gzip|+zstd] | application/vnd.docker.image.rootfs.diff.tar[.gzip|.zstd]   |
| foreign   | ...layer.nondistributable.v1.tar[+gzip|+zstd]     | application/vnd.docker.image.rootfs.foreign.diff.tar.gzip     |
"""  # noqa: E501

from __future__ import annotations

from containerd_py.archive.compression import Compression

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_FOREIGN = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_FOREIGN_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_FOREIGN_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

OCI_LAYOUT_VERSION = "1.0.0"

INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})
SCHEMA1 = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED})

_LAYERS: dict[str, Compression] = {
    OCI_LAYER: Compression.NONE,
    OCI_LAYER_GZIP: Compression.GZIP,
    OCI_LAYER_ZSTD: Compression.ZSTD,
    OCI_LAYER_FOREIGN: Compression.NONE,
    OCI_LAYER_FOREIGN_GZIP: Compression.GZIP,
    OCI_LAYER_FOREIGN_ZSTD: Compression.ZSTD,
    DOCKER_LAYER: Compression.NONE,
    DOCKER_LAYER_GZIP: Compression.GZIP,
    DOCKER_LAYER_ZSTD: Compression.ZSTD,
    DOCKER_LAYER_FOREIGN_GZIP: Compression.GZIP,
}
FOREIGN_LAYERS = frozenset(
    {OCI_LAYER_FOREIGN, OCI_LAYER_FOREIGN_GZIP, OCI_LAYER_FOREIGN_ZSTD, DOCKER_LAYER_FOREIGN_GZIP}
)
DOCKER_TYPES = frozenset(
    {DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, DOCKER_CONFIG}
    | {t for t in _LAYERS if t.startswith("application/vnd.docker.")}
)


def base(media_type: str) -> str:
    """The media type without parameters (`; charset=...`), which some registries add."""
    return media_type.split(";", 1)[0].strip()


def is_index(media_type: str) -> bool:
    return base(media_type) in INDEXES


def is_manifest(media_type: str) -> bool:
    return base(media_type) in MANIFESTS


def is_config(media_type: str) -> bool:
    return base(media_type) in CONFIGS


def is_layer(media_type: str) -> bool:
    return base(media_type) in _LAYERS


def is_foreign(media_type: str) -> bool:
    return base(media_type) in FOREIGN_LAYERS


def is_docker(media_type: str) -> bool:
    return base(media_type) in DOCKER_TYPES


def layer_compression(media_type: str) -> Compression:
    """What the media type says the layer is compressed with (the bytes may disagree:
    unpacking sniffs them)."""
    try:
        return _LAYERS[base(media_type)]
    except KeyError:
        raise ValueError(f"not a layer media type: {media_type}") from None


def layer_type(compression: Compression, *, docker: bool, foreign: bool = False) -> str:
    """The layer media type of an image family for a compression."""
    if docker:
        if foreign:
            if compression is not Compression.GZIP:
                raise ValueError("docker foreign layers are gzip only")
            return DOCKER_LAYER_FOREIGN_GZIP
        table = {
            Compression.NONE: DOCKER_LAYER,
            Compression.GZIP: DOCKER_LAYER_GZIP,
            Compression.ZSTD: DOCKER_LAYER_ZSTD,
        }
    elif foreign:
        table = {
            Compression.NONE: OCI_LAYER_FOREIGN,
            Compression.GZIP: OCI_LAYER_FOREIGN_GZIP,
            Compression.ZSTD: OCI_LAYER_FOREIGN_ZSTD,
        }
    else:
        table = {
            Compression.NONE: OCI_LAYER,
            Compression.GZIP: OCI_LAYER_GZIP,
            Compression.ZSTD: OCI_LAYER_ZSTD,
        }
    try:
        return table[compression]
    except KeyError:
        raise ValueError(f"no layer media type for {compression.value}") from None
