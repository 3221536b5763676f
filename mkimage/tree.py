"""A file tree described in memory, written out either as a directory or as a tar.

Describing the tree rather than walking a directory on disk is what makes the tars
reproducible: nothing from the build host (mtimes, owners, umask, readdir order) gets in.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

Kind = Literal["dir", "file", "hardlink", "symlink"]

# Every entry carries the epoch: a build-time clock would change the digests on each run.
FIXED_MTIME = 0


@dataclass(frozen=True)
class Node:
    path: str
    """Relative POSIX path without a trailing slash, e.g. "usr/bin/wc"."""
    kind: Kind
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""
    """Hardlink: the path of the file it shares; symlink: the link text."""

    def __post_init__(self) -> None:
        p = PurePosixPath(self.path)
        if not self.path or p.is_absolute() or ".." in p.parts or str(p) != self.path:
            raise ValueError(f"not a clean relative path: {self.path!r}")

    @property
    def parts(self) -> tuple[str, ...]:
        return PurePosixPath(self.path).parts


def dir_node(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Node:
    return Node(path, "dir", mode, uid, gid)


def file_node(path: str, data: bytes, mode: int = 0o644) -> Node:
    return Node(path, "file", mode, data=data)


def ordered(nodes: Iterable[Node]) -> list[Node]:
    """Adds missing parent directories and puts the nodes in the one order every writer uses.

    Sorting by path components puts each directory before what it holds; hard links go
    last because a tar reader can only link to a file it has already extracted.
    """
    by_path: dict[str, Node] = {}
    for node in nodes:
        if node.path in by_path:
            raise ValueError(f"{node.path} described twice")
        by_path[node.path] = node
    for node in list(by_path.values()):
        for parent in PurePosixPath(node.path).parents:
            key = str(parent)
            if key != "." and key not in by_path:
                by_path[key] = dir_node(key)
    for node in by_path.values():
        if node.kind == "hardlink" and by_path.get(node.target, node).kind != "file":
            raise ValueError(f"hard link {node.path} -> {node.target}: no such file")
    return sorted(by_path.values(), key=lambda n: (n.kind == "hardlink", n.parts))


def _tarinfo(node: Node) -> tarfile.TarInfo:
    info = tarfile.TarInfo(node.path)
    info.mode = node.mode
    info.uid, info.gid = node.uid, node.gid
    info.uname = info.gname = ""
    info.mtime = FIXED_MTIME
    if node.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif node.kind == "file":
        info.type = tarfile.REGTYPE
        info.size = len(node.data)
    elif node.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = node.target
    else:
        info.type = tarfile.SYMTYPE
        info.linkname = node.target
    return info


def write_tar(nodes: Iterable[Node], out: BinaryIO) -> None:
    # PAX, as docker and containerd write layers; with short ASCII names and integer
    # fields no extended header is emitted, so the bytes stay plain ustar.
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for node in ordered(nodes):
            info = _tarinfo(node)
            tar.addfile(info, io.BytesIO(node.data) if node.kind == "file" else None)


def tar_bytes(nodes: Iterable[Node]) -> bytes:
    buf = io.BytesIO()
    write_tar(nodes, buf)
    return buf.getvalue()


def write_tree(nodes: Iterable[Node], dest: Path) -> None:
    """Writes the nodes under an existing directory `dest`.

    Owners are applied only when running as root; an unprivileged build gets a tree owned
    by the caller, which is what a rootless runtime maps anyway.
    """
    as_root = os.geteuid() == 0
    dirs: list[tuple[Path, Node]] = []
    for node in ordered(nodes):
        path = dest.joinpath(*node.parts)
        if node.kind == "dir":
            path.mkdir(exist_ok=True)
            dirs.append((path, node))
            continue
        if node.kind == "file":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(node.data)
        elif node.kind == "hardlink":
            os.link(dest.joinpath(*PurePosixPath(node.target).parts), path)
            continue
        else:
            os.symlink(node.target, path)
            if as_root:
                os.lchown(path, node.uid, node.gid)
            continue
        if as_root:
            os.chown(path, node.uid, node.gid)
        os.chmod(path, node.mode)
    # Directory modes last and deepest first, so a restrictive mode never blocks filling it.
    for path, node in reversed(dirs):
        if as_root:
            os.chown(path, node.uid, node.gid)
        os.chmod(path, node.mode)
