"""The images package's errors, as classes of the daemon's one hierarchy (errdefs), so the
gRPC layer maps them to codes without knowing this package."""

from __future__ import annotations

from containerd_py.errdefs import InvalidArgument, NotFound


class InvalidReferenceError(InvalidArgument):
    """An image name that docker's reference grammar does not accept."""


class InvalidManifestError(InvalidArgument):
    """An index, manifest or config that is not valid JSON of the expected shape."""


class UnsupportedMediaTypeError(InvalidArgument):
    """A media type we cannot handle here (schema 1 manifests, encrypted layers...)."""


class InvalidArchiveError(InvalidArgument):
    """An OCI layout or docker-save archive that is malformed or inconsistent."""


class CorruptBlobError(InvalidArgument):
    """A blob whose bytes do not match the digest or size that names it."""


class BlobNotFoundError(NotFound):
    """A blob that a descriptor names is not where it should be."""


class PlatformNotFoundError(NotFound):
    """No manifest in an index matches the wanted platform."""
