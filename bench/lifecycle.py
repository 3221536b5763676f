"""Full container lifecycle, side by side: create, start, wait, delete of /bin/true.

Every runtime runs the same busybox bundle in the same run, interleaved round-robin so that
machine noise falls on all alike. Reports per-step and total medians, and the ratio to runc.

    python3 bench/lifecycle.py [--runs 30] [--runtimes pyrunc,runc,crun]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mkimage.bundle import build_bundle

PR_SET_CHILD_SUBREAPER = 36
STEPS = ("create", "start", "wait", "delete")


def argv_for(name: str, work: Path) -> list[str] | None:
    if name == "pyrunc":
        # The launcher `make install` puts on PATH: -S, no .pth processing.
        from oci_runtime.launcher import write_launcher

        exe = str(work / "pyrunc")
        write_launcher(exe)
        return [exe]
    exe = shutil.which(name)
    return [exe] if exe else None


def one(argv: list[str], root: str, bundle: str, cid: str, pidfile: str) -> dict[str, float]:
    t: dict[str, float] = {}
    base = [*argv, "--root", root]
    t0 = time.perf_counter()
    subprocess.run(
        [*base, "create", "--bundle", bundle, "--pid-file", pidfile, cid],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    t1 = time.perf_counter()
    subprocess.run([*base, "start", cid], check=True)
    t2 = time.perf_counter()
    pid = int(Path(pidfile).read_text())
    # We are the subreaper: the container's init is re-parented to us once create exits.
    os.waitpid(pid, 0)
    t3 = time.perf_counter()
    subprocess.run([*base, "delete", cid], check=True)
    t4 = time.perf_counter()
    t.update(create=t1 - t0, start=t2 - t1, wait=t3 - t2, delete=t4 - t3, total=t4 - t0)
    return t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--runtimes", default="pyrunc,runc,crun")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench needs root", file=sys.stderr)
        return 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    work = Path(tempfile.mkdtemp(prefix="pyb-"))
    try:
        bundle = build_bundle(work / "bundle", ["/bin/true"])
        cfg = json.loads((bundle / "config.json").read_text())
        cfg["linux"]["cgroupsPath"] = "/pybench/c"
        runtimes = {}
        for name in args.runtimes.split(","):
            argv = argv_for(name, work)
            if argv is None:
                print(f"# {name}: not installed, skipped")
                continue
            runtimes[name] = argv
        results: dict[str, list[dict[str, float]]] = {n: [] for n in runtimes}
        for i in range(args.runs + 2):
            for name, argv in runtimes.items():
                cid = f"b{name}{i}"
                c = dict(cfg)
                c["linux"] = dict(cfg["linux"], cgroupsPath=f"/pybench/{cid}")
                (bundle / "config.json").write_text(json.dumps(c))
                r = one(argv, str(work / f"root-{name}"), str(bundle), cid, str(work / "pid"))
                if i >= 2:  # the first two warm the page cache
                    results[name].append(r)
        report(results, args.runs)
        if args.json:
            Path(args.json).write_text(json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for hier in Path("/sys/fs/cgroup").iterdir():
            d = hier / "pybench"
            if d.is_dir():
                for sub in d.iterdir():
                    if sub.is_dir():
                        try:
                            sub.rmdir()
                        except OSError:
                            pass
                try:
                    d.rmdir()
                except OSError:
                    pass
    return 0


def report(results: dict[str, list[dict[str, float]]], runs: int) -> None:
    med = {
        n: {s: statistics.median(r[s] for r in rs) * 1000 for s in (*STEPS, "total")}
        for n, rs in results.items()
        if rs
    }
    print(f"lifecycle of /bin/true, {runs} runs each, medians in ms")
    print(f"{'runtime':8} " + " ".join(f"{s:>8}" for s in (*STEPS, "total")) + "  vs runc")
    ref = med.get("runc", {}).get("total")
    for n, m in med.items():
        ratio = f"{m['total'] / ref:.2f}x" if ref else "-"
        print(f"{n:8} " + " ".join(f"{m[s]:8.1f}" for s in (*STEPS, "total")) + f"  {ratio:>6}")


if __name__ == "__main__":
    sys.exit(main())
