"""The busybox binary an image is built from: its bytes, applets, version and architecture."""

from __future__ import annotations

import platform
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mkimage.errors import MkimageError

DEFAULT_BUSYBOX = Path("/bin/busybox")

INSTALL_HINT = "install Debian's busybox-static (apt-get install busybox-static)"

# Applets the tests of every layer rely on; a busybox built without them would make
# those tests fail far from the cause.
REQUIRED_APPLETS = ("bin/sh", "bin/true", "bin/false", "bin/cat", "bin/sleep", "usr/bin/id")

_PT_INTERP = 3

# ELF e_machine -> GOARCH, the spelling image configs use.
_ELF_ARCH = {3: "386", 40: "arm", 62: "amd64", 183: "arm64", 22: "s390x", 243: "riscv64"}
_EM_PPC64 = 21

_HOST_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True)
class Busybox:
    path: Path
    data: bytes
    applets: tuple[str, ...]
    """Paths relative to the root, e.g. "bin/ls", "usr/bin/wc"; never "bin/busybox" itself."""
    version: str
    architecture: str


def host_architecture() -> str:
    machine = platform.machine()
    if machine in _HOST_ARCH:
        return _HOST_ARCH[machine]
    if machine.startswith("arm"):
        return "arm"
    raise MkimageError(f"unknown host architecture {machine!r}")


def _elf_facts(data: bytes, path: Path) -> tuple[int, bool, bool]:
    """(e_machine, little_endian, has PT_INTERP) of an ELF executable."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise MkimageError(f"{path} is not an ELF executable; {INSTALL_HINT}")
    is64 = data[4] == 2
    little = data[5] == 1
    end = "<" if little else ">"
    (machine,) = struct.unpack_from(end + "H", data, 18)
    if is64:
        (phoff,) = struct.unpack_from(end + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
    else:
        (phoff,) = struct.unpack_from(end + "I", data, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
    interp = False
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            raise MkimageError(f"{path} is a truncated ELF file")
        (p_type,) = struct.unpack_from(end + "I", data, off)
        interp = interp or p_type == _PT_INTERP
    return machine, little, interp


def _architecture(machine: int, little: bool) -> str:
    # The binary decides what the image runs on, not the host that happens to build it;
    # the host only answers for machines this table does not know.
    if machine == _EM_PPC64:
        return "ppc64le" if little else "ppc64"
    return _ELF_ARCH.get(machine) or host_architecture()


def _applets(path: Path) -> tuple[str, ...]:
    try:
        out = subprocess.run(
            [str(path), "--list-full"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise MkimageError(f"cannot run {path} --list-full: {e}") from None
    applets = set()
    for line in out.splitlines():
        name = line.strip().lstrip("/")
        if not name or name == "bin/busybox":
            continue
        if ".." in name.split("/"):
            raise MkimageError(f"{path} --list-full printed an unsafe path {line!r}")
        applets.add(name)
    missing = [a for a in REQUIRED_APPLETS if a not in applets]
    if missing:
        raise MkimageError(f"{path} lacks applets {', '.join(missing)}; {INSTALL_HINT}")
    return tuple(sorted(applets))


def _version(path: Path) -> str:
    try:
        out = subprocess.run(
            [str(path), "--help"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "BusyBox"
    first = out.splitlines()[0] if out else ""
    # "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary."
    return first.removesuffix(" multi-call binary.") or "BusyBox"


def load_busybox(path: Path | str | None = None) -> Busybox:
    """Reads and checks a statically linked busybox: a container has no libc to load."""
    path = Path(path) if path is not None else DEFAULT_BUSYBOX
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MkimageError(f"{path} not found; {INSTALL_HINT}") from None
    except IsADirectoryError:
        raise MkimageError(f"{path} is a directory, not busybox") from None
    except OSError as e:
        raise MkimageError(f"cannot read {path}: {e.strerror}") from None
    machine, little, interp = _elf_facts(data, path)
    if interp:
        raise MkimageError(f"{path} is dynamically linked; {INSTALL_HINT}")
    return Busybox(
        path=path,
        data=data,
        applets=_applets(path),
        version=_version(path),
        architecture=_architecture(machine, little),
    )
