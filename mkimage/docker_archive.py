"""A `docker save`-style tarball, in the layout `docker load` and skopeo's
`docker-archive:` read: manifest.json, repositories, <config hex>.json, <layer id>/layer.tar."""

from __future__ import annotations

import json
from pathlib import Path

from mkimage.atomic import atomic_file
from mkimage.busybox import Busybox
from mkimage.image import Image, build_image
from mkimage.tree import Node, file_node, write_tar


def archive_nodes(image: Image) -> list[Node]:
    # docker names the layer directory after a v1 ID; any stable name works for `docker load`,
    # and the diff_id's hex is stable and already known.
    layer_dir = image.diff_id.removeprefix("sha256:")
    config_name = f"{image.config.hex}.json"
    layer_name = f"{layer_dir}/layer.tar"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [image.reference.familiar],
            "Layers": [layer_name],
        }
    ]
    repositories = {image.reference.familiar_name: {image.reference.tag: layer_dir}}
    return [
        file_node("manifest.json", json.dumps(manifest, separators=(",", ":")).encode()),
        file_node("repositories", json.dumps(repositories, separators=(",", ":")).encode()),
        file_node(config_name, image.config.data),
        file_node(layer_name, image.layer_tar),
    ]


def write_docker_archive(
    dest: Path | str,
    tag: str = "busybox:latest",
    *,
    busybox: Path | str | Busybox | None = None,
) -> None:
    """Writes the archive to DEST, replacing an existing file as `docker save -o` does."""
    image = build_image(tag, busybox=busybox)
    with atomic_file(dest) as f:
        write_tar(archive_nodes(image), f)
