"""cgroup v2: the conversions from v1-style OCI values, Resources → files, and the manager
end to end over a fake unified tree in tmp_path (this project's machines have no v2 host)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci_runtime.cgroups import CgroupError, CgroupV2, Resources, load_manager, new_manager
from oci_runtime.cgroups.v2 import (
    blkio_weight_to_io_weight,
    convert_swap,
    resource_files,
    shares_to_weight,
)

# -- conversions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (1024, 39), (512, 20), (262144, 10000), (0, 1), (1, 1), (10**9, 10000)],
)
def test_shares_to_weight_examples(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=0, max_value=2**64))
def test_shares_to_weight_range_and_monotonic(a: int, b: int) -> None:
    wa, wb = shares_to_weight(a), shares_to_weight(b)
    assert 1 <= wa <= 10000
    assert 1 <= wb <= 10000
    if a <= b:
        assert wa <= wb


@given(st.integers(min_value=2, max_value=262143))
def test_shares_to_weight_strictly_grows_often_enough(shares: int) -> None:
    # 262142 steps of shares onto 9999 steps of weight: at most 27 shares per weight step.
    assert shares_to_weight(shares + 27) > shares_to_weight(shares)


@pytest.mark.parametrize(("blkio", "io"), [(10, 1), (1000, 10000), (500, 4950), (5, 1)])
def test_blkio_weight_examples(blkio: int, io: int) -> None:
    assert blkio_weight_to_io_weight(blkio) == io


@given(st.integers(0, 70000), st.integers(0, 70000))
def test_blkio_weight_range_and_monotonic(a: int, b: int) -> None:
    wa, wb = blkio_weight_to_io_weight(a), blkio_weight_to_io_weight(b)
    assert 1 <= wa <= 10000
    if a <= b:
        assert wa <= wb


@pytest.mark.parametrize(
    ("swap", "limit", "result"),
    [
        (0, 0, 0),
        (0, 100, 0),
        (-1, 100, -1),
        (-1, -1, -1),
        (0, -1, -1),  # unlimited memory, swap not given: both unlimited
        (300, 100, 200),
        (100, 100, 0),
    ],
)
def test_convert_swap(swap: int, limit: int, result: int) -> None:
    assert convert_swap(swap, limit) == result


@pytest.mark.parametrize(
    ("swap", "limit", "message"),
    [
        (200, 0, "needs a memory limit"),
        (200, -1, "needs a memory limit"),
        (50, 100, "is below the memory limit"),
        (200, -5, "invalid value"),
    ],
)
def test_convert_swap_errors(swap: int, limit: int, message: str) -> None:
    with pytest.raises(CgroupError, match=message):
        convert_swap(swap, limit)


@given(st.integers(1, 2**62), st.integers(0, 2**62))
def test_convert_swap_is_the_difference(limit: int, extra: int) -> None:
    assert convert_swap(limit + extra, limit) == extra


# -- resource_files --------------------------------------------------------------------------


def files_for(doc: dict, *, bfq: bool = False) -> dict[str, str]:
    return resource_files(Resources.from_dict(doc), bfq=bfq)


def test_nothing_given_writes_nothing() -> None:
    assert files_for({}) == {}
    assert files_for({"memory": {}, "cpu": {}, "blockIO": {}, "devices": []}) == {}


def test_memory() -> None:
    assert files_for({"memory": {"limit": 1 << 30, "swap": 3 << 30, "reservation": 1 << 29}}) == {
        "memory.max": str(1 << 30),
        "memory.low": str(1 << 29),
        "memory.swap.max": str(2 << 30),
    }


def test_memory_unlimited() -> None:
    assert files_for({"memory": {"limit": -1}}) == {"memory.max": "max", "memory.swap.max": "max"}
    assert files_for({"memory": {"limit": 100, "swap": -1}}) == {
        "memory.max": "100",
        "memory.swap.max": "max",
    }
    assert files_for({"memory": {"reservation": -1}}) == {"memory.low": "max"}


def test_memory_v1_only_fields_are_ignored() -> None:
    doc = {"memory": {"kernel": 5, "kernelTCP": 5, "swappiness": 10, "disableOOMKiller": True}}
    assert files_for(doc) == {}


def test_cpu() -> None:
    doc = {
        "cpu": {
            "shares": 1024,
            "quota": 50000,
            "period": 100000,
            "burst": 0,
            "idle": 1,
            "cpus": "0-3",
            "mems": "0",
        }
    }
    assert files_for(doc) == {
        "cpu.weight": "39",
        "cpu.max": "50000 100000",
        "cpu.max.burst": "0",
        "cpu.idle": "1",
        "cpuset.cpus": "0-3",
        "cpuset.mems": "0",
    }


@pytest.mark.parametrize(
    ("cpu", "value"),
    [
        ({"quota": -1, "period": 100000}, "max 100000"),
        ({"quota": -1}, "max"),
        ({"period": 250000}, "max 250000"),
        ({"quota": 20000}, "20000"),
    ],
)
def test_cpu_max(cpu: dict, value: str) -> None:
    assert files_for({"cpu": cpu}) == {"cpu.max": value}


def test_realtime_is_an_error() -> None:
    with pytest.raises(CgroupError, match="not supported on cgroup v2"):
        files_for({"cpu": {"realtimeRuntime": 1000}})
    assert files_for({"cpu": {"realtimeRuntime": 0, "realtimePeriod": 0}}) == {}


@pytest.mark.parametrize(("limit", "value"), [(64, "64"), (0, "max"), (-1, "max")])
def test_pids(limit: int, value: str) -> None:
    assert files_for({"pids": {"limit": limit}}) == {"pids.max": value}


BLOCK_IO = {
    "blockIO": {
        "weight": 1000,
        "leafWeight": 500,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 10}, {"major": 8, "minor": 1}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2}],
        "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 3}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 4}],
    }
}


def test_io() -> None:
    assert files_for(BLOCK_IO) == {
        "io.weight": "default 10000\n8:0 1",
        "io.max": "8:0 rbps=1048576 wbps=2 wiops=4\n8:16 riops=3",
    }


def test_io_bfq_keeps_v1_weights() -> None:
    assert files_for(BLOCK_IO, bfq=True)["io.bfq.weight"] == "default 1000\n8:0 10"


def test_hugetlb() -> None:
    assert files_for({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}) == {
        "hugetlb.2MB.max": "4194304"
    }


def test_unified_is_written_last_and_wins() -> None:
    got = files_for(
        {
            "memory": {"limit": 100},
            "pids": {"limit": 5},
            "unified": {"memory.max": "200", "memory.high": "150"},
        }
    )
    assert list(got.items()) == [
        ("pids.max", "5"),
        ("memory.max", "200"),
        ("memory.high", "150"),
    ]


def test_devices_are_skipped() -> None:
    doc = {"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c"}]}
    assert files_for(doc) == {}


# -- the manager over a fake unified tree ----------------------------------------------------

CONTROLLERS = "cpuset cpu io memory hugetlb pids"
LEAF_FILES = [
    "cgroup.procs",
    "cgroup.freeze",
    "cgroup.events",
    "cgroup.controllers",
    "cgroup.subtree_control",
    "memory.max",
    "memory.low",
    "memory.swap.max",
    "cpu.weight",
    "cpu.max",
    "pids.max",
    "io.weight",
    "io.max",
    "memory.high",
]


@pytest.fixture
def v2_root(tmp_path: Path) -> Path:
    """A fake unified root, with "pydocker" as an existing parent and "pydocker/c1" as the
    container's cgroup, populated as the kernel populates a new cgroup."""
    (tmp_path / "cgroup.controllers").write_text(CONTROLLERS + "\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    parent = tmp_path / "pydocker"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpu memory pids\n")
    (parent / "cgroup.subtree_control").write_text("memory\n")
    leaf = parent / "c1"
    leaf.mkdir()
    for name in LEAF_FILES:
        (leaf / name).write_text("")
    (leaf / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    return tmp_path


def test_apply_enables_controllers_and_joins(v2_root: Path) -> None:
    mgr = new_manager("/pydocker/c1", root=v2_root)
    assert isinstance(mgr, CgroupV2)
    mgr.apply(4321)
    assert (v2_root / "pydocker/c1/cgroup.procs").read_text() == "4321"
    assert (v2_root / "cgroup.subtree_control").read_text() == (
        "+cpuset +cpu +io +memory +hugetlb +pids"
    )
    # Only what was not enabled yet.
    assert (v2_root / "pydocker/cgroup.subtree_control").read_text() == "+cpu +pids"
    assert mgr.pids() == [4321]
    assert mgr.exists()


def test_apply_creates_missing_parents(v2_root: Path) -> None:
    mgr = new_manager("/a/b/c", root=v2_root)
    mgr.apply(0)
    assert (v2_root / "a/b/c").is_dir()
    assert mgr.exists()


def test_set_writes_files(v2_root: Path) -> None:
    mgr = new_manager("/pydocker/c1", root=v2_root)
    mgr.apply(1)
    mgr.set(
        Resources.from_dict(
            {
                "memory": {"limit": 1 << 20, "swap": 3 << 20},
                "cpu": {"shares": 2048, "quota": -1, "period": 100000},
                "pids": {"limit": 0},
                "blockIO": {
                    "weight": 100,
                    "throttleReadBpsDevice": [
                        {"major": 8, "minor": 0, "rate": 5},
                        {"major": 9, "minor": 0, "rate": 6},
                    ],
                },
                "unified": {"memory.high": "900000"},
                "devices": [{"allow": False, "access": "rwm"}],
            }
        )
    )
    leaf = v2_root / "pydocker/c1"
    assert (leaf / "memory.max").read_text() == str(1 << 20)
    assert (leaf / "memory.swap.max").read_text() == str(2 << 20)
    assert (leaf / "cpu.weight").read_text() == "79"
    assert (leaf / "cpu.max").read_text() == "max 100000"
    assert (leaf / "pids.max").read_text() == "max"
    assert (leaf / "io.weight").read_text() == "default 910"
    # One write per device: the last one stays in a plain file.
    assert (leaf / "io.max").read_text() == "9:0 rbps=6"
    assert (leaf / "memory.high").read_text() == "900000"


def test_set_without_swap_accounting(v2_root: Path) -> None:
    leaf = v2_root / "pydocker/c1"
    (leaf / "memory.swap.max").unlink()
    mgr = new_manager("/pydocker/c1", root=v2_root)
    mgr.set(Resources.from_dict({"memory": {"limit": 100, "swap": 200}}))
    assert (leaf / "memory.max").read_text() == "100"
    assert not (leaf / "memory.swap.max").exists()


def test_set_uses_bfq_when_that_is_all_there_is(v2_root: Path) -> None:
    leaf = v2_root / "pydocker/c1"
    (leaf / "io.weight").unlink()
    (leaf / "io.bfq.weight").write_text("")
    new_manager("/pydocker/c1", root=v2_root).set(Resources.from_dict({"blockIO": {"weight": 300}}))
    assert (leaf / "io.bfq.weight").read_text() == "default 300"


def test_set_missing_controller_file(v2_root: Path) -> None:
    mgr = new_manager("/pydocker/c1", root=v2_root)
    with pytest.raises(CgroupError, match=r"hugetlb\.2MB\.max: no such file"):
        mgr.set(Resources.from_dict({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}))


def test_set_before_apply(v2_root: Path) -> None:
    mgr = new_manager("/pydocker/other", root=v2_root)
    with pytest.raises(CgroupError, match="does not exist"):
        mgr.set(Resources.from_dict({"pids": {"limit": 3}}))
    mgr.set(Resources())  # nothing to write: fine


def test_freeze_and_thaw(v2_root: Path) -> None:
    leaf = v2_root / "pydocker/c1"
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    mgr = load_manager({"": str(leaf)}, root=v2_root)
    mgr.freeze(True)
    assert (leaf / "cgroup.freeze").read_text() == "1"
    assert mgr.is_frozen()
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    mgr.freeze(False)
    assert (leaf / "cgroup.freeze").read_text() == "0"
    assert not mgr.is_frozen()


def test_freeze_waits_for_the_kernel(v2_root: Path) -> None:
    leaf = v2_root / "pydocker/c1"
    mgr = new_manager("/pydocker/c1", root=v2_root)

    def kernel_catches_up() -> None:
        time.sleep(0.05)
        (leaf / "cgroup.events").write_text("populated 1\nfrozen 1\n")

    t = threading.Thread(target=kernel_catches_up)
    t.start()
    try:
        started = time.monotonic()
        mgr.freeze(True)
        assert time.monotonic() - started >= 0.04
    finally:
        t.join()


def test_freeze_timeout_thaws_again(v2_root: Path) -> None:
    leaf = v2_root / "pydocker/c1"
    mgr = CgroupV2(v2_root, leaf, freeze_timeout=0.05)
    with pytest.raises(CgroupError, match="did not show frozen 1"):
        mgr.freeze(True)
    assert (leaf / "cgroup.freeze").read_text() == "0"


def test_pids_include_descendants(v2_root: Path) -> None:
    leaf = v2_root / "pydocker/c1"
    (leaf / "cgroup.procs").write_text("10\n11\n")
    (leaf / "sub").mkdir()
    (leaf / "sub/cgroup.procs").write_text("12\n")
    assert new_manager("/pydocker/c1", root=v2_root).pids() == [10, 11, 12]


def test_destroy_removes_own_dirs_only(v2_root: Path) -> None:
    mgr = new_manager("/pydocker/c2", root=v2_root)
    mgr.apply(0)
    (v2_root / "pydocker/c2/nested").mkdir()
    mgr.destroy()
    assert not mgr.exists()
    assert (v2_root / "pydocker").is_dir()
    mgr.destroy()


def test_stats(v2_root: Path) -> None:
    leaf = v2_root / "pydocker/c1"
    contents = {
        "cpu.stat": "usage_usec 100\nuser_usec 60\nsystem_usec 40\n"
        "nr_periods 5\nnr_throttled 1\nthrottled_usec 7\n",
        "memory.current": "4096\n",
        "memory.max": "max\n",
        "memory.peak": "8192\n",
        "memory.stat": "anon 1000\nfile 3000\n",
        "memory.events": "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
        "memory.swap.current": "100\n",
        "memory.swap.max": "max\n",
        "pids.current": "3\n",
        "pids.max": "100\n",
        "io.stat": "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        "hugetlb.2MB.max": "max\n",
        "hugetlb.2MB.current": "0\n",
        "hugetlb.2MB.events": "max 4\n",
    }
    for name, text in contents.items():
        (leaf / name).write_text(text)
    mgr = new_manager("/pydocker/c1", root=v2_root)
    stats = mgr.stats()
    assert stats["cpu"] == {
        "usage": {"total": 100000, "kernel": 40000, "user": 60000},
        "throttling": {"periods": 5, "throttledPeriods": 1, "throttledTime": 7000},
    }
    mem = stats["memory"]
    assert mem["usage"] == {"limit": 2**64 - 1, "usage": 4096, "max": 8192, "failcnt": 2}
    assert mem["swap"]["usage"] == 4196  # memory + swap, as v1 reports it
    assert mem["swap"]["limit"] == 2**64 - 1
    assert mem["cache"] == 3000
    assert mem["raw"] == {"anon": 1000, "file": 3000}
    assert stats["pids"] == {"current": 3, "limit": 100}
    assert stats["blkio"] == {
        "ioServiceBytesRecursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 10},
            {"major": 8, "minor": 0, "op": "Write", "value": 20},
        ],
        "ioServicedRecursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 1},
            {"major": 8, "minor": 0, "op": "Write", "value": 2},
        ],
    }
    assert stats["hugetlb"] == {"2MB": {"usage": 0, "failcnt": 4}}
    assert mgr.oom_kill_count() == 1


def test_swap_stats_add_up_limits(v2_root: Path) -> None:
    leaf = v2_root / "pydocker/c1"
    for name, text in {
        "memory.current": "10",
        "memory.max": "1000",
        "memory.swap.current": "5",
        "memory.swap.max": "500",
    }.items():
        (leaf / name).write_text(text)
    swap = new_manager("/pydocker/c1", root=v2_root).stats()["memory"]["swap"]
    assert swap["limit"] == 1500
    assert swap["usage"] == 15
