"""The containerd layer, side by side: `pyctr run --rm IMAGE id true` on pycontainerd against
`ctr run --rm IMAGE id true` on containerd (Debian package), `pyctr version` against
`ctr version` (the client's start-up and one call), and the memory of idle shims.

A private pycontainerd and a private containerd run for the benchmark (own root, state and
socket under a short /tmp dir, containerd with a minimal config), both import the same
busybox image built by mkimage. pyctr runs two ways: through the fast launcher `make
install` puts in place (written here into the temp dir: python -IS, a fixed sys.path), and
as `python -m cli.ctr`, which starts like pip's console script (`site` and its .pth files).
Rounds are interleaved so that machine noise falls on all alike. Reports median wall clock
per command, the ratio to ctr (and pyctr over runc, to see the stack apart from the runtime),
and the shims' memory (PSS) with 1 and with 10 idle `sleep 300` containers on each side:
one of our shims, the shim template they are forked from, and per container ours
(shims + template) against containerd-shim-runc-v2's.
Everything is cleaned up afterwards: tasks, containers, daemons, shims, mounts, cgroups and
temp dirs.

    python3 bench/containerd_layer.py [--runs 15] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from containerd_py.runtime.task_manager import CGROUP_PARENT_ENV  # noqa: E402
from containerd_py.snapshots.mount import unmount_all  # noqa: E402
from mkimage import write_oci_archive  # noqa: E402
from oci_runtime.launcher import write_launcher  # noqa: E402
from tests.daemon import Daemon  # noqa: E402

IMAGE = "docker.io/library/busybox:latest"
NS = "pybenchcl"
CGROUP_ROOT = Path("/sys/fs/cgroup")

CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


def run(
    argv: list[str], timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        argv,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}\n{r.stderr}")
    return r


class Containerd:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "ctd-root"
        self.state = tmp / "ctd-state"
        self.address = str(tmp / "ctd.sock")
        self.config = tmp / "ctd.toml"
        self.log = tmp / "ctd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Containerd:
        self.config.write_text(
            CONFIG.format(root=self.root, state=self.state, address=self.address)
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited:\n{self.log.read_text()[-3000:]}")
            if os.path.exists(self.address) and self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"containerd not ready:\n{self.log.read_text()[-3000:]}")

    def argv(self) -> list[str]:
        return ["ctr", "--address", self.address, "--namespace", NS]

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.argv(), *args], check=check)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


PYCTR_PACKAGES = ("typer", "grpc", "google.protobuf")  # as the Makefile installs it


def pyctr_argv(d: Daemon, launcher: Path | None = None) -> list[str]:
    start = [str(launcher)] if launcher else [sys.executable, "-m", "cli.ctr"]
    return [*start, "--address", d.address, "-n", NS]


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    r = run(argv, check=False)
    t = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}\n{r.stderr}")
    return t


# -- shims ----------------------------------------------------------------------------------


def our_shims(state: Path) -> list[int]:
    pids = []
    for f in state.glob("tasks/*/*/shim.pid"):
        try:
            pids.append(int(f.read_text()))
        except (OSError, ValueError):
            pass
    alive = []
    for pid in pids:
        try:  # the pid file may name a pid the kernel has reused since
            if "shim" in " ".join(psutil.Process(pid).cmdline()):
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


def their_shims(address: str) -> list[int]:
    pids = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and os.path.basename(cmd[0]) == "containerd-shim-runc-v2" and address in cmd:
            pids.append(p.pid)
    return pids


def pss_mb(pids: list[int]) -> float:
    return sum(psutil.Process(pid).memory_full_info().pss for pid in pids) / 2**20


def our_template(state: Path) -> list[int]:
    """The shim template, whose pages the shims share: part of what they cost."""
    try:
        pid = int((state / "s" / "template.pid").read_text())
        return [pid] if "template" in psutil.Process(pid).cmdline() else []
    except (OSError, ValueError, psutil.Error):
        return []


IDLE_COUNTS = (1, 10)


def idle_memory(d: Daemon, c: Containerd, theirs_parent: str, n: int) -> dict[str, float]:
    """PSS with n idle `sleep 300` containers on each side, in MB: one shim of ours, our
    template, ours in all (shims + template) per container; theirs per container."""
    ids = [f"idle{n}-{i}" for i in range(n)]
    for cid in ids:
        run([*pyctr_argv(d), "run", "-d", IMAGE, cid, "sleep", "300"])
        c.ctr("run", "-d", "--cgroup", f"{theirs_parent}/{cid}", IMAGE, cid, "sleep", "300")
    time.sleep(1)  # let both settle
    ours, template, theirs = our_shims(d.state), our_template(d.state), their_shims(c.address)
    if len(ours) != n or len(theirs) != n:
        raise RuntimeError(f"expected {n} shims each, found {ours} and {theirs}")
    result = {
        "ours_one_shim": pss_mb(ours[:1]),
        "ours_template": pss_mb(template),
        "ours_per_container": (pss_mb(ours) + pss_mb(template)) / n,
        "theirs_per_container": pss_mb(theirs) / n,
    }
    for cid in ids:
        run([*pyctr_argv(d), "tasks", "kill", "-s", "KILL", cid], check=False)
        c.ctr("tasks", "kill", "-s", "KILL", cid, check=False)
    for cid in ids:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if run([*pyctr_argv(d), "tasks", "rm", cid], check=False).returncode == 0:
                break
            time.sleep(0.1)
        run([*pyctr_argv(d), "containers", "rm", cid], check=False)
        while time.monotonic() < deadline:
            if c.ctr("tasks", "rm", cid, check=False).returncode == 0:
                break
            time.sleep(0.1)
        c.ctr("containers", "rm", cid, check=False)
    return result


def kill_groups(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def remove_cgroup(path: str) -> None:
    rel = path.strip("/")
    if not rel:
        return
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


def umount_under(*dirs: Path) -> None:
    prefixes = tuple(str(d) for d in dirs)
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        where = line.split()[1]
        if where.startswith(prefixes):
            try:
                unmount_all(where, 2)  # MNT_DETACH
            except OSError as e:
                print(f"# umount {where}: {e}", file=sys.stderr)


# -- the benchmark --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench needs root", file=sys.stderr)
        return 1
    for exe in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(exe) is None:
            print(f"bench needs {exe} (Debian package containerd)", file=sys.stderr)
            return 1
    if not Path("/bin/busybox").exists():
        print("bench needs /bin/busybox (busybox-static)", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="pycl-", dir="/tmp"))
    ours_parent = f"/pybench-cl-{os.getpid()}"
    theirs_parent = f"/pybench-ctd-{os.getpid()}"
    d = Daemon(work, name="py", env=dict(os.environ, **{CGROUP_PARENT_ENV: ours_parent}))
    c = Containerd(work)
    try:
        archive = work / "bb.tar"
        write_oci_archive(archive)
        d.start()
        c.start()
        run([*pyctr_argv(d), "images", "import", str(archive)])
        c.ctr("images", "import", str(archive))
        launcher = work / "pyctr"
        write_launcher(str(launcher), "cli.ctr:main", PYCTR_PACKAGES)
        variants = {
            "pyctr": pyctr_argv(d, launcher),
            "pyctr -m": pyctr_argv(d),
            "pyctr runc": pyctr_argv(d, launcher),
            "ctr": c.argv(),
        }
        times: dict[tuple[str, str], list[float]] = {}
        for i in range(args.runs + 2):
            for name, argv in variants.items():
                cid = f"b{i}-{name.replace(' ', '')}"
                cg = ["--cgroup", f"{theirs_parent}/{cid}"] if name == "ctr" else []
                if name == "pyctr runc":  # the same stack over the same runtime as ctr's
                    cg = ["--runtime", "runc"]
                rounds = {
                    "version": timed([*argv, "version"]),
                    "run --rm true": timed([*argv, "run", "--rm", *cg, IMAGE, cid, "true"]),
                }
                if i >= 2:  # the first two warm the page cache and the daemons
                    for what, t in rounds.items():
                        times.setdefault((name, what), []).append(t)
        memory = {n: idle_memory(d, c, theirs_parent, n) for n in IDLE_COUNTS}
        report(times, memory, args.runs)
        if args.json:
            results = {f"{name} {what}": ts for (name, what), ts in times.items()}
            Path(args.json).write_text(json.dumps({**results, "memory_mb": memory}))
    finally:
        cleanup(d, c, work, ours_parent, theirs_parent)
    return 0


def cleanup(d: Daemon, c: Containerd, work: Path, ours_parent: str, theirs_parent: str) -> None:
    # Tasks and containers still there (after a failure): ask the daemons while they run.
    if d.running:
        ids = run([*pyctr_argv(d), "tasks", "ls", "-q"], check=False).stdout.split()
        for cid in ids:
            run([*pyctr_argv(d), "tasks", "kill", "-s", "KILL", cid], check=False)
        for cid in ids:
            for _ in range(50):
                if run([*pyctr_argv(d), "tasks", "rm", cid], check=False).returncode == 0:
                    break
                time.sleep(0.1)
        for cid in run([*pyctr_argv(d), "containers", "ls", "-q"], check=False).stdout.split():
            run([*pyctr_argv(d), "containers", "rm", cid], check=False)
    if c.proc is not None and c.proc.poll() is None:
        lines = c.ctr("tasks", "ls", check=False).stdout.splitlines()[1:]
        ids = [line.split()[0] for line in lines if line.split()]
        for cid in ids:
            c.ctr("tasks", "kill", "-s", "KILL", cid, check=False)
        for cid in ids:
            for _ in range(50):
                if c.ctr("tasks", "rm", cid, check=False).returncode == 0:
                    break
                time.sleep(0.1)
        for cid in c.ctr("containers", "ls", "-q", check=False).stdout.split():
            c.ctr("containers", "rm", cid, check=False)
    # Shims outlive their daemons: note them before the daemons go, kill their groups after.
    shims = our_shims(d.state) + their_shims(c.address)
    d.close()
    c.stop()
    kill_groups(shims + our_shims(d.state) + their_shims(c.address))
    umount_under(d.root, d.state, c.root, c.state)
    remove_cgroup(ours_parent)
    remove_cgroup(theirs_parent)
    remove_cgroup(f"/{NS}")  # containerd's default for anything run without --cgroup
    shutil.rmtree(work, ignore_errors=True)


def report(
    times: dict[tuple[str, str], list[float]], memory: dict[int, dict[str, float]], runs: int
) -> None:
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"{runs} runs each, medians in ms (ratio to ctr)")
    print("pyctr: fast launcher (python -IS); pyctr -m: python -m cli.ctr (site, as pip's script);")
    print("pyctr runc: the launcher with --runtime runc (ctr runs runc); the others use pyrunc")
    whats = ["version", "run --rm true"]
    print(f"{'client':12}" + "".join(f"{w:>22}" for w in whats))
    for name in ("pyctr", "pyctr -m", "pyctr runc", "ctr"):
        cells = []
        for w in whats:
            m = med[(name, w)]
            cells.append(f"{m:13.1f} ({m / med[('ctr', w)]:5.2f}x)")
        print(f"{name:12}" + "".join(f"{c:>22}" for c in cells))
    print("idle containers' shims, PSS in MB (ours: shims forked from one shim template)")
    heads = ("containers", "our shim", "template", "ours/cont.", "theirs/cont.")
    print(" ".join(f"{h:>12}" for h in heads))
    for n, m in memory.items():
        print(
            f"{n:12d} {m['ours_one_shim']:12.1f} {m['ours_template']:12.1f} "
            f"{m['ours_per_container']:12.1f} {m['theirs_per_container']:12.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
