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

        client = d.client(timeout=600)

        def pyctr_pull() -> float:
            t = timed([*pyctr_argv(d), "images", "pull", "--plain-http", ref])
            run([*pyctr_argv(d), "images", "rm", "--sync", ref])
            return t

        def ctr_pull() -> float:
            t = timed([*c.argv(), "images", "pull", "--plain-http", ref])
            c.ctr("images", "rm", "--sync", ref)
            return t

        def call_pull() -> float:
            t0 = time.perf_counter()
            for _ in client.transfer().pull(ref, plain_http=True):
                pass
            t = time.perf_counter() - t0
            client.images().delete(ref, sync=True)
            return t

        # Each round in another order: what one pull leaves to the disk (writeback of
        # what the previous one deleted) falls on each tool alike.
        tools = [pyctr_pull, ctr_pull, call_pull]
        times: dict[str, list[float]] = {f.__name__: [] for f in tools}
        for i in range(args.runs + 1):
            for f in tools[i % 3 :] + tools[: i % 3]:
                t = f()
                if i >= 1:  # the first round warms the page cache, daemons and registry
                    times[f.__name__].append(t)
        ours, theirs, calls = (times[f.__name__] for f in tools)
        client.close()
        report(ours, theirs, calls, size, args.runs)
        if args.json:
            results = {"pyctr": ours, "ctr": theirs, "call": calls, "bytes": size}
            Path(args.json).write_text(json.dumps(results))
    finally:
        d.close()
        c.stop()
        umount_under(d.root, d.state, c.root, c.state)
        if reg is not None:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(
    ours: list[float], theirs: list[float], calls: list[float], size: int, runs: int
) -> None:
    mt = statistics.median(theirs)
    mb = size / 1e6
    print(f"pull --plain-http + unpack, {mb:.0f} MB image, {runs} runs each, medians")
    print(f"{'':34} {'seconds':>8} {'MB/s':>7} {'vs ctr':>7}")
    for what, times in (
        ("pyctr images pull", ours),
        ("ctr images pull (containerd)", theirs),
        ("Transfer.Pull call (no CLI start)", calls),
    ):
        m = statistics.median(times)
        print(f"{what:34} {m:8.2f} {mb / m:7.1f} {m / mt:6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
