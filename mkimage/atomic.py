"""Outputs appear whole or not at all: built under a temporary name beside the destination,
then renamed into place, and removed if anything fails on the way."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from mkimage.errors import MkimageError


def _destination(dest: Path | str) -> Path:
    path = Path(os.path.abspath(dest))
    if not path.name:
        raise MkimageError(f"{dest}: not a usable destination")
    if not path.parent.is_dir():
        raise MkimageError(f"{path.parent}: no such directory")
    return path


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


@contextmanager
def atomic_directory(dest: Path | str, *, replace: bool = False) -> Iterator[Path]:
    """Yields an empty temporary directory that becomes `dest` when the block succeeds.

    `dest` may not exist or be an empty directory; with `replace`, an existing directory is
    swapped out and removed only once the new one is in place.
    """
    path = _destination(dest)
    exists = path.exists() or path.is_symlink()
    if exists and not _is_empty_dir(path):
        if not replace:
            raise MkimageError(f"{path} already exists and is not an empty directory")
        if not path.is_dir() or path.is_symlink():
            raise MkimageError(f"{path} exists and is not a directory")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise MkimageError(f"cannot create {path}: {e.strerror}") from None
    old: Path | None = None
    try:
        yield tmp
        tmp.chmod(0o755)
        if exists and replace and not _is_empty_dir(path):
            # rename(2) will not replace a non-empty directory: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rename(path, old / "d")
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "d").exists() and not path.exists():
            os.rename(old / "d", path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(dest: Path | str, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yields a file opened for writing that replaces `dest` when the block succeeds."""
    path = _destination(dest)
    if path.is_dir():
        raise MkimageError(f"{path} is a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        # The temporary name means nothing to the user: report the file they asked for.
        raise MkimageError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(name, mode)
        os.replace(name, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(name)
        raise
