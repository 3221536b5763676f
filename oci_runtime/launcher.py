"""Writes fast launchers for the stack's commands.

    python -m oci_runtime.launcher DEST                                   # pyrunc
    python -m oci_runtime.launcher DEST cli.ctr:main typer grpc google.protobuf   # pyctr

pyrunc runs once per container operation and pyctr once per command, so interpreter
start-up is much of their cost. A console script made by pip starts Python with `site`,
which runs every .pth file of the environment (on some hosts tens of milliseconds of
unrelated imports, the editable-install finder among them). A launcher runs the same entry
point with `-IS` and a sys.path fixed when it is written, as pip fixes the interpreter's
path in its own scripts: the directory the entry point's package imports from, then the
directories of the packages it names (their site-packages, which `-S` leaves out; pip puts
their own dependencies next to them). Isolated mode (-I) also keeps a
PYTHONDONTWRITEBYTECODE in the environment from forcing a recompile of every module on
every call; `make install` byte-compiles the packages beforehand anyway.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

PYRUNC_ENTRY = "oci_runtime.cli:main"

TEMPLATE = """#!{python} -IS
import sys
sys.path[:0] = {paths!r}
from {module} import {function}
sys.exit({function}())
"""


class LauncherError(Exception):
    """The launcher cannot be written as asked (bad entry point, package not installed)."""


def import_root(name: str) -> str:
    """The sys.path entry from which the module or package `name` imports."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as e:
        raise LauncherError(f"cannot find {name}: {e}") from None
    if spec is None:
        raise LauncherError(f"{name} is not installed for {sys.executable}")
    if spec.submodule_search_locations:
        where = next(iter(spec.submodule_search_locations))
    elif spec.origin and os.path.isabs(spec.origin):
        where = spec.origin
    else:
        raise LauncherError(f"{name} is built into the interpreter: it needs no path")
    # One level up per name part: site-packages/google/protobuf → site-packages.
    for _ in name.split("."):
        where = os.path.dirname(where)
    return os.path.abspath(where)


def _split_entry(entry: str) -> tuple[str, str]:
    module, sep, function = entry.partition(":")
    if not sep or not module or not function.isidentifier():
        raise LauncherError(f"entry point {entry!r} is not MODULE:FUNCTION")
    return module, function


def search_path(entry: str = PYRUNC_ENTRY, packages: Sequence[str] = ()) -> list[str]:
    """What a launcher puts first on sys.path: where the entry point's package imports
    from, then where each of `packages` does, without repeats."""
    module, _ = _split_entry(entry)
    paths: list[str] = []
    for name in (module.split(".")[0], *packages):
        root = import_root(name)
        if root not in paths:
            paths.append(root)
    return paths


def launcher_text(entry: str = PYRUNC_ENTRY, packages: Sequence[str] = ()) -> str:
    module, function = _split_entry(entry)
    paths = search_path(entry, packages)
    return TEMPLATE.format(python=sys.executable, paths=paths, module=module, function=function)


def write_launcher(dest: str, entry: str = PYRUNC_ENTRY, packages: Sequence[str] = ()) -> None:
    """Write the launcher for `entry` ("module:function") to `dest`, atomically: processes
    racing to write the same launcher each put a whole file in place."""
    text = launcher_text(entry, packages)
    tmp = f"{dest}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(
            "usage: python -m oci_runtime.launcher DEST [MODULE:FUNCTION [PACKAGE]...]",
            file=sys.stderr,
        )
        return 2
    dest, entry, packages = argv[0], (argv[1] if len(argv) > 1 else PYRUNC_ENTRY), argv[2:]
    try:
        write_launcher(dest, entry, packages)
    except (LauncherError, OSError) as e:
        print(f"launcher: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
