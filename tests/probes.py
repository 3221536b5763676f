"""Probes for the differential tests: run a busybox shell inside a container, read what it saw.

A test runs the same bundle under each runtime (the `runtime` fixture) and asserts on what a
user would check. Where the exact value is not knowable in advance (the mount table, the
capability masks), the test also runs the bundle under runc (`reference` fixture) and compares
normalized observations; the comparison is skipped when runc is not installed.

    reference = probes.reference  # a test module makes the fixture its own

    def test_x(runtime, bundle, reference):
        got = probe(runtime, bundle, "hostname")
        assert got.out == "pyrunc\\n"
        table = mount_table(probe(runtime, bundle, "cat /proc/self/mountinfo").out)
        reference.same(runtime, table, bundle, "cat /proc/self/mountinfo",
                       lambda o: mount_table(o.out))
"""

from __future__ import annotations

import difflib
import json
import os
import pprint
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runtimes import CGROUP_ROOT, Runtime, runtime_available

Edit = Callable[[dict[str, Any]], None] | None
BundleFactory = Callable[..., Path]

# The per-mount flags the mount table comparison keeps (from mountinfo field 6). Atime flags
# and the super block options (tmpfs size=, mode=, devpts ptmxmode=...) are left out: they are
# the kernel's defaults or the runtime's way to get them, not what the spec asks for.
MOUNT_FLAGS = ("ro", "rw", "nosuid", "nodev", "noexec")


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


def probe(
    rt: Runtime,
    bundle: BundleFactory,
    script: str,
    *,
    edit: Edit = None,
    writable: bool = False,
    timeout: float = 30,
) -> Outcome:
    """`run` a bundle whose process is `sh -c script`; stdin is empty, output captured."""
    b = bundle(sh(script), edit=edit, writable=writable)
    p = rt.run(b, timeout=timeout)
    return Outcome(
        p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    )


def chain(*edits: Edit) -> Edit:
    def edit(cfg: dict[str, Any]) -> None:
        for e in edits:
            if e is not None:
                e(cfg)

    return edit


class Reference:
    """runc run over the same bundle, for observations whose value is not known in advance."""

    def __init__(self, rt: Runtime | None, why: str) -> None:
        self.rt = rt
        self.why = why

    def outcome(self, bundle: BundleFactory, script: str, **kw: Any) -> Outcome:
        if self.rt is None:
            pytest.skip(f"no reference to compare with: {self.why}")
        return probe(self.rt, bundle, script, **kw)

    def same(
        self,
        runtime: Runtime,
        got: Any,
        bundle: BundleFactory,
        script: str,
        normalize: Callable[[Outcome], Any],
        **kw: Any,
    ) -> None:
        """Assert that normalize(runc's outcome) equals `got` (the runtime's, normalized).

        For runc itself the run is repeated: the comparison then checks the probe is stable."""
        ref = self.outcome(bundle, script, **kw)
        if ref.code != 0:
            raise AssertionError(f"runc (reference) failed: {ref}")
        want = normalize(ref)
        if got != want:
            raise AssertionError(f"{runtime.name} differs from runc:\n{diff(want, got)}")


def diff(want: Any, got: Any) -> str:
    """A unified diff of two values' pretty forms (this module is not assert-rewritten)."""
    a = _lines(want)
    b = _lines(got)
    return "\n".join(difflib.unified_diff(a, b, "runc", "got", lineterm="", n=2))


def _lines(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return pprint.pformat(value, width=90).splitlines()


@pytest.fixture
def reference(short_tmp: Path):
    ok, why = runtime_available("runc")
    if not ok:
        yield Reference(None, why)
        return
    d = short_tmp / "ref"
    d.mkdir()
    rt = Runtime("runc", d)
    try:
        yield Reference(rt, "")
    finally:
        rt.cleanup()


# -- normalizers ------------------------------------------------------------------------------


def status_fields(text: str, names: Iterable[str]) -> dict[str, str]:
    """Fields of a /proc/<pid>/status text, e.g. CapEff -> "00000000a80425fb"."""
    wanted = set(names)
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[key] = value.strip()
    return out


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


@dataclass(frozen=True, slots=True, order=True)
class MountRow:
    mountpoint: str
    fstype: str
    flags: str

    def __str__(self) -> str:
        return f"{self.mountpoint} {self.fstype} {self.flags}"


def mount_table(mountinfo: str) -> list[MountRow]:
    """/proc/self/mountinfo reduced to what the spec decides, sorted.

    Kept: mount point, filesystem type, and ro/rw, nosuid, nodev, noexec, one row per mount
    (stacked mounts give several rows). Left out as implementation detail:

    - mount ids, parent ids, device numbers, the root within the filesystem, propagation
      tags and the order of lines: runtimes mount masked and read-only paths in either order;
    - atime flags and super block data (tmpfs size/mode, devpts modes, sysfs's super ro):
      crun mounts /sys/fs/cgroup with size=1024k, masks with size=0k tmpfs;
    - what a masked file is bound from: runc and pyrunc bind the container's /dev/null
      (tmpfs, nosuid, rw), crun the host's (devtmpfs, ro); every runtime shows the same
      empty, unwritable-to-the-kernel file, so such rows read "masked-file";
    - the flags of host device nodes bound under /dev (in a user namespace, where mknod is
      refused): crun adds nosuid,noexec to them, runc and pyrunc do not; only ro/rw is kept.
    """
    rows = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f = left.split()
        root, mp, opts = _unescape(f[3]), _unescape(f[4]), f[5].split(",")
        fstype = right.split()[0]
        flags = [o for o in MOUNT_FLAGS if o in opts]
        if mp.startswith("/dev/") and fstype == "devtmpfs":
            # A host device node bound in (user namespaces, where mknod is refused).
            rows.append(MountRow(mp, fstype, flags[0]))
        elif root == "/null" and fstype in ("tmpfs", "devtmpfs"):
            rows.append(MountRow(mp, "masked-file", ""))
        else:
            rows.append(MountRow(mp, fstype, ",".join(flags)))
    return sorted(rows)


def words(text: str) -> list[list[str]]:
    """Lines split into whitespace-separated words (uid_map and /proc/self/limits layout)."""
    return [line.split() for line in text.splitlines() if line.strip()]


# -- host-side helpers ------------------------------------------------------------------------


def cgroup_dir(bundle: Path, controller: str) -> Path:
    cfg = json.loads((bundle / "config.json").read_text())
    return CGROUP_ROOT / controller / cfg["linux"]["cgroupsPath"].strip("/")


def wait_status(rt: Runtime, cid: str, want: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = rt.state(cid)
        if st["status"] == want:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"{rt.name} {cid}: status {st['status']!r}, wanted {want!r}")
        time.sleep(0.02)


def wait_file(path: Path, predicate: Callable[[str], bool], timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {text!r} after {timeout}s")
        time.sleep(0.02)


class Background:
    """`runtime run` left running in the foreground of a child process (for signals)."""

    def __init__(self, rt: Runtime, bundle: Path, cid: str | None = None) -> None:
        self.rt = rt
        self.cid = cid or rt.new_id()
        rt.bundles.add(bundle)
        self.proc = subprocess.Popen(
            [*rt.argv, "run", "--bundle", str(bundle), self.cid],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def wait_running(self, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.rt.name} run exited early: {self.finish(1)}")
            p = self.rt.cmd("state", self.cid, check=False)
            if p.returncode == 0:
                st = json.loads(p.stdout)
                if st["status"] == "running":
                    return st
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.rt.name} {self.cid} never reached running")
            time.sleep(0.02)

    def finish(self, timeout: float = 15) -> Outcome:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"{self.rt.name} run did not end: {err.decode()}") from None
        return Outcome(self.proc.returncode, out.decode(errors="replace"), err.decode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate()


def host_ns(name: str) -> str:
    return os.readlink(f"/proc/self/ns/{name}")
