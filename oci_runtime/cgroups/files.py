"""File access and text parsing shared by the v1 and v2 implementations.

Cgroup files are written with ``O_WRONLY | O_TRUNC`` and never created: on cgroupfs the
kernel makes them, so a missing file means the controller is absent or not enabled, and the
fake trees of the unit tests behave the same way. Each write(2) carries one value or rule,
because the kernel parses one rule per write.

Paths are plain strings joined with "/": every pyrunc command goes through here, and pathlib
alone costs more to import than the cgroup work of `pyrunc delete`. Functions that take a path
also accept a `pathlib.Path` (the unit tests pass tmp_path); os.* takes either.
"""

from __future__ import annotations

import errno
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import TypeVar

    StrPath = str | os.PathLike[str]
    P = TypeVar("P", bound=str | os.PathLike[str])

#: How Go's runc reports an unlimited value read back as "max" (math.MaxUint64).
MAX_UINT64 = 2**64 - 1

#: The controller key for the cgroup2 hierarchy in `CgroupManager.paths()`.
UNIFIED = ""


class CgroupError(Exception):
    """A cgroup operation failed; the message is one line and names the file involved."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def warn(message: str) -> None:
    """Where best-effort failures go unless the caller passed its own `warn`: one line on
    stderr, worded as pyrunc's CLI words its warnings."""
    sys.stderr.write(f"pyrunc: warning: {message}\n")


def write_value(path: StrPath, value: str) -> None:
    """One write(2) of `value` to an existing file; raises the raw OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def describe_write_error(path: StrPath, value: str, exc: OSError) -> CgroupError:
    if exc.errno == errno.ENOENT:
        hint = "no such file (controller not mounted or enabled, or not supported by the kernel)"
    else:
        hint = exc.strerror or str(exc)
    return CgroupError(f"cannot write {value!r} to {path}: {hint}", errno=exc.errno)


def write_all(
    writes: Sequence[tuple[P, str]],
    *,
    retry_einval: bool = True,
    writer: Callable[[P, str], None] = write_value,
) -> None:
    """Write in order; with `retry_einval`, writes the kernel refused with EINVAL are retried
    after the others, for as long as a pass makes progress.

    Pairs of limits are checked against each other by the kernel (memory.memsw.limit_in_bytes
    must stay >= memory.limit_in_bytes; cfs quota against period, rt runtime against period),
    so which one must go first depends on whether a limit is raised or lowered. Retrying the
    refused ones after their sibling has changed finds the working order without having to
    read the current values first.
    """
    pending = list(writes)
    while pending:
        refused: list[tuple[P, str, OSError]] = []
        for path, value in pending:
            try:
                writer(path, value)
            except OSError as exc:
                if retry_einval and exc.errno == errno.EINVAL:
                    refused.append((path, value, exc))
                    continue
                raise describe_write_error(path, value, exc) from exc
        if not refused:
            return
        if len(refused) == len(pending):
            path, value, error = refused[0]
            raise describe_write_error(path, value, error) from error
        pending = [(path, value) for path, value, _ in refused]


def split_lines(path: P, value: str) -> list[tuple[P, str]]:
    """A multi-line value becomes one write per line (per-device rules)."""
    return [(path, line) for line in value.split("\n") if line]


def read_text(path: StrPath) -> str:
    """The whole file, stripped. Raw os.read: cgroup files are small, and the text layer of
    open() costs more than the read itself."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # Only EOF ends the file: kernfs and seq files may return less than asked before it.
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().strip()


def read_optional(path: StrPath) -> str | None:
    """The file's text, or None when it (or its cgroup) does not exist."""
    try:
        return read_text(path)
    except OSError as exc:
        # ENODEV: the cgroup was removed while we were reading it.
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENODEV):
            return None
        raise


def parse_int(text: str, *, max_value: int = MAX_UINT64) -> int:
    """A cgroup number; "max" (v2's unlimited) becomes `max_value`."""
    text = text.strip()
    if text == "max":
        return max_value
    return int(text)


def read_int(path: StrPath, default: int = 0, *, max_value: int = MAX_UINT64) -> int:
    text = read_optional(path)
    if text is None or text == "":
        return default
    try:
        return parse_int(text, max_value=max_value)
    except ValueError:
        return default


def parse_flat_keyed(text: str) -> dict[str, int]:
    """ "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            out[parts[0]] = parse_int(parts[1])
        except ValueError:
            continue
    return out


def parse_nested_keyed(text: str) -> dict[str, dict[str, int]]:
    """ "name key=value key=value" lines (v2 io.stat)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        entry: dict[str, int] = {}
        for kv in parts[1:]:
            key, sep, value = kv.partition("=")
            if not sep:
                continue
            try:
                entry[key] = parse_int(value)
            except ValueError:
                continue
        out[parts[0]] = entry
    return out


def parse_blkio_v1(text: str) -> list[dict[str, int | str]]:
    """v1 blkio "MAJ:MIN Op value" lines in runc's BlkioEntry shape; "Total N" is dropped."""
    entries: list[dict[str, int | str]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            dev, op, value = parts
        elif len(parts) == 2 and ":" in parts[0]:
            # Counters without an operation (blkio.time, blkio.sectors).
            dev, op, value = parts[0], "", parts[1]
        else:
            continue
        major, sep, minor = dev.partition(":")
        if not sep:
            continue
        try:
            entries.append(
                {"major": int(major), "minor": int(minor), "op": op, "value": int(value)}
            )
        except ValueError:
            continue
    return entries


def parse_pids(text: str) -> list[int]:
    return [int(line) for line in text.split() if line.strip()]


def _walk_dirs(top: str) -> list[str]:
    """`top` and every directory below it, parents first; [] when `top` is not a directory.

    A container's cgroup seldom has children, so this is one getdents per hierarchy; d_type
    tells directories apart without a stat.
    """
    found: list[str] = []
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                subdirs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            # Gone, or not a directory: os.walk skips such directories the same way.
            continue
        found.append(d)
        stack.extend(reversed(subdirs))
    return found


def read_pids(cgroup_dir: StrPath) -> set[int]:
    """The cgroup.procs of `cgroup_dir` and of every cgroup below it."""
    found: set[int] = set()
    for d in _walk_dirs(os.fspath(cgroup_dir)):
        text = read_optional(f"{d}/cgroup.procs")
        if text:
            found.update(parse_pids(text))
    return found


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    *,
    interval: float = 0.001,
    max_interval: float = 0.05,
    on_retry: Callable[[int], None] | None = None,
) -> bool:
    """Poll `predicate` with a growing interval until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        attempt += 1
        if on_retry is not None:
            on_retry(attempt)
        time.sleep(interval)
        interval = min(interval * 2, max_interval)


def cgroup_dirs_bottom_up(top: P) -> list[P]:
    """`top` and every directory below it, children before their parents, as the same kind
    of path as `top` (str or Path), so that a caller's `rmdir` gets what it was given."""
    # Parents-first order reversed puts every child before its parent.
    if isinstance(top, str):
        return _walk_dirs(top)[::-1]  # type: ignore[return-value]
    kind = type(top)
    return [kind(d) for d in _walk_dirs(os.fspath(top))[::-1]]  # type: ignore[call-arg]


def remove_cgroup_dir(
    path: P,
    *,
    rmdir: Callable[[P], None] = os.rmdir,
    timeout: float = 2.0,
) -> None:
    """rmdir one cgroup, waiting out EBUSY.

    A cgroup stays busy for a moment after its last process was killed, until the exit is
    fully processed (zombies still count in v1); retrying briefly is what every runtime does.
    A directory that is already gone is fine.
    """
    last: list[OSError] = []

    def attempt() -> bool:
        try:
            rmdir(path)
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            last[:] = [exc]
            return False
        return True

    try:
        if wait_for(attempt, timeout, interval=0.005, max_interval=0.1):
            return
    except OSError as exc:
        raise CgroupError(f"cannot remove {path}: {exc.strerror or exc}", errno=exc.errno) from exc
    raise CgroupError(
        f"cannot remove {path}: still busy after {timeout:g}s (processes left in it?)",
        errno=errno.EBUSY,
    ) from (last[0] if last else None)


def remove_cgroup_tree(
    top: P, *, rmdir: Callable[[P], None] = os.rmdir, timeout: float = 2.0
) -> None:
    for d in cgroup_dirs_bottom_up(top):
        remove_cgroup_dir(d, rmdir=rmdir, timeout=timeout)


def unique(paths: Iterable[str]) -> list[str]:
    """Distinct paths in first-seen order (v1 controllers that share a hierarchy share a dir)."""
    return list(dict.fromkeys(paths))


def make_dirs(path: str) -> bool:
    """`mkdir -p`; True when `path` itself was created, False when it was already there.

    mkdir first and walk up only on ENOENT: the parents almost always exist, and this is one
    syscall per hierarchy where os.makedirs would stat each parent first.
    """
    try:
        os.mkdir(path)
        return True
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        # A few rounds: a `delete` may remove an empty shared parent between our mkdirs.
        for attempt in range(3):
            make_dirs(parent)
            try:
                os.mkdir(path)
                return True
            except FileExistsError:
                # Another pyrunc created it in between.
                return False
            except FileNotFoundError:
                if attempt == 2:
                    raise
        return False
    except OSError:
        # EEXIST, or EROFS/EACCES on a directory that is there all the same.
        if not os.path.isdir(path):
            raise
        return False


def relative_to(path: str, root: str) -> str:
    """`path` below `root`, "" for `root` itself, by comparing names only (as
    PurePath.relative_to does); both must be normalized. ValueError when not below."""
    if path == root:
        return ""
    prefix = root if root.endswith("/") else root + "/"
    if not path.startswith(prefix):
        raise ValueError(f"{path!r} is not under {root!r}")
    return path[len(prefix) :]


def cgroup_relpath(cgroups_path: str) -> str:
    """`linux.cgroupsPath` as a clean path relative to a hierarchy root ("a/b").

    Relative paths are taken relative to the hierarchy root as well (runc would resolve them
    against its own cgroup, which is meaningless for a runtime that exits right away).
    """
    if not isinstance(cgroups_path, str) or "\0" in cgroups_path:
        raise ValueError(f"invalid cgroupsPath {cgroups_path!r}")
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"cgroupsPath {cgroups_path!r} must not contain '..'")
    if not parts:
        # The hierarchy root itself: applying there and then destroying it would be a disaster.
        raise ValueError(f"cgroupsPath {cgroups_path!r} names the cgroup root")
    return "/".join(parts)
