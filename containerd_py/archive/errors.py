"""What can go wrong with a layer tar, as errors of the daemon's one hierarchy.

A bad layer is bad input (INVALID_ARGUMENT), whoever sent it: an unpack that meets one stops,
and the snapshot it was filling is the caller's to remove.
"""

from __future__ import annotations

from containerd_py.errdefs import InvalidArgument


class ArchiveError(InvalidArgument):
    """A layer tar that cannot be applied (bad header, missing link target...)."""


class UnsafeArchiveError(ArchiveError):
    """An entry that would touch something outside the snapshot directory."""


class UnsupportedCompressionError(ArchiveError):
    """A layer compressed in a format we do not read (or a media type we do not know)."""


class DiffIDMismatchError(ArchiveError):
    """The uncompressed layer does not hash to the diff_id the image config promised."""
