"""OCI images built in memory for registry tests: mkimage's busybox with layers stacked on
top, manifests for chosen platforms, indexes, and OCI layouts to seed with skopeo.

    extra = layer({"data/blob": os.urandom(8 << 20)})
    img = image([extra])                         # busybox + one layer, the host's arch
    write_layout(dir, {"latest": img.manifest}, img.blobs)
    idx = index([(a.manifest, "linux/amd64"), (b.manifest, "linux/arm64")])

Everything is deterministic for given inputs (mtimes 0, no gzip names), so digests can be
compared with what a registry or a daemon reports.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mkimage import build_image

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Layer:
    blob: Blob
    diff_id: str


@dataclass(frozen=True)
class Image:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def blobs(self) -> list[Blob]:
        return [*self.layers, self.config, self.manifest]


def layer(files: Mapping[str, bytes], *, level: int = 1) -> Layer:
    """A gzip layer holding FILES (path -> content), with their parent directories."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(files[path]), 0o644
            tar.addfile(info, io.BytesIO(files[path]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=level) as gz:
        gz.write(raw.getvalue())
    return Layer(Blob(OCI_LAYER_GZIP, out.getvalue()), sha256(raw.getvalue()))


def image(extra: Iterable[Layer] = (), *, architecture: str | None = None) -> Image:
    """mkimage's busybox (its layer first) with EXTRA stacked on top; the config says
    ARCHITECTURE when given (the busybox binary stays the host's)."""
    base = build_image()
    extra = list(extra)
    config = json.loads(base.config.data)
    config["rootfs"]["diff_ids"] += [e.diff_id for e in extra]
    config["history"] += [{"created_by": f"test layer {i}"} for i in range(len(extra))]
    if architecture:
        config["architecture"] = architecture
    config_blob = Blob(OCI_CONFIG, canonical(config))
    layers = (Blob(base.layer.media_type, base.layer.data), *(e.blob for e in extra))
    manifest = Blob(
        OCI_MANIFEST,
        canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config_blob.descriptor(),
                "layers": [b.descriptor() for b in layers],
            }
        ),
    )
    return Image(manifest, config_blob, layers)


def index(entries: Iterable[tuple[Blob, str]]) -> Blob:
    """An OCI index of (manifest, "os/arch[/variant]") entries."""
    manifests = []
    for blob, platform in entries:
        os_name, arch, *variant = platform.split("/")
        p: dict[str, str] = {"architecture": arch, "os": os_name}
        if variant:
            p["variant"] = variant[0]
        manifests.append(blob.descriptor(platform=p))
    return Blob(
        OCI_INDEX, canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    )


def write_layout(dest: Path, tags: Mapping[str, Blob], blobs: Iterable[Blob]) -> Path:
    """An OCI layout at DEST: every blob, and index.json naming TAGS (tag -> root blob)."""
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for blob in [*blobs, *tags.values()]:
        (dest / "blobs" / "sha256" / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    top = [root.descriptor(annotations={REF_NAME: tag}) for tag, root in tags.items()]
    (dest / "index.json").write_bytes(
        canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": top})
    )
    return dest
