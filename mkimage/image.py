"""The image both archive forms hold: one gzip layer, its config and the manifest."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

from mkimage.busybox import Busybox, load_busybox
from mkimage.digest import Blob, canonical_json, sha256_digest
from mkimage.reference import Reference, parse_reference
from mkimage.rootfs import rootfs_nodes
from mkimage.tree import tar_bytes

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# The epoch, like the layer's mtimes: a wall-clock date would change the config digest.
CREATED = "1970-01-01T00:00:00Z"

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CMD = ("sh",)


@dataclass(frozen=True)
class Image:
    reference: Reference
    layer_tar: bytes
    """The uncompressed layer; its digest is the config's diff_id."""
    layer: Blob
    config: Blob
    manifest: Blob

    @property
    def diff_id(self) -> str:
        return sha256_digest(self.layer_tar)

    @property
    def image_id(self) -> str:
        """The config digest, which is what docker shows as the image ID."""
        return self.config.digest


def gzip_bytes(data: bytes) -> bytes:
    # mtime 0 and no file name in the gzip header, so only the content decides the digest.
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def image_config(busybox: Busybox, diff_id: str) -> dict[str, object]:
    return {
        "architecture": busybox.architecture,
        "os": "linux",
        "created": CREATED,
        "config": {"Env": [PATH_ENV], "Cmd": list(DEFAULT_CMD), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {
                "created": CREATED,
                "created_by": f"pymkimage: {busybox.version} root filesystem",
            }
        ],
    }


def build_image(
    tag: str = "busybox:latest", *, busybox: Path | str | Busybox | None = None
) -> Image:
    """Builds the image in memory: a busybox layer is a couple of megabytes."""
    reference = parse_reference(tag)
    bb = busybox if isinstance(busybox, Busybox) else load_busybox(busybox)
    layer_tar = tar_bytes(rootfs_nodes(bb))
    layer = Blob(MEDIA_TYPE_LAYER_GZIP, gzip_bytes(layer_tar))
    config = Blob(MEDIA_TYPE_CONFIG, canonical_json(image_config(bb, sha256_digest(layer_tar))))
    manifest = Blob(
        MEDIA_TYPE_MANIFEST,
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    return Image(reference, layer_tar, layer, config, manifest)
