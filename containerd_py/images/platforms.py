"""Platforms (`linux/arm64`, `linux/arm/v7`): parsing, normalization and matching.

Architecture names are normalized the way containerd's platforms package documents it:
`x86_64` -> `amd64`, `aarch64` -> `arm64`, `armhf` -> `arm/v7`, `armel` -> `arm/v6`, a bare
`arm` means `arm/v7`, and the default variants (`amd64/v1`, `arm64/v8`) are dropped, so that
two spellings of one platform compare equal.

Matching a wanted platform against an index entry, best first:

| wanted        | accepted (rank)                                                     |
|---------------|---------------------------------------------------------------------|
| linux/amd64   | linux/amd64 (0), linux/386 (1)                                      |
| linux/arm64   | linux/arm64 (0), linux/arm/v7 (1), linux/arm/v6 (2), linux/arm/v5 (3) |
| linux/arm/vN  | linux/arm/vM for M <= N (N - M)                                     |
| anything else | the same os, architecture and variant (0)                           |

The 32-bit fallbacks are what a 64-bit kernel can run. Entries without a platform match
anything, after every entry that names one (containerd lets them through too).
"""

from __future__ import annotations

import platform as _host
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from containerd_py.images.errors import InvalidManifestError

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "i386": "386",
    "i686": "386",
    "aarch64": "arm64",
}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Platform:
        if not isinstance(data, Mapping):
            raise InvalidManifestError("platform must be an object")
        os_name, arch = data.get("os"), data.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise InvalidManifestError("platform needs string os and architecture")
        variant = data.get("variant") or ""
        os_version = data.get("os.version") or ""
        features = data.get("os.features") or ()
        if not isinstance(variant, str) or not isinstance(os_version, str):
            raise InvalidManifestError("platform variant and os.version must be strings")
        return cls(os_name, arch, variant, os_version, tuple(str(f) for f in features))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out


def normalize(p: Platform) -> Platform:
    os_name = p.os.lower()
    if os_name == "macos":
        os_name = "darwin"
    arch = p.architecture.lower()
    variant = p.variant.lower()
    if arch in ("armhf", "armv7l"):
        arch, variant = "arm", "v7"
    elif arch in ("armel", "armv6l"):
        arch, variant = "arm", "v6"
    arch = _ARCH_ALIASES.get(arch, arch)
    default_variant = {"amd64": ("v1",), "arm64": ("8", "v8", "v8.0")}
    if variant in default_variant.get(arch, ()):
        variant = ""
    elif arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return Platform(os_name, arch, variant, p.os_version, p.os_features)


def parse_platform(text: str) -> Platform:
    """`os/arch[/variant]`; a lone `linux` takes the host's architecture, a lone
    architecture (`arm64`) means linux."""
    parts = text.strip().split("/")
    if not all(parts) or len(parts) > 3:
        raise InvalidManifestError(f"invalid platform {text!r}: want os/arch[/variant]")
    if len(parts) == 1:
        if parts[0].lower() in ("linux", "windows", "darwin", "freebsd"):
            return normalize(Platform(parts[0], host_platform().architecture))
        return normalize(Platform("linux", parts[0]))
    return normalize(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))


def host_platform() -> Platform:
    """What this machine runs: containers are Linux here, whatever uname says of the arch."""
    return normalize(Platform("linux", _host.machine() or "amd64"))


class PlatformMatcher:
    """Says whether an index entry's platform can run where `wanted` can, and how well."""

    def __init__(self, wanted: Platform | str | None = None) -> None:
        if wanted is None:
            wanted = host_platform()
        elif isinstance(wanted, str):
            wanted = parse_platform(wanted)
        self.wanted = normalize(wanted)
        self._ranks = self._accepted(self.wanted)

    @staticmethod
    def _accepted(w: Platform) -> dict[tuple[str, str], int]:
        ranks = {(w.architecture, w.variant): 0}
        if w.architecture == "amd64" and not w.variant:
            ranks[("386", "")] = 1
        elif w.architecture == "arm64" and not w.variant:
            for i, v in enumerate(("v7", "v6", "v5"), start=1):
                ranks[("arm", v)] = i
        elif w.architecture == "arm" and w.variant[1:].isdigit():
            top = int(w.variant[1:])
            for n in range(top, 4, -1):
                ranks[("arm", f"v{n}")] = top - n
        return ranks

    def rank(self, p: Platform | None) -> int | None:
        """Lower is better; None when the platform cannot run here."""
        if p is None:
            return 1000
        n = normalize(p)
        if n.os != self.wanted.os:
            return None
        return self._ranks.get((n.architecture, n.variant))

    def matches(self, p: Platform | None) -> bool:
        return self.rank(p) is not None

    def __str__(self) -> str:
        return str(self.wanted)
