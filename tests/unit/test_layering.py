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
ALLOWED_THIRD_PARTY = {"oci_runtime": {"psutil"}, "mkimage": set()}


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


@pytest.mark.parametrize("pkg", ["oci_runtime", "mkimage"])
def test_only_stdlib_and_allowed(pkg: str) -> None:
    own = {"oci_runtime", "mkimage"}
    for f in package_files(pkg):
        for name in imports_of(f):
            if name in own or name in sys.stdlib_module_names:
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
