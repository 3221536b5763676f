"""An OCI runtime bundle: rootfs/ plus config.json, ready for `pyrunc run` or `runc run`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mkimage.atomic import atomic_directory
from mkimage.busybox import Busybox, load_busybox
from mkimage.rootfs import rootfs_nodes
from mkimage.tree import write_tree


def build_bundle(
    dest: Path | str,
    args: list[str] | None = None,
    *,
    terminal: bool = False,
    readonly: bool = True,
    busybox: Path | str | Busybox | None = None,
    replace: bool = False,
) -> Path:
    """Writes DEST/rootfs and DEST/config.json; returns DEST as an absolute path.

    `terminal` defaults to False, unlike `runc spec`: bundles are mostly run detached by
    tests and scripts, where a terminal would need a console socket.
    """
    # Imported here so that `pymkimage oci-layout` never loads the runtime package.
    from oci_runtime.default_spec import default_spec

    bb = busybox if isinstance(busybox, Busybox) else load_busybox(busybox)
    spec = default_spec(list(args) if args else None, terminal=terminal, readonly=readonly)
    with atomic_directory(dest, replace=replace) as tmp:
        rootfs = tmp / "rootfs"
        rootfs.mkdir()
        write_tree(rootfs_nodes(bb), rootfs)
        rootfs.chmod(0o755)
        (tmp / "config.json").write_text(json.dumps(spec, indent=2) + "\n")
    return Path(os.path.abspath(dest))
