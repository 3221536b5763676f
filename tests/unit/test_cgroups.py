"""The cgroup factory, mountinfo parsing, shared file helpers, and the v1 manager over a fake
tree (no root needed: cgroup files are plain files in tmp_path)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci_runtime.cgroups import (
    CgroupError,
    CgroupManager,
    CgroupMode,
    CgroupV1,
    CgroupV2,
    Resources,
    detect,
    files,
    load_manager,
    mountinfo,
    new_manager,
)

# Captured from this project's test machine (cgroup v1, hybrid, each controller on its own
# hierarchy, hugetlb moved to a v1 hierarchy of its own).
THIS_MACHINE = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
28 27 0:25 / /mnt/sandboxing/model_tools_env/v1/python ro,nosuid,nodev,relatime - tmpfs \
model_tools_unavailable ro,size=4k,mode=755
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/hugetlb rw,relatime - cgroup cgroup rw,hugetlb
"""

# A systemd host of the Ubuntu 20.04 kind: shared hierarchies, optional fields, and flags
# mixed into the super options; plus a bind mount of the memory hierarchy elsewhere.
SYSTEMD_HYBRID = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 \
rw,nsdelegate
33 31 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup \
rw,xattr,name=systemd
36 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup \
cgroup rw,cpu,cpuacct
37 31 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:16 - \
cgroup cgroup rw,net_cls,net_prio
38 31 0:33 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup \
rw,memory
39 31 0:34 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup \
rw,cpuset,clone_children
40 31 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup \
rw,pids
41 31 0:36 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup \
rw,freezer
90 30 0:33 / /mnt/memory\\040copy rw,relatime shared:17 - cgroup cgroup rw,memory
91 31 0:33 /docker /sys/fs/cgroup/memory-again rw,relatime - cgroup cgroup rw,memory
"""

UNIFIED_HOST = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
"""


# -- mountinfo -------------------------------------------------------------------------------


def test_parse_mountinfo_fields() -> None:
    mounts = mountinfo.parse_mountinfo(SYSTEMD_HYBRID)
    first = mounts[0]
    assert (first.mount_id, first.parent_id, first.major, first.minor) == (25, 30, 0, 23)
    assert first.mountpoint == "/sys"
    assert first.optional == ("shared:7",)
    assert (first.fstype, first.source, first.super_options) == ("sysfs", "sysfs", "rw")
    escaped = next(m for m in mounts if m.mount_id == 90)
    assert escaped.mountpoint == "/mnt/memory copy"
    assert next(m for m in mounts if m.mount_id == 91).root == "/docker"


def test_parse_mountinfo_skips_garbage() -> None:
    text = "garbage\n1 2 3\n" + THIS_MACHINE + "\n\n42 31 x:y / /a rw - cgroup cgroup rw,cpu\n"
    mounts = mountinfo.parse_mountinfo(text)
    assert len(mounts) == 21
    assert mounts[-1].fstype == "cgroup"
    assert mounts[-1].super_options == "rw,hugetlb"


def test_this_machine_hierarchies() -> None:
    root = Path("/sys/fs/cgroup")
    found = mountinfo.cgroup_hierarchies(mountinfo.parse_mountinfo(THIS_MACHINE), root)
    by_mount = {str(h.mountpoint): (h.controllers, h.version) for h in found}
    assert by_mount["/sys/fs/cgroup/cpu"] == (frozenset({"cpu"}), 1)
    assert by_mount["/sys/fs/cgroup/systemd"] == (frozenset({"name=systemd"}), 1)
    assert by_mount["/sys/fs/cgroup/unified"] == (frozenset({""}), 2)
    assert by_mount["/sys/fs/cgroup/hugetlb"] == (frozenset({"hugetlb"}), 1)
    assert len(found) == 11


def test_shared_hierarchies_flags_and_bind_mounts() -> None:
    root = Path("/sys/fs/cgroup")
    found = mountinfo.cgroup_hierarchies(mountinfo.parse_mountinfo(SYSTEMD_HYBRID), root)
    by_mount = {str(h.mountpoint): h.controllers for h in found}
    assert by_mount["/sys/fs/cgroup/cpu,cpuacct"] == {"cpu", "cpuacct"}
    assert by_mount["/sys/fs/cgroup/net_cls,net_prio"] == {"net_cls", "net_prio"}
    # xattr and clone_children are mount flags, not controllers.
    assert by_mount["/sys/fs/cgroup/systemd"] == {"name=systemd"}
    assert by_mount["/sys/fs/cgroup/cpuset"] == {"cpuset"}
    # The memory hierarchy is mounted three times: outside root, then twice under it.
    assert "/mnt/memory copy" not in by_mount
    assert "/sys/fs/cgroup/memory-again" not in by_mount
    assert by_mount["/sys/fs/cgroup/memory"] == {"memory"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("rw,cpu,cpuacct", {"cpu", "cpuacct"}),
        ("rw,name=systemd", {"name=systemd"}),
        ("rw,xattr,release_agent=/x,name=systemd", {"name=systemd"}),
        ("ro,noprefix,cpuset", {"cpuset"}),
        ("rw", set()),
    ],
)
def test_controllers_of(options: str, expected: set[str]) -> None:
    assert mountinfo.controllers_of(options) == expected


# -- detect ----------------------------------------------------------------------------------


def test_detect_unified(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert detect(tmp_path) is CgroupMode.UNIFIED


def test_detect_hybrid(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert detect(tmp_path) is CgroupMode.HYBRID


def test_detect_legacy(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "unified").mkdir()  # an empty dir, nothing mounted there
    assert detect(tmp_path) is CgroupMode.LEGACY


# -- factory ---------------------------------------------------------------------------------


def fake_v1_mountinfo(root: Path, hierarchies: dict[str, str], unified: bool = False) -> str:
    """mountinfo text for v1 hierarchies mounted at root/<dir> (dir → super options)."""
    lines = [f"31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755"]
    for i, (name, opts) in enumerate(hierarchies.items()):
        lines.append(f"{40 + i} 31 0:{50 + i} / {root / name} rw,relatime - cgroup cgroup {opts}")
    if unified:
        lines.append(f"99 31 0:99 / {root / 'unified'} rw,relatime - cgroup2 cgroup2 rw")
    return "\n".join(lines) + "\n"


def write_tree(base: Path, tree: dict[str, str]) -> None:
    for rel, content in tree.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def test_new_manager_v1_paths_and_mounts(tmp_path: Path) -> None:
    text = fake_v1_mountinfo(
        tmp_path,
        {"cpu,cpuacct": "rw,cpu,cpuacct", "memory": "rw,memory", "systemd": "rw,name=systemd"},
        unified=True,
    )
    mgr = new_manager("/pydocker/abc", root=tmp_path, mountinfo=text)
    assert isinstance(mgr, CgroupV1)
    assert isinstance(mgr, CgroupManager)
    assert not mgr.is_v2
    assert mgr.paths() == {
        "cpu": f"{tmp_path}/cpu,cpuacct/pydocker/abc",
        "cpuacct": f"{tmp_path}/cpu,cpuacct/pydocker/abc",
        "memory": f"{tmp_path}/memory/pydocker/abc",
        "name=systemd": f"{tmp_path}/systemd/pydocker/abc",
        "": f"{tmp_path}/unified/pydocker/abc",
    }
    assert mgr.mounts() == [
        ("cpu,cpuacct", f"{tmp_path}/cpu,cpuacct/pydocker/abc"),
        ("memory", f"{tmp_path}/memory/pydocker/abc"),
        ("systemd", f"{tmp_path}/systemd/pydocker/abc"),
    ]


def test_new_manager_this_machine_sample() -> None:
    # Only mountinfo is read (the sample), and /sys/fs/cgroup is only probed by detect().
    mgr = new_manager("pyrunc/x", mountinfo=THIS_MACHINE)
    assert mgr.paths()["memory"] == "/sys/fs/cgroup/memory/pyrunc/x"
    assert mgr.paths()["name=systemd"] == "/sys/fs/cgroup/systemd/pyrunc/x"
    assert [name for name, _ in mgr.mounts()] == [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "pids",
        "systemd",
    ]


def test_new_manager_relative_equals_absolute(tmp_path: Path) -> None:
    text = fake_v1_mountinfo(tmp_path, {"memory": "rw,memory"})
    a = new_manager("/a/b", root=tmp_path, mountinfo=text)
    b = new_manager("a//b/", root=tmp_path, mountinfo=text)
    assert a.paths() == b.paths()


@pytest.mark.parametrize("bad", ["", "/", "//", "/a/../../etc", "..", "a/\0"])
def test_new_manager_rejects_bad_paths(tmp_path: Path, bad: str) -> None:
    text = fake_v1_mountinfo(tmp_path, {"memory": "rw,memory"})
    with pytest.raises(ValueError):
        new_manager(bad, root=tmp_path, mountinfo=text)


def test_new_manager_without_hierarchies(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup v1 hierarchy"):
        new_manager("/x", root=tmp_path, mountinfo=THIS_MACHINE)


def test_new_manager_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    mgr = new_manager("/pydocker/abc", root=tmp_path, mountinfo=UNIFIED_HOST)
    assert isinstance(mgr, CgroupV2)
    assert mgr.is_v2
    assert mgr.paths() == {"": f"{tmp_path}/pydocker/abc"}
    assert mgr.mounts() == [("", f"{tmp_path}/pydocker/abc")]


def test_load_manager_round_trip_v1(tmp_path: Path) -> None:
    text = fake_v1_mountinfo(tmp_path, {"cpu,cpuacct": "rw,cpu,cpuacct", "pids": "rw,pids"})
    mgr = new_manager("/pydocker/abc", root=tmp_path, mountinfo=text)
    again = load_manager(mgr.paths(), root=tmp_path)
    assert isinstance(again, CgroupV1)
    assert again.paths() == mgr.paths()
    assert again.mounts() == mgr.mounts()


def test_load_manager_round_trip_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    mgr = new_manager("/pydocker/abc", root=tmp_path)
    again = load_manager(mgr.paths(), root=tmp_path)
    assert isinstance(again, CgroupV2)
    assert again.paths() == mgr.paths()


@pytest.mark.parametrize(
    "paths",
    [
        {},
        {"memory": "/etc/passwd"},
        {"memory": "relative/path"},
        {"memory": "{root}/memory"},  # a hierarchy root
        {"memory": "{root}/memory/../../x"},
        {"": "{root}/unified/x"},  # only the cgroup2 key, on a v1 host
    ],
)
def test_load_manager_rejects_foreign_paths(tmp_path: Path, paths: dict[str, str]) -> None:
    paths = {k: v.format(root=tmp_path) for k, v in paths.items()}
    with pytest.raises(ValueError):
        load_manager(paths, root=tmp_path)


def test_load_manager_v1_paths_on_v2_host(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    with pytest.raises(ValueError, match="cgroup v1"):
        load_manager({"memory": f"{tmp_path}/memory/x"}, root=tmp_path)


# -- file helpers ----------------------------------------------------------------------------


class MemoryKernel:
    """The rule the v1 kernel enforces between the two memory limits: memsw >= limit."""

    def __init__(self, limit: int, memsw: int) -> None:
        self.values = {"limit": limit, "memsw": memsw}
        self.calls: list[tuple[str, int]] = []

    def write(self, path: Path, value: str) -> None:
        name = path.name
        new = dict(self.values, **{name: int(value)})
        self.calls.append((name, int(value)))
        if new["memsw"] < new["limit"]:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.values = new


limits = st.integers(min_value=1, max_value=1 << 40)


@given(
    old_limit=limits, old_extra=limits, new_limit=limits, new_extra=limits, swap_first=st.booleans()
)
def test_write_all_finds_the_order_for_memory_limits(
    old_limit: int, old_extra: int, new_limit: int, new_extra: int, swap_first: bool
) -> None:
    kernel = MemoryKernel(old_limit, old_limit + old_extra)
    target = {"limit": new_limit, "memsw": new_limit + new_extra}
    writes = [(Path("limit"), str(target["limit"])), (Path("memsw"), str(target["memsw"]))]
    if swap_first:
        writes.reverse()
    files.write_all(writes, writer=kernel.write)
    assert kernel.values == target
    assert len(kernel.calls) <= 3


def test_write_all_gives_up_without_progress() -> None:
    def refuse(path: Path, value: str) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    with pytest.raises(CgroupError, match="cannot write '5' to a: Invalid argument") as info:
        files.write_all([(Path("a"), "5"), (Path("b"), "6")], writer=refuse)
    assert info.value.errno == errno.EINVAL


def test_write_all_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no such file") as info:
        files.write_all([(tmp_path / "memory.max", "1")])
    assert info.value.errno == errno.ENOENT
    assert not (tmp_path / "memory.max").exists()


def test_remove_cgroup_dir_retries_ebusy(tmp_path: Path) -> None:
    target = tmp_path / "cg"
    target.mkdir()
    attempts = []

    def rmdir(path: Path) -> None:
        attempts.append(path)
        if len(attempts) < 3:
            raise OSError(errno.EBUSY, "Device or resource busy")
        path.rmdir()

    files.remove_cgroup_dir(target, rmdir=rmdir)
    assert len(attempts) == 3
    assert not target.exists()


def test_remove_cgroup_dir_gives_up(tmp_path: Path) -> None:
    def busy(path: Path) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    with pytest.raises(CgroupError, match="still busy") as info:
        files.remove_cgroup_dir(tmp_path, rmdir=busy, timeout=0.05)
    assert info.value.errno == errno.EBUSY


def test_remove_cgroup_dir_tolerates_gone(tmp_path: Path) -> None:
    files.remove_cgroup_dir(tmp_path / "never-existed")
    files.remove_cgroup_tree(tmp_path / "never-existed")


def test_remove_cgroup_tree_deepest_first(tmp_path: Path) -> None:
    (tmp_path / "c" / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "c" / "other").mkdir()
    removed: list[str] = []

    def rmdir(path: Path) -> None:
        removed.append(str(path.relative_to(tmp_path)))
        path.rmdir()

    files.remove_cgroup_tree(tmp_path / "c", rmdir=rmdir)
    assert removed.index("c/sub/deeper") < removed.index("c/sub") < removed.index("c")
    assert removed[-1] == "c"
    assert tmp_path.exists()


def test_parsers() -> None:
    assert files.parse_flat_keyed("a 1\nb max\nbad\nc x\n") == {"a": 1, "b": files.MAX_UINT64}
    assert files.parse_nested_keyed("8:0 rbytes=1 wbytes=2 junk\n") == {
        "8:0": {"rbytes": 1, "wbytes": 2}
    }
    assert files.parse_blkio_v1("8:0 Read 10\n8:0 Write 20\n8:16 5\nTotal 30\n") == [
        {"major": 8, "minor": 0, "op": "Read", "value": 10},
        {"major": 8, "minor": 0, "op": "Write", "value": 20},
        {"major": 8, "minor": 16, "op": "", "value": 5},
    ]


# -- the v1 manager over a fake tree ---------------------------------------------------------

V1_HIERARCHIES = {
    "cpu,cpuacct": "rw,cpu,cpuacct",
    "cpuset": "rw,cpuset",
    "memory": "rw,memory",
    "pids": "rw,pids",
    "freezer": "rw,freezer",
    "devices": "rw,devices",
    "blkio": "rw,blkio",
    "systemd": "rw,name=systemd",
}

LEAF_FILES = {
    "cpu,cpuacct": ["cgroup.procs", "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
    "cpuset": ["cgroup.procs", "cpuset.cpus", "cpuset.mems"],
    "memory": ["cgroup.procs", "memory.limit_in_bytes", "memory.swappiness"],
    "pids": ["cgroup.procs", "pids.max"],
    "freezer": ["cgroup.procs", "freezer.state"],
    "devices": ["cgroup.procs", "devices.allow", "devices.deny"],
    "blkio": ["cgroup.procs", "blkio.bfq.weight"],
    "systemd": ["cgroup.procs"],
}


@pytest.fixture
def v1_tree(tmp_path: Path) -> tuple[Path, str]:
    """A fake v1 root with the container's cgroup "pyrunc/c1" pre-populated, as the kernel
    would populate it on mkdir; cpuset values start empty, as they do for real."""
    tree: dict[str, str] = {"cpuset/cpuset.cpus": "0-3\n", "cpuset/cpuset.mems": "0\n"}
    tree["cpuset/pyrunc/cpuset.cpus"] = ""
    tree["cpuset/pyrunc/cpuset.mems"] = ""
    for hierarchy, names in LEAF_FILES.items():
        for name in names:
            tree[f"{hierarchy}/pyrunc/c1/{name}"] = ""
    write_tree(tmp_path, tree)
    return tmp_path, fake_v1_mountinfo(tmp_path, V1_HIERARCHIES)


def test_v1_apply_fills_cpuset_and_joins(v1_tree: tuple[Path, str]) -> None:
    root, text = v1_tree
    mgr = new_manager("/pyrunc/c1", root=root, mountinfo=text)
    mgr.apply(4242)
    for hierarchy in LEAF_FILES:
        assert (root / hierarchy / "pyrunc/c1/cgroup.procs").read_text() == "4242"
    for d in ("pyrunc", "pyrunc/c1"):
        assert (root / "cpuset" / d / "cpuset.cpus").read_text() == "0-3"
        assert (root / "cpuset" / d / "cpuset.mems").read_text() == "0"
    assert mgr.pids() == [4242]
    assert mgr.exists()


def test_v1_set_writes_files(v1_tree: tuple[Path, str]) -> None:
    root, text = v1_tree
    mgr = new_manager("/pyrunc/c1", root=root, mountinfo=text)
    mgr.apply(0)
    res = Resources.from_dict(
        {
            # No memory.memsw.limit_in_bytes in this tree: swap accounting is off, swap skipped.
            "memory": {"limit": 1 << 20, "swap": 2 << 20, "swappiness": 0},
            "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "1"},
            "pids": {"limit": -1},
            "blockIO": {"weight": 300},
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            ],
        }
    )
    mgr.set(res)
    read = lambda rel: (root / rel).read_text()  # noqa: E731
    assert read("memory/pyrunc/c1/memory.limit_in_bytes") == str(1 << 20)
    assert not (root / "memory/pyrunc/c1/memory.memsw.limit_in_bytes").exists()
    assert read("memory/pyrunc/c1/memory.swappiness") == "0"
    assert read("cpu,cpuacct/pyrunc/c1/cpu.shares") == "512"
    assert read("cpu,cpuacct/pyrunc/c1/cpu.cfs_quota_us") == "20000"
    assert read("cpu,cpuacct/pyrunc/c1/cpu.cfs_period_us") == "100000"
    assert read("cpuset/pyrunc/c1/cpuset.cpus") == "1"
    assert read("pids/pyrunc/c1/pids.max") == "max"
    # Only BFQ weights in this tree.
    assert read("blkio/pyrunc/c1/blkio.bfq.weight") == "300"
    assert read("devices/pyrunc/c1/devices.deny") == "a *:* rwm"
    assert read("devices/pyrunc/c1/devices.allow") == "c 1:3 rw"


def test_v1_set_needs_the_hierarchy(tmp_path: Path) -> None:
    text = fake_v1_mountinfo(tmp_path, {"memory": "rw,memory"})
    mgr = new_manager("/c", root=tmp_path, mountinfo=text)
    mgr.apply(0)
    with pytest.raises(CgroupError, match="'pids' controller, but no hierarchy"):
        mgr.set(Resources.from_dict({"pids": {"limit": 5}}))


def test_v1_set_before_apply(v1_tree: tuple[Path, str]) -> None:
    root, text = v1_tree
    mgr = new_manager("/pyrunc/other", root=root, mountinfo=text)
    with pytest.raises(CgroupError, match="does not exist"):
        mgr.set(Resources.from_dict({"pids": {"limit": 5}}))


def test_v1_unified_is_an_error(v1_tree: tuple[Path, str]) -> None:
    root, text = v1_tree
    mgr = new_manager("/pyrunc/c1", root=root, mountinfo=text)
    with pytest.raises(CgroupError, match="unified"):
        mgr.set(Resources.from_dict({"unified": {"memory.high": "1"}}))


def test_v1_freeze(v1_tree: tuple[Path, str]) -> None:
    root, text = v1_tree
    mgr = new_manager("/pyrunc/c1", root=root, mountinfo=text)
    mgr.freeze(True)
    assert (root / "freezer/pyrunc/c1/freezer.state").read_text() == "FROZEN"
    assert mgr.is_frozen()
    mgr.freeze(False)
    assert (root / "freezer/pyrunc/c1/freezer.state").read_text() == "THAWED"
    assert not mgr.is_frozen()


def test_v1_freeze_times_out_and_thaws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "freezer/c").mkdir(parents=True)
    state = tmp_path / "freezer/c/freezer.state"
    state.write_text("THAWED")
    mgr = CgroupV1(tmp_path, {"freezer": tmp_path / "freezer/c"}, freeze_timeout=0.6)
    writes: list[str] = []
    real_write = files.write_value

    def stuck(path: Path, value: str) -> None:
        # The kernel stays FREEZING: the file never reads back FROZEN.
        writes.append(value)
        real_write(path, "FREEZING" if value == "FROZEN" else value)

    monkeypatch.setattr(files, "write_value", stuck)
    with pytest.raises(CgroupError, match="did not reach FROZEN"):
        mgr.freeze(True)
    assert writes[0] == "FROZEN"
    assert writes.count("FROZEN") > 1  # asked again while waiting
    assert writes[-1] == "THAWED"
    assert state.read_text() == "THAWED"


def test_v1_pids_include_descendants(v1_tree: tuple[Path, str]) -> None:
    root, text = v1_tree
    write_tree(
        root, {"pids/pyrunc/c1/cgroup.procs": "1\n2\n", "pids/pyrunc/c1/sub/cgroup.procs": "3\n"}
    )
    write_tree(root, {"memory/pyrunc/c1/cgroup.procs": "2\n4\n"})
    mgr = new_manager("/pyrunc/c1", root=root, mountinfo=text)
    assert mgr.pids() == [1, 2, 3, 4]


def test_v1_destroy_removes_only_its_own_dirs(tmp_path: Path) -> None:
    text = fake_v1_mountinfo(tmp_path, {"cpu,cpuacct": "rw,cpu,cpuacct", "memory": "rw,memory"})
    mgr = new_manager("/pyrunc/c1", root=tmp_path, mountinfo=text)
    mgr.apply(0)
    (tmp_path / "memory/pyrunc/c1/nested").mkdir()
    assert mgr.exists()
    mgr.destroy()
    assert not mgr.exists()
    assert (tmp_path / "memory/pyrunc").is_dir()
    assert (tmp_path / "cpu,cpuacct/pyrunc").is_dir()
    mgr.destroy()  # already gone: fine


def test_v1_stats_and_oom(tmp_path: Path) -> None:
    base = "pyrunc/c1"
    write_tree(
        tmp_path,
        {
            f"cpuacct/{base}/cpuacct.usage": "3000\n",
            f"cpuacct/{base}/cpuacct.usage_percpu": "1000 2000 \n",
            f"cpuacct/{base}/cpuacct.usage_all": "cpu user system\n0 600 400\n1 1500 500\n",
            f"cpuacct/{base}/cpuacct.usage_user": "2100\n",
            f"cpuacct/{base}/cpuacct.usage_sys": "900\n",
            f"cpu/{base}/cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 777\n",
            f"memory/{base}/memory.usage_in_bytes": "4096\n",
            f"memory/{base}/memory.limit_in_bytes": "9223372036854771712\n",
            f"memory/{base}/memory.max_usage_in_bytes": "8192\n",
            f"memory/{base}/memory.failcnt": "0\n",
            f"memory/{base}/memory.stat": "cache 100\nrss 200\ntotal_cache 150\n",
            f"memory/{base}/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            f"pids/{base}/pids.current": "2\n",
            f"pids/{base}/pids.max": "max\n",
            f"blkio/{base}/blkio.throttle.io_service_bytes_recursive": "254:0 Read 5\nTotal 5\n",
            f"hugetlb/{base}/hugetlb.2MB.limit_in_bytes": "0\n",
            f"hugetlb/{base}/hugetlb.2MB.usage_in_bytes": "2097152\n",
            f"hugetlb/{base}/hugetlb.2MB.failcnt": "1\n",
        },
    )
    text = fake_v1_mountinfo(
        tmp_path,
        {n: f"rw,{n}" for n in ("cpu", "cpuacct", "memory", "pids", "blkio", "hugetlb")},
    )
    mgr = new_manager(base, root=tmp_path, mountinfo=text)
    stats = mgr.stats()
    assert stats["cpu"] == {
        "usage": {
            "total": 3000,
            "percpu": [1000, 2000],
            "percpu_kernel": [400, 500],
            "percpu_user": [600, 1500],
            "kernel": 900,
            "user": 2100,
        },
        "throttling": {"periods": 10, "throttledPeriods": 2, "throttledTime": 777},
    }
    mem = stats["memory"]
    assert mem["usage"] == {
        "limit": 9223372036854771712,
        "usage": 4096,
        "max": 8192,
        "failcnt": 0,
    }
    assert mem["cache"] == 150
    assert mem["raw"]["rss"] == 200
    assert "swap" not in mem
    assert stats["pids"] == {"current": 2, "limit": 0}
    assert stats["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 254, "minor": 0, "op": "Read", "value": 5}]
    }
    assert stats["hugetlb"] == {"2MB": {"usage": 2097152, "max": 0, "failcnt": 1}}
    assert mgr.oom_kill_count() == 3


# -- what each pyrunc command imports, and str paths ----------------------------------------

REPO = Path(__file__).resolve().parents[2]

# Costly for an interpreter that lives for one command; none is needed to create, load,
# freeze or destroy a cgroup.
HEAVY = {"dataclasses", "inspect", "logging", "pathlib", "fnmatch", "urllib.parse"}


def modules_added(code: str) -> set[str]:
    """The modules `code` imports beyond `import oci_runtime`, in a fresh -S interpreter."""
    program = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "import oci_runtime\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", program], capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_a_v1_load_imports_little(tmp_path: Path) -> None:
    # start, state, kill, pause, delete: load from state.json, look, remove.
    # Empty dirs, so that rmdir works outside cgroupfs; missing files read as absent.
    (tmp_path / "memory/c").mkdir(parents=True)
    (tmp_path / "freezer/c").mkdir(parents=True)
    paths = {"memory": f"{tmp_path}/memory/c", "freezer": f"{tmp_path}/freezer/c"}
    added = modules_added(
        "from oci_runtime import cgroups\n"
        f"m = cgroups.load_manager({paths!r}, root={str(tmp_path)!r})\n"
        "assert not m.is_frozen() and m.pids() == []; m.destroy(); assert not m.exists()\n"
    )
    assert not added & HEAVY
    # Nor the parts only create, update, events or a v2 host need.
    assert not added & {"enum", "typing", "re"}
    lazy = {"resources", "mountinfo", "stats", "v2", "interface"}
    assert not added & {f"oci_runtime.cgroups.{name}" for name in lazy}


def test_create_imports_no_heavy_module(v1_tree: tuple[Path, str]) -> None:
    root, text = v1_tree
    added = modules_added(
        "from oci_runtime import cgroups\n"
        "from oci_runtime.cgroups.resources import Resources\n"
        f"m = cgroups.new_manager('/pyrunc/c1', root={str(root)!r}, mountinfo={text!r})\n"
        "m.apply(0)\n"
        "m.set(Resources.from_dict({'pids': {'limit': 5}, 'memory': {'limit': 1 << 20}}))\n"
        "m.paths(); m.mounts()\n"
    )
    assert not added & HEAVY
    assert "oci_runtime.cgroups.stats" not in added


def test_lazy_exports() -> None:
    import oci_runtime.cgroups as cg

    assert isinstance(cg.DEFAULT_ROOT, Path) and str(cg.DEFAULT_ROOT) == "/sys/fs/cgroup"
    assert cg.CgroupMode.UNIFIED.value == "unified"
    assert cg.Resources.from_dict({}) == cg.Resources()
    assert cg.CgroupV2 is CgroupV2
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = cg.no_such_name
    for name in cg.__all__:
        assert getattr(cg, name) is not None


def test_managers_take_path_and_give_str(tmp_path: Path) -> None:
    mgr = CgroupV1(tmp_path, {"memory": tmp_path / "memory" / "c", "": tmp_path / "unified/c"})
    assert mgr.paths() == {"memory": f"{tmp_path}/memory/c", "": f"{tmp_path}/unified/c"}
    assert mgr.mounts() == [("memory", f"{tmp_path}/memory/c")]
    v2 = CgroupV2(tmp_path, tmp_path / "c")
    assert v2.paths() == {"": f"{tmp_path}/c"}


def test_warnings_go_to_the_callback_or_stderr(
    v1_tree: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, text = v1_tree
    swap = Resources.from_dict({"memory": {"limit": 1 << 20, "swap": 2 << 20}})
    said: list[str] = []
    new_manager("/pyrunc/c1", root=root, mountinfo=text, warn=said.append).set(swap)
    assert len(said) == 1 and "swap accounting is off" in said[0]
    assert capsys.readouterr().err == ""
    new_manager("/pyrunc/c1", root=root, mountinfo=text).set(swap)
    err = capsys.readouterr().err
    assert err.startswith("pyrunc: warning: swap accounting is off")
    assert err.count("\n") == 1


def test_cgroup_mounts_is_parse_mountinfo_filtered() -> None:
    tricky = (
        # A non-cgroup mount whose mount point and source spell " - cgroup" escaped.
        "50 31 0:50 / /mnt/x\\040-\\040cgroup rw - tmpfs a\\040-\\040cgroup rw\n"
        "51 31 0:51 / /sys/fs/cgroup/rdma rw,relatime - cgroup cgroup rw,rdma\n"
        "52 31 0:52 / /mnt/cgroup2 rw,relatime shared:1 - cgroup2 cgroup2 rw\n"
    )
    for text in (THIS_MACHINE, SYSTEMD_HYBRID, UNIFIED_HOST, tricky):
        expected = [m for m in mountinfo.parse_mountinfo(text) if m.fstype in ("cgroup", "cgroup2")]
        assert mountinfo.cgroup_mounts(text) == expected
    assert mountinfo.parse_mountinfo(tricky)[0].mountpoint == "/mnt/x - cgroup"


def test_make_dirs(tmp_path: Path) -> None:
    target = f"{tmp_path}/a/b/c"
    assert files.make_dirs(target)
    assert os.path.isdir(target)
    assert not files.make_dirs(target)
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        files.make_dirs(f"{tmp_path}/file")
    with pytest.raises(NotADirectoryError):
        files.make_dirs(f"{tmp_path}/file/below")


@pytest.mark.parametrize(
    ("path", "root", "rel"),
    [
        ("/sys/fs/cgroup/memory/x", "/sys/fs/cgroup", "memory/x"),
        ("/sys/fs/cgroup", "/sys/fs/cgroup", ""),
        ("/a/b", "/", "a/b"),
        ("/sys/fs/cgroupx/y", "/sys/fs/cgroup", None),
        ("/etc", "/sys/fs/cgroup", None),
    ],
)
def test_relative_to(path: str, root: str, rel: str | None) -> None:
    if rel is None:
        with pytest.raises(ValueError):
            files.relative_to(path, root)
    else:
        assert files.relative_to(path, root) == rel


def test_read_text_reads_past_one_buffer(tmp_path: Path) -> None:
    pids = [str(n) for n in range(100000, 130000)]
    (tmp_path / "cgroup.procs").write_text("\n".join(pids) + "\n")
    assert files.read_pids(tmp_path) == {int(p) for p in pids}
    assert files.read_text(tmp_path / "cgroup.procs") == "\n".join(pids)


def test_cgroup_dirs_bottom_up_keeps_the_kind_of_path(tmp_path: Path) -> None:
    (tmp_path / "c/sub/deeper").mkdir(parents=True)
    (tmp_path / "c/file").write_text("")
    as_str = files.cgroup_dirs_bottom_up(f"{tmp_path}/c")
    assert as_str == [str(p) for p in files.cgroup_dirs_bottom_up(tmp_path / "c")]
    assert all(isinstance(p, Path) for p in files.cgroup_dirs_bottom_up(tmp_path / "c"))
    assert as_str[-1] == f"{tmp_path}/c"
    assert as_str.index(f"{tmp_path}/c/sub/deeper") < as_str.index(f"{tmp_path}/c/sub")
    assert files.cgroup_dirs_bottom_up(f"{tmp_path}/c/file") == []
    assert files.cgroup_dirs_bottom_up(f"{tmp_path}/nothing") == []
