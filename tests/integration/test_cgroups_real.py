"""The v1 cgroup manager on this host's real hierarchies (root only).

Every test works in a cgroup named /pyrunc-test-<random> and the `sandbox` fixture removes it
from every hierarchy afterwards, thawing it and killing the processes the test started first,
whatever state the test left it in.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from oci_runtime.cgroups import (
    CgroupError,
    CgroupManager,
    CgroupMode,
    Resources,
    detect,
    load_manager,
    new_manager,
)

ROOT = Path("/sys/fs/cgroup")

pytestmark = [
    pytest.mark.root,
    pytest.mark.cgroup_v1,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(detect(ROOT) is CgroupMode.UNIFIED, reason="needs cgroup v1 hierarchies"),
]


@dataclass
class Sandbox:
    name: str
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
        self.children.append(child)
        return child

    def host_dirs(self) -> list[Path]:
        return sorted(ROOT.glob(f"*/{self.name.strip('/')}"))


def _rmdir_tree(top: Path) -> None:
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        for _ in range(200):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.01)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(f"/pyrunc-test-{secrets.token_hex(4)}")
    try:
        yield box
    finally:
        # A frozen task does not die until thawed: thaw before killing.
        for d in box.host_dirs():
            for state in d.rglob("freezer.state"):
                try:
                    state.write_text("THAWED")
                except OSError:
                    pass
        for child in box.children:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        for d in box.host_dirs():
            _rmdir_tree(d)
        assert box.host_dirs() == []


def read(mgr: CgroupManager, controller: str, name: str) -> str:
    return Path(mgr.paths()[controller], name).read_text().strip()


def test_lifecycle(sandbox: Sandbox) -> None:
    mgr = new_manager(sandbox.name)
    assert not mgr.is_v2
    assert not mgr.exists()
    child = sandbox.spawn()

    mgr.apply(child.pid)
    assert mgr.exists()
    for controller, d in mgr.paths().items():
        assert Path(d).is_dir(), controller
    assert mgr.pids() == [child.pid]
    own = Path(f"/proc/{child.pid}/cgroup").read_text()
    assert f"memory:{sandbox.name}\n" in own

    mgr.set(
        Resources.from_dict(
            {
                "memory": {"limit": 64 << 20, "swappiness": 10},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                "pids": {"limit": 20},
                "devices": [
                    {"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                ],
            }
        )
    )
    assert read(mgr, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read(mgr, "memory", "memory.swappiness") == "10"
    assert read(mgr, "cpu", "cpu.shares") == "512"
    assert read(mgr, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(mgr, "cpu", "cpu.cfs_period_us") == "100000"
    assert read(mgr, "pids", "pids.max") == "20"
    assert read(mgr, "devices", "devices.list") == "c 1:3 rwm"

    # A later pyrunc command only has the paths saved in state.json.
    again = load_manager(mgr.paths())
    again.freeze(True)
    assert read(mgr, "freezer", "freezer.state") == "FROZEN"
    assert mgr.is_frozen()
    state = Path(f"/proc/{child.pid}/status").read_text().split("State:")[1].split()[0]
    assert state in ("D", "T"), state  # frozen tasks sleep uninterruptibly
    again.freeze(False)
    assert read(mgr, "freezer", "freezer.state") == "THAWED"
    assert not mgr.is_frozen()

    stats = mgr.stats()
    assert stats["pids"] == {"current": 1, "limit": 20}
    assert stats["memory"]["usage"]["limit"] == 64 << 20
    assert stats["memory"]["usage"]["usage"] >= 0
    assert stats["cpu"]["throttling"]["periods"] >= 0
    assert isinstance(stats["cpu"]["usage"]["total"], int)
    assert mgr.oom_kill_count() == 0

    child.kill()
    child.wait()
    mgr.destroy()
    assert not mgr.exists()
    assert sandbox.host_dirs() == []


def test_memory_limits_raised_and_lowered(sandbox: Sandbox) -> None:
    mgr = new_manager(sandbox.name)
    mgr.apply(0)
    if not Path(mgr.paths()["memory"], "memory.memsw.limit_in_bytes").exists():
        pytest.skip("swap accounting is off")
    mib = 1 << 20
    # Each step needs a different write order: the kernel keeps memsw >= limit at all times.
    for limit, swap in [(64, 128), (16, 32), (256, 512), (8, 8), (512, -1)]:
        swap_bytes = -1 if swap == -1 else swap * mib
        mgr.set(Resources.from_dict({"memory": {"limit": limit * mib, "swap": swap_bytes}}))
        assert read(mgr, "memory", "memory.limit_in_bytes") == str(limit * mib)
        if swap != -1:
            assert read(mgr, "memory", "memory.memsw.limit_in_bytes") == str(swap * mib)
        else:
            assert int(read(mgr, "memory", "memory.memsw.limit_in_bytes")) > 1 << 60
    mgr.destroy()


def test_nested_path_inherits_cpuset_and_leaves_parent(sandbox: Sandbox) -> None:
    mgr = new_manager(f"{sandbox.name}/inner")
    child = sandbox.spawn()
    mgr.apply(child.pid)
    parent_cpus = (ROOT / "cpuset" / "cpuset.cpus").read_text().strip()
    assert read(mgr, "cpuset", "cpuset.cpus") == parent_cpus
    assert (ROOT / "cpuset" / sandbox.name.strip("/") / "cpuset.cpus").read_text().strip() == (
        parent_cpus
    )
    mgr.set(Resources.from_dict({"cpu": {"cpus": "0", "mems": "0"}}))
    assert read(mgr, "cpuset", "cpuset.cpus") == "0"
    # Killed but not yet reaped: destroy waits out the busy cgroup.
    child.kill()
    mgr.destroy()
    child.wait()
    assert not mgr.exists()
    # The parent was created on the way, but parents are left for others to share.
    assert (ROOT / "memory" / sandbox.name.strip("/")).is_dir()


def test_hugetlb_and_blkio_throttle(sandbox: Sandbox) -> None:
    mgr = new_manager(sandbox.name)
    mgr.apply(0)
    paths = mgr.paths()
    if "hugetlb" in paths and Path(paths["hugetlb"], "hugetlb.2MB.limit_in_bytes").exists():
        mgr.set(Resources.from_dict({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 21}]}))
        assert read(mgr, "hugetlb", "hugetlb.2MB.limit_in_bytes") == str(4 << 21)
        assert "2MB" in mgr.stats()["hugetlb"]
    dev = os.stat("/").st_dev
    rule = {"major": os.major(dev), "minor": os.minor(dev), "rate": 1 << 20}
    try:
        mgr.set(Resources.from_dict({"blockIO": {"throttleReadBpsDevice": [rule]}}))
    except CgroupError as exc:
        pytest.skip(f"the root device cannot be throttled here: {exc}")
    assert read(mgr, "blkio", "blkio.throttle.read_bps_device") == (
        f"{os.major(dev)}:{os.minor(dev)} {1 << 20}"
    )
    mgr.destroy()


def test_errors_are_clear(sandbox: Sandbox) -> None:
    mgr = new_manager(sandbox.name)
    mgr.apply(0)
    # Below the kernel's 1ms minimum: the error names the value and the file.
    with pytest.raises(CgroupError, match=r"cannot write '10' to /\S+/cpu\.cfs_quota_us: Invalid"):
        mgr.set(Resources.from_dict({"cpu": {"quota": 10}}))
    with pytest.raises(CgroupError, match="unified"):
        mgr.set(Resources.from_dict({"unified": {"memory.high": "1"}}))
    mgr.destroy()
