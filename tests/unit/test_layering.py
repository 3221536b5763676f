"""Dependencies point down only, and pyrunc stays a single-threaded, grpc-free process.

The OCI runtime forks and unshares: importing grpc (which starts threads) would make
unshare(CLONE_NEWUSER) fail, so oci_runtime may import only the stdlib and psutil.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lower layers never import higher ones (DESIGN.md: cli → engine → containerd_py → shim →
# oci_runtime). mkimage is a tool beside the stack that may use the runtime's default spec.
LAYERS = ["cli", "engine", "containerd_py", "shim", "oci_runtime"]
ALLOWED_THIRD_PARTY = {
    "oci_runtime": {"psutil"},
    "mkimage": set(),
    "shim": {"psutil", "grpc", "google"},
    "containerd_py": {"psutil", "grpc", "google", "zstandard"},
}
OWN = {"oci_runtime", "mkimage", "shim", "containerd_py", "engine", "cli"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_files(pkg: str) -> list[Path]:
    return sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("pkg", sorted(ALLOWED_THIRD_PARTY))
def test_only_stdlib_and_allowed(pkg: str) -> None:
    for f in package_files(pkg):
        for name in imports_of(f):
            if name in OWN or name in sys.stdlib_module_names:
                continue
            assert name in ALLOWED_THIRD_PARTY[pkg], f"{f.relative_to(ROOT)} imports {name}"


def test_runtime_never_imports_grpc_or_upper_layers() -> None:
    for f in package_files("oci_runtime"):
        found = imports_of(f)
        assert "grpc" not in found, f
        for upper in LAYERS[:-1]:
            assert upper not in found, f"{f.relative_to(ROOT)} imports {upper}"
    for f in package_files("mkimage"):
        assert not imports_of(f) & set(LAYERS[:-1]), f


def full_imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("pkg", LAYERS)
def test_dependencies_point_down(pkg: str) -> None:
    above = LAYERS[: LAYERS.index(pkg)]
    for f in package_files(pkg):
        for mod in full_imports_of(f):
            # The generated API is shared by every layer that speaks gRPC (STYLE.md §3).
            if mod.startswith("containerd_py.api"):
                continue
            assert mod.split(".")[0] not in above, f"{f.relative_to(ROOT)} imports {mod}"


def test_shim_never_imports_the_daemon_services() -> None:
    """The shim is one process per container: it may use the generated shim API (runtime/,
    types/, and the event payloads in events/, which it forwards: runtime/events/v1/
    events.proto), not the daemon's code or its service modules."""
    for f in package_files("shim"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
                if mod.startswith("containerd_py"):
                    assert mod.startswith(
                        (
                            "containerd_py.api.runtime",
                            "containerd_py.api.types",
                            "containerd_py.api.events",
                        )
                    ), f"{f.relative_to(ROOT)} imports {mod}"
