"""Images: references, media types, manifests and platforms, and moving images between a
content store and archives (OCI image layouts, docker-save tarballs).

Nothing here talks gRPC or owns storage: the content store comes in through the
`ContentStore` Protocol (store.py), which containerd_py.content implements.
"""

from __future__ import annotations

import importlib

# Names load from their modules on first use (PEP 562): a client that only parses a
# reference must not pay for the archive code (tarfile, gzip, zstandard) on every start.
_WHERE = {
    "export_docker_archive": "exporter",
    "export_oci_archive": "exporter",
    "export_oci_layout": "exporter",
    "ImportedImage": "importer",
    "import_archive": "importer",
    "import_docker_archive": "importer",
    "import_oci_layout": "importer",
    "Descriptor": "manifest",
    "ImageConfig": "manifest",
    "Index": "manifest",
    "Manifest": "manifest",
    "children": "manifest",
    "parse_config": "manifest",
    "parse_index": "manifest",
    "parse_manifest": "manifest",
    "resolve_manifest": "manifest",
    "select_platform": "manifest",
    "Platform": "platforms",
    "PlatformMatcher": "platforms",
    "host_platform": "platforms",
    "parse_platform": "platforms",
    "Reference": "reference",
    "normalize": "reference",
    "parse_docker_ref": "reference",
    "parse_normalized": "reference",
    "BlobInfo": "store",
    "ContentStore": "store",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BlobInfo",
    "ContentStore",
    "Descriptor",
    "ImageConfig",
    "ImportedImage",
    "Index",
    "Manifest",
    "Platform",
    "PlatformMatcher",
    "Reference",
    "children",
    "export_docker_archive",
    "export_oci_archive",
    "export_oci_layout",
    "host_platform",
    "import_archive",
    "import_docker_archive",
    "import_oci_layout",
    "normalize",
    "parse_config",
    "parse_docker_ref",
    "parse_index",
    "parse_manifest",
    "parse_normalized",
    "parse_platform",
    "resolve_manifest",
    "select_platform",
]
