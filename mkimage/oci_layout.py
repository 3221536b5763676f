"""An OCI image layout (image-spec 1.0), as a directory or as a tar of one.

index.json names the manifest twice, as BuildKit and containerd exports do: the
`org.opencontainers.image.ref.name` annotation holds the tag alone (so `skopeo ... oci:DIR:latest`
finds it) and `io.containerd.image.name` the full name that `ctr import` and `docker load` use.
"""

from __future__ import annotations

from pathlib import Path

from mkimage.atomic import atomic_directory, atomic_file
from mkimage.busybox import Busybox
from mkimage.digest import canonical_json
from mkimage.image import MEDIA_TYPE_INDEX, Image, build_image
from mkimage.tree import Node, file_node, write_tar, write_tree

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def index_json(image: Image) -> bytes:
    annotations = {
        ANNOTATION_CONTAINERD_NAME: image.reference.full,
        ANNOTATION_REF_NAME: image.reference.tag,
    }
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [image.manifest.descriptor(annotations)],
        }
    )


def layout_nodes(image: Image) -> list[Node]:
    blobs = [image.layer, image.config, image.manifest]
    return [
        file_node("oci-layout", OCI_LAYOUT),
        file_node("index.json", index_json(image)),
        *(file_node(f"blobs/sha256/{blob.hex}", blob.data) for blob in blobs),
    ]


def write_oci_layout(
    dest: Path | str,
    tag: str = "busybox:latest",
    *,
    busybox: Path | str | Busybox | None = None,
    replace: bool = False,
) -> str:
    """Writes the layout into DEST (absent or empty); returns the manifest digest."""
    image = build_image(tag, busybox=busybox)
    with atomic_directory(dest, replace=replace) as tmp:
        write_tree(layout_nodes(image), tmp)
    return image.manifest.digest


def write_oci_archive(
    dest: Path | str,
    tag: str = "busybox:latest",
    *,
    busybox: Path | str | Busybox | None = None,
) -> str:
    """Writes the layout as one tar file (skopeo's `oci-archive:`); returns the manifest digest."""
    image = build_image(tag, busybox=busybox)
    with atomic_file(dest) as f:
        write_tar(layout_nodes(image), f)
    return image.manifest.digest
