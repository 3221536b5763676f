"""The one error type pymkimage raises for bad input or a host it cannot build on."""

from __future__ import annotations


class MkimageError(Exception):
    """Reported by the CLI as one line on stderr; the message is meant for the user."""
