"""pymkimage: builds a busybox image from the host's busybox-static, for users without a
registry and for the tests of every layer.

The API is loaded on first use so that `pymkimage --help` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mkimage.bundle import build_bundle
    from mkimage.busybox import load_busybox
    from mkimage.docker_archive import write_docker_archive
    from mkimage.errors import MkimageError
    from mkimage.image import Image, build_image
    from mkimage.oci_layout import write_oci_archive, write_oci_layout

_EXPORTS = {
    "build_bundle": "mkimage.bundle",
    "write_oci_layout": "mkimage.oci_layout",
    "write_oci_archive": "mkimage.oci_layout",
    "write_docker_archive": "mkimage.docker_archive",
    "build_image": "mkimage.image",
    "Image": "mkimage.image",
    "load_busybox": "mkimage.busybox",
    "MkimageError": "mkimage.errors",
}

__all__ = [
    "Image",
    "MkimageError",
    "build_bundle",
    "build_image",
    "load_busybox",
    "write_docker_archive",
    "write_oci_archive",
    "write_oci_layout",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mkimage' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
