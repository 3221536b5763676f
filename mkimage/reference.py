"""Image references as `--tag` takes them: "busybox", "busybox:1.35", "reg:5000/a/b:tag"."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mkimage.errors import MkimageError

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str

    @property
    def full(self) -> str:
        """ "docker.io/library/busybox:latest", as containerd names images."""
        return f"{self.domain}/{self.path}:{self.tag}"

    @property
    def familiar_name(self) -> str:
        """ "busybox", as `docker images` and a `docker save` archive show it."""
        if self.domain != DEFAULT_DOMAIN:
            return f"{self.domain}/{self.path}"
        return self.path.removeprefix("library/")

    @property
    def familiar(self) -> str:
        return f"{self.familiar_name}:{self.tag}"


def parse_reference(text: str) -> Reference:
    """Normalizes a tag the way docker does; digests are refused, since we make the image."""
    if "@" in text:
        raise MkimageError(f"invalid tag {text!r}: a tag cannot name a digest")
    name, tag = text, DEFAULT_TAG
    last = text.rfind(":")
    if last > text.rfind("/"):
        name, tag = text[:last], text[last + 1 :]
        if not _TAG.fullmatch(tag):
            raise MkimageError(f"invalid tag {text!r}: bad tag part {tag!r}")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
        if not _DOMAIN.fullmatch(domain):
            raise MkimageError(f"invalid tag {text!r}: bad registry {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if not path or not all(_COMPONENT.fullmatch(c) for c in path.split("/")):
        raise MkimageError(
            f"invalid tag {text!r}: a name is lowercase letters, digits and separators"
        )
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if len(domain) + 1 + len(path) > 255:
        raise MkimageError(f"invalid tag {text!r}: name longer than 255 characters")
    return Reference(domain, path, tag)
