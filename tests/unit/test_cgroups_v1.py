"""cgroup v1: Resources → file writes, without a filesystem."""

from __future__ import annotations

import pytest

from oci_runtime.cgroups import CgroupError
from oci_runtime.cgroups.resources import Resources
from oci_runtime.cgroups.v1 import device_rule_line, device_writes, resource_files


def files_for(doc: dict) -> dict[tuple[str, str], str]:
    return resource_files(Resources.from_dict(doc))


def test_nothing_given_writes_nothing() -> None:
    assert files_for({}) == {}
    assert files_for({"memory": {}, "cpu": {}, "pids": {}, "blockIO": {}}) == {}


def test_memory() -> None:
    got = files_for(
        {
            "memory": {
                "limit": 104857600,
                "swap": 209715200,
                "reservation": 52428800,
                "kernel": 1,  # ignored: kernels refuse kernel memory limits nowadays
                "kernelTCP": 1048576,
                "swappiness": 0,
                "disableOOMKiller": True,
            }
        }
    )
    assert got == {
        ("memory", "memory.limit_in_bytes"): "104857600",
        ("memory", "memory.memsw.limit_in_bytes"): "209715200",
        ("memory", "memory.soft_limit_in_bytes"): "52428800",
        ("memory", "memory.kmem.tcp.limit_in_bytes"): "1048576",
        ("memory", "memory.swappiness"): "0",
        ("memory", "memory.oom_control"): "1",
    }


def test_memory_unlimited_and_unset() -> None:
    assert files_for({"memory": {"limit": -1, "swap": -1}}) == {
        ("memory", "memory.limit_in_bytes"): "-1",
        ("memory", "memory.memsw.limit_in_bytes"): "-1",
    }
    # 0 means "not set", as in runc.
    assert files_for({"memory": {"limit": 0, "swap": 0, "reservation": 0}}) == {}
    assert files_for({"memory": {"disableOOMKiller": False}}) == {
        ("memory", "memory.oom_control"): "0"
    }


def test_cpu() -> None:
    got = files_for(
        {
            "cpu": {
                "shares": 512,
                "quota": 50000,
                "period": 100000,
                "burst": 1000,
                "realtimeRuntime": 950000,
                "realtimePeriod": 1000000,
                "cpus": "0-1",
                "mems": "0",
                "idle": 1,
            }
        }
    )
    assert got == {
        ("cpu", "cpu.rt_period_us"): "1000000",
        ("cpu", "cpu.rt_runtime_us"): "950000",
        ("cpu", "cpu.shares"): "512",
        ("cpu", "cpu.cfs_period_us"): "100000",
        ("cpu", "cpu.cfs_quota_us"): "50000",
        ("cpu", "cpu.cfs_burst_us"): "1000",
        ("cpu", "cpu.idle"): "1",
        ("cpuset", "cpuset.cpus"): "0-1",
        ("cpuset", "cpuset.mems"): "0",
    }


def test_cpu_unlimited_quota_and_empty_cpuset() -> None:
    assert files_for({"cpu": {"quota": -1, "cpus": "", "mems": ""}}) == {
        ("cpu", "cpu.cfs_quota_us"): "-1"
    }


@pytest.mark.parametrize(("limit", "value"), [(100, "100"), (1, "1"), (0, "max"), (-1, "max")])
def test_pids(limit: int, value: str) -> None:
    assert files_for({"pids": {"limit": limit}}) == {("pids", "pids.max"): value}


def test_blkio() -> None:
    got = files_for(
        {
            "blockIO": {
                "weight": 500,
                "leafWeight": 300,
                "weightDevice": [
                    {"major": 8, "minor": 0, "weight": 600, "leafWeight": 200},
                    {"major": 8, "minor": 16, "weight": 700},
                ],
                "throttleReadBpsDevice": [
                    {"major": 8, "minor": 0, "rate": 1048576},
                    {"major": 8, "minor": 16, "rate": 2097152},
                ],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 3}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 4}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 5}],
            }
        }
    )
    assert got == {
        ("blkio", "blkio.weight"): "500",
        ("blkio", "blkio.leaf_weight"): "300",
        ("blkio", "blkio.weight_device"): "8:0 600\n8:16 700",
        ("blkio", "blkio.leaf_weight_device"): "8:0 200",
        ("blkio", "blkio.throttle.read_bps_device"): "8:0 1048576\n8:16 2097152",
        ("blkio", "blkio.throttle.write_bps_device"): "8:0 3",
        ("blkio", "blkio.throttle.read_iops_device"): "8:0 4",
        ("blkio", "blkio.throttle.write_iops_device"): "8:0 5",
    }


def test_hugetlb() -> None:
    got = files_for(
        {
            "hugepageLimits": [
                {"pageSize": "2MB", "limit": 8388608},
                {"pageSize": "1GB", "limit": 0},
            ]
        }
    )
    assert got == {
        ("hugetlb", "hugetlb.2MB.limit_in_bytes"): "8388608",
        ("hugetlb", "hugetlb.1GB.limit_in_bytes"): "0",
    }


def test_unified_is_refused() -> None:
    with pytest.raises(CgroupError, match=r"^linux.resources.unified: only supported on cgroup v2"):
        files_for({"unified": {"memory.high": "1"}})
    assert files_for({"unified": {}}) == {}


def test_network_is_ignored() -> None:
    assert files_for({"network": {"classID": 5}}) == {}


@pytest.mark.parametrize(
    ("rule", "line"),
    [
        ({"allow": False, "access": "rwm"}, "a *:* rwm"),
        ({"allow": False}, "a *:* rwm"),
        ({"allow": True, "type": "a", "major": 1, "minor": 2, "access": "r"}, "a *:* r"),
        ({"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}, "c 1:3 rwm"),
        ({"allow": True, "type": "b", "major": 8, "access": "r"}, "b 8:* r"),
        ({"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"}, "c *:* m"),
        ({"allow": True, "type": "c", "minor": 0}, "c *:0 rwm"),
        ({"allow": True, "type": "u", "major": 5, "minor": 1}, "c 5:1 rwm"),
        ({"allow": True, "type": "p"}, None),
    ],
)
def test_device_rule_line(rule: dict, line: str | None) -> None:
    res = Resources.from_dict({"devices": [rule]})
    assert res.devices is not None
    assert device_rule_line(res.devices[0]) == line


def test_device_writes_keep_the_spec_order() -> None:
    res = Resources.from_dict(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "p"},
                {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
                {"allow": True, "type": "c", "major": 136, "access": "rwm"},
            ]
        }
    )
    assert device_writes(res.devices) == [
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.deny", "c 1:3 w"),
        ("devices.allow", "c 136:* rwm"),
    ]
    assert device_writes(None) == []
