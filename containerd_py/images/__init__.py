"""Images: references, media types, manifests and platforms, and moving images between a
content store and archives (OCI image layouts, docker-save tarballs).

Nothing here talks gRPC or owns storage: the content store comes in through the
`ContentStore` Protocol (store.py), which containerd_py.content implements.
"""

from __future__ import annotations

from containerd_py.images.exporter import (
    export_docker_archive,
    export_oci_archive,
    export_oci_layout,
)
from containerd_py.images.importer import (
    ImportedImage,
    import_archive,
    import_docker_archive,
    import_oci_layout,
)
from containerd_py.images.manifest import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    children,
    parse_config,
    parse_index,
    parse_manifest,
    resolve_manifest,
    select_platform,
)
from containerd_py.images.platforms import Platform, PlatformMatcher, host_platform, parse_platform
from containerd_py.images.reference import Reference, normalize, parse_docker_ref, parse_normalized
from containerd_py.images.store import BlobInfo, ContentStore

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
