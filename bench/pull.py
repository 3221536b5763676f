"""Pulling from a registry, side by side: `pyctr images pull` on pycontainerd against
`ctr images pull --plain-http` on containerd (Debian package), both with unpacking.

The image: mkimage's busybox and LAYERS layers of random data (so gzip cannot shrink them),
about 100 MB in all, seeded with skopeo into Debian's docker-registry on 127.0.0.1. Each
round pulls with both tools, interleaved, into an empty store: after each pull the image is
removed with --sync, so the garbage collector takes its content and snapshots before the
next one. Reports the median wall clock of each tool and the ratio.

    python3 bench/pull.py [--runs 7] [--layers 4] [--layer-mb 25]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from containerd_layer import Containerd, pyctr_argv, run, umount_under  # noqa: E402

from tests.daemon import Daemon  # noqa: E402
from tests.oci_images import image, layer, write_layout  # noqa: E402
from tests.registry import Mode, RegistryServer, missing_tools  # noqa: E402


def build(tmp: Path, layers: int, layer_mb: int) -> tuple[Path, int]:
    """The OCI layout to seed, and the image's size in bytes (compressed, all blobs)."""
    extra = [layer({f"data/blob{i}": os.urandom(layer_mb << 20)}) for i in range(layers)]
    img = image(extra)
    layout = write_layout(tmp / "layout", {"latest": img.manifest}, img.blobs)
    return layout, sum(b.size for b in img.blobs)


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    run(argv, timeout=600)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--layer-mb", type=int, default=25)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench needs root", file=sys.stderr)
        return 1
    why = missing_tools(Mode.PLAIN)
    for exe in ("containerd", "ctr"):
        if shutil.which(exe) is None:
            why = f"{exe} not installed (Debian package containerd)"
    if why:
        print(f"bench needs {why}", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="pypull-", dir="/tmp"))
    reg: RegistryServer | None = None
    auth = work / "auth.json"
    auth.write_text("{}")
    cfg = work / "py.toml"
    cfg.write_text(f'[registry]\nauth_file = "{auth}"\ncerts_dir = "{work}/certs.d"\n')
    d = Daemon(work, name="py", args=["--config", str(cfg)])
    c = Containerd(work)
    try:
        layout, size = build(work, args.layers, args.layer_mb)
        reg = RegistryServer.start(Mode.PLAIN)
        ref = f"{reg.host}/bench/pull:1"
        reg.skopeo("copy", *reg.skopeo_flags("dest"), f"oci:{layout}:latest", f"docker://{ref}")
        shutil.rmtree(layout)
        d.start()
        c.start()

        ours: list[float] = []
        theirs: list[float] = []
        for i in range(args.runs + 1):
            a = timed([*pyctr_argv(d), "images", "pull", "--plain-http", ref])
            b = timed([*c.argv(), "images", "pull", "--plain-http", ref])
            run([*pyctr_argv(d), "images", "rm", "--sync", ref])
            c.ctr("images", "rm", "--sync", ref)
            if i >= 1:  # the first round warms the page cache, the daemons and the registry
                ours.append(a)
                theirs.append(b)
        report(ours, theirs, size, args.runs)
        if args.json:
            Path(args.json).write_text(json.dumps({"pyctr": ours, "ctr": theirs, "bytes": size}))
    finally:
        d.close()
        c.stop()
        umount_under(d.root, d.state, c.root, c.state)
        if reg is not None:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(ours: list[float], theirs: list[float], size: int, runs: int) -> None:
    mo, mt = statistics.median(ours), statistics.median(theirs)
    mb = size / 1e6
    print(f"pull --plain-http + unpack, {mb:.0f} MB image, {runs} runs each, medians")
    print(f"{'stack':14} {'seconds':>8} {'MB/s':>7} {'vs ctd':>7}")
    print(f"{'pycontainerd':14} {mo:8.2f} {mb / mo:7.1f} {mo / mt:6.2f}x")
    print(f"{'containerd':14} {mt:8.2f} {mb / mt:7.1f} {1:6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
