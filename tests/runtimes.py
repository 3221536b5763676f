"""Driving OCI runtimes from tests the way a user (or the shim) does: their command line.

`Runtime` wraps pyrunc, runc or crun with a private --root under /tmp and deletes whatever it
created when the test ends, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkimage.bundle import build_bundle
from oci_runtime.default_spec import default_spec

RUNTIMES = ["pyrunc", "runc", "crun"]
CGROUP_PARENT = f"/pytest-{os.getpid()}"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def runtime_available(name: str) -> tuple[bool, str]:
    if name == "pyrunc":
        return True, ""
    if shutil.which(name) is None:
        return False, f"{name} is not installed"
    if name == "crun":
        unified = CGROUP_ROOT / "unified" / "cgroup.controllers"
        if unified.exists() and unified.read_text().split():
            return False, (
                "crun 1.8 refuses a hybrid layout with controllers on the v2 mount "
                f"({unified.read_text().strip()}); run scripts/setup-host.sh"
            )
    return True, ""


def runtime_argv(name: str) -> list[str]:
    if name == "pyrunc":
        return [sys.executable, "-m", "oci_runtime"]
    return [shutil.which(name) or name]


def busybox_rootfs(dest: Path) -> Path:
    build_bundle(dest / "bundle")
    return dest / "bundle" / "rootfs"


def make_bundle(
    base: Path,
    rootfs: Path,
    args: list[str] | None,
    *,
    writable: bool = False,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A bundle dir with its own config.json; the rootfs is shared unless writable."""
    b = base / f"bundle-{uuid.uuid4().hex[:8]}"
    b.mkdir()
    if writable:
        subprocess.run(["cp", "-a", str(rootfs), str(b / "rootfs")], check=True)
        root_path = "rootfs"
    else:
        root_path = str(rootfs)
    cfg = default_spec(args or ["true"], terminal=False, rootfs=root_path, readonly=not writable)
    cfg["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/{b.name}"
    if edit is not None:
        edit(cfg)
    (b / "config.json").write_text(json.dumps(cfg, indent=2))
    return b


def update_config(bundle: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / "config.json"
    cfg = json.loads(path.read_text())
    fn(cfg)
    path.write_text(json.dumps(cfg, indent=2))


class Runtime:
    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.root = tmp / f"root-{name}"
        self.argv = [*runtime_argv(name), "--root", str(self.root)]
        self.ids: set[str] = set()
        self.bundles: set[Path] = set()

    def __repr__(self) -> str:
        return f"Runtime({self.name})"

    def cmd(
        self,
        *args: str,
        check: bool = True,
        input: bytes | None = None,
        timeout: float = 60,
        **kw: Any,
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [*self.argv, *args],
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
            **kw,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"{self.name} {' '.join(args)} exited {p.returncode}: "
                f"{p.stderr.decode(errors='replace').strip()}"
            )
        return p

    def new_id(self) -> str:
        cid = f"t{uuid.uuid4().hex[:10]}"
        self.ids.add(cid)
        return cid

    def run(
        self,
        bundle: Path,
        cid: str | None = None,
        *,
        check: bool = False,
        input: bytes | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        """`run` in the foreground, stdio as pipes; returns the finished process."""
        cid = cid or self.new_id()
        self.ids.add(cid)
        self._remember(bundle)
        return self.cmd(
            "run",
            "--bundle",
            str(bundle),
            cid,
            check=check,
            input=input if input is not None else b"",
            timeout=timeout,
        )

    def create(
        self, bundle: Path, cid: str | None = None, *extra: str, stdout: Any = subprocess.DEVNULL
    ) -> str:
        cid = cid or self.new_id()
        self.ids.add(cid)
        self._remember(bundle)
        # stderr goes to a file, not a pipe: the container's init inherits it and keeps it
        # open, so reading a pipe to its end would wait for the container to exit.
        with tempfile.TemporaryFile() as err:
            p = subprocess.run(
                [*self.argv, "create", "--bundle", str(bundle), *extra, cid],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=err,
                timeout=60,
                check=False,
            )
            if p.returncode != 0:
                err.seek(0)
                raise AssertionError(
                    f"{self.name} create exited {p.returncode}: "
                    f"{err.read().decode(errors='replace').strip()}"
                )
        return cid

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self.cmd("state", cid).stdout)

    def _remember(self, bundle: Path) -> None:
        self.bundles.add(bundle)

    def cleanup(self) -> None:
        for cid in sorted(self.ids):
            self.cmd("delete", "--force", cid, check=False, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
        for bundle in self.bundles:
            try:
                cfg = json.loads((bundle / "config.json").read_text())
            except (OSError, ValueError):
                continue
            remove_cgroup(cfg.get("linux", {}).get("cgroupsPath", ""))


def remove_cgroup(path: str) -> None:
    """rmdir a test cgroup in every hierarchy, deepest first; ignore what is gone."""
    if not path:
        return
    rel = path.strip("/")
    for hier in CGROUP_ROOT.iterdir():
        d = hier / rel
        if not d.is_dir():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            d.rmdir()
        except OSError:
            pass


def remove_cgroup_parent() -> None:
    """The session's whole `/pytest-<pid>` tree, deepest first: a daemon's or a runtime's
    intermediate dirs that a failed test left empty go with it."""
    remove_cgroup(CGROUP_PARENT)
