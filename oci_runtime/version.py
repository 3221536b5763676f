"""Versions: pyrunc's own, and the newest runtime-spec it implements."""

VERSION = "0.1.0"
OCI_VERSION = "1.2.0"
