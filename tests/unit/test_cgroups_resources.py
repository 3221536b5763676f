"""Resources.from_dict validation, to_dict round trips, and merge (for `pyrunc update`)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci_runtime.cgroups import resources
from oci_runtime.cgroups.resources import (
    CPU,
    DeviceRule,
    HugepageLimit,
    Memory,
    Pids,
    Resources,
    ThrottleDevice,
)

FULL = {
    "memory": {
        "limit": 536870912,
        "reservation": 268435456,
        "swap": 1073741824,
        "kernel": -1,
        "kernelTCP": -1,
        "swappiness": 60,
        "disableOOMKiller": False,
        "useHierarchy": True,
        "checkBeforeUpdate": False,
    },
    "cpu": {
        "shares": 1024,
        "quota": 1000000,
        "burst": 0,
        "period": 500000,
        "realtimeRuntime": 950000,
        "realtimePeriod": 1000000,
        "cpus": "2-3",
        "mems": "0-7",
        "idle": 0,
    },
    "pids": {"limit": 32771},
    "blockIO": {
        "weight": 10,
        "leafWeight": 10,
        "weightDevice": [
            {"major": 8, "minor": 0, "weight": 500, "leafWeight": 300},
            {"major": 8, "minor": 16, "weight": 500},
        ],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 700}],
        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 800}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}],
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 9223372036854772000}],
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
    ],
    "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
    "unified": {"memory.high": "1G", "io.latency": "8:0 target=75"},
    "rdma": {"mlx5_1": {"hcaHandles": 3}},
}


def test_full_example_from_the_spec() -> None:
    res = Resources.from_dict(FULL)
    assert res.memory == Memory(
        limit=536870912,
        reservation=268435456,
        swap=1073741824,
        kernel=-1,
        kernel_tcp=-1,
        swappiness=60,
        disable_oom_killer=False,
        use_hierarchy=True,
        check_before_update=False,
    )
    assert res.cpu is not None and res.cpu.cpus == "2-3" and res.cpu.realtime_runtime == 950000
    assert res.pids == Pids(limit=32771)
    assert res.block_io is not None
    assert res.block_io.throttle_write_iops_device == (ThrottleDevice(major=8, minor=16, rate=300),)
    assert res.hugepage_limits == (HugepageLimit(page_size="2MB", limit=9223372036854772000),)
    assert res.devices is not None and res.devices[1] == DeviceRule(
        allow=True, type="c", major=10, minor=229, access="rw"
    )
    assert res.network is not None and res.network.class_id == 1048577
    assert res.unified == {"memory.high": "1G", "io.latency": "8:0 target=75"}
    # rdma is accepted and dropped: nothing here applies it.
    expected = {k: v for k, v in FULL.items() if k != "rdma"}
    assert res.to_dict() == expected


def test_empty_and_nulls() -> None:
    assert Resources.from_dict({}) == Resources()
    assert Resources.from_dict({}).is_empty()
    # Go writes null for nil pointers; that is "not given".
    assert Resources.from_dict({"memory": None, "cpu": {"shares": None}}) == Resources(cpu=CPU())
    assert Resources().to_dict() == {}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "linux.resources: expected object, got list"),
        ({"memory": {"limit": "1"}}, "linux.resources.memory.limit: expected integer, got str"),
        ({"memory": {"limit": 1.5}}, "linux.resources.memory.limit: expected integer, got float"),
        ({"memory": {"limit": True}}, "linux.resources.memory.limit: expected integer, got bool"),
        ({"memory": {"limit": 2**63}}, "linux.resources.memory.limit: 9223372036854775808 is out"),
        ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness: expected 0..100"),
        ({"memory": {"disableOOMKiller": 1}}, "disableOOMKiller: expected boolean, got int"),
        ({"memory": []}, "linux.resources.memory: expected object, got list"),
        ({"cpu": {"shares": -2}}, "linux.resources.cpu.shares: -2 is out of range"),
        ({"cpu": {"cpus": 3}}, "linux.resources.cpu.cpus: expected string, got int"),
        ({"pids": {"limit": "max"}}, "linux.resources.pids.limit: expected integer, got str"),
        ({"blockIO": {"weight": 70000}}, "linux.resources.blockIO.weight: 70000 is out of range"),
        (
            {"blockIO": {"weightDevice": [{"major": 8, "weight": 5}]}},
            "linux.resources.blockIO.weightDevice[0].minor: required",
        ),
        (
            {"blockIO": {"throttleReadBpsDevice": {"major": 8}}},
            "linux.resources.blockIO.throttleReadBpsDevice: expected array, got dict",
        ),
        (
            {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}, {"pageSize": "huge", "limit": 1}]},
            "linux.resources.hugepageLimits[1].pageSize: expected a page size",
        ),
        ({"hugepageLimits": [{"pageSize": "2MB"}]}, "hugepageLimits[0].limit: required"),
        ({"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow: required"),
        ({"devices": [{"allow": True, "type": "x"}]}, "devices[0].type: expected one of"),
        ({"devices": [{"allow": True, "access": "rwx"}]}, "devices[0].access: expected a combin"),
        ({"devices": ["a"]}, "linux.resources.devices[0]: expected object, got str"),
        ({"network": {"classID": -1}}, "linux.resources.network.classID: -1 is out of range"),
        ({"unified": {"memory.high": 5}}, "linux.resources.unified.memory.high: expected string"),
        ({"unified": {"../../etc/passwd": "x"}}, "linux.resources.unified: invalid cgroup file"),
        ({"unified": {".hidden": "x"}}, "linux.resources.unified: invalid cgroup file"),
    ],
)
def test_validation_errors(doc: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Resources.from_dict(doc)
    text = str(info.value)
    assert text.startswith(message) or message in text
    assert "\n" not in text


def test_error_prefix_can_be_chosen() -> None:
    with pytest.raises(ValueError, match=r"^update\.memory\.limit: expected integer"):
        Resources.from_dict({"memory": {"limit": "x"}}, where="update")


def test_is_hashable_without_unified() -> None:
    res = Resources.from_dict({k: v for k, v in FULL.items() if k != "unified"})
    assert hash(res) == hash(Resources.from_dict(res.to_dict()))


def test_merge_keeps_what_the_update_leaves_out() -> None:
    old = Resources.from_dict(FULL)
    update = Resources.from_dict(
        {
            "memory": {"limit": 1 << 30, "swap": -1},
            "cpu": {"cpus": "0"},
            "pids": {"limit": 0},
            "unified": {"memory.high": "2G", "pids.max": "9"},
        }
    )
    merged = old.merge(update)
    assert merged.memory is not None and merged.memory.limit == 1 << 30
    assert merged.memory.swap == -1
    assert merged.memory.reservation == 268435456
    assert merged.cpu == CPU(
        shares=1024,
        quota=1000000,
        burst=0,
        period=500000,
        realtime_runtime=950000,
        realtime_period=1000000,
        cpus="0",
        mems="0-7",
        idle=0,
    )
    assert merged.pids == Pids(limit=0)
    assert merged.devices == old.devices
    assert merged.block_io == old.block_io
    assert merged.unified == {"memory.high": "2G", "io.latency": "8:0 target=75", "pids.max": "9"}
    # The inputs are values: untouched.
    assert old.memory is not None and old.memory.limit == 536870912


def test_merge_replaces_lists_whole() -> None:
    old = Resources.from_dict({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})
    new = old.merge(Resources.from_dict({"hugepageLimits": [{"pageSize": "1GB", "limit": 2}]}))
    assert new.hugepage_limits == (HugepageLimit(page_size="1GB", limit=2),)


def test_merge_into_nothing() -> None:
    update = Resources.from_dict({"memory": {"limit": 5}})
    assert Resources().merge(update) == update
    assert update.merge(Resources()) == update


int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
uint64 = st.integers(min_value=0, max_value=2**64 - 1)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def drop_none(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


memory_docs = st.builds(
    drop_none,
    limit=optional(int64),
    swap=optional(int64),
    swappiness=optional(st.integers(0, 100)),
    disableOOMKiller=optional(st.booleans()),
)
cpu_docs = st.builds(
    drop_none,
    shares=optional(uint64),
    quota=optional(int64),
    period=optional(uint64),
    cpus=optional(st.text(max_size=8)),
)
device_docs = st.builds(
    drop_none,
    allow=st.booleans(),
    type=optional(st.sampled_from("abcup")),
    major=optional(int64),
    minor=optional(int64),
    access=optional(st.sampled_from(["r", "rw", "rwm", "m", ""])),
)
resource_docs = st.builds(
    drop_none,
    memory=optional(memory_docs),
    cpu=optional(cpu_docs),
    pids=optional(st.builds(drop_none, limit=optional(int64))),
    devices=optional(st.lists(device_docs, max_size=4)),
    hugepageLimits=optional(
        st.lists(
            st.builds(dict, pageSize=st.sampled_from(["2MB", "1GB", "64KB"]), limit=uint64),
            max_size=3,
        )
    ),
    unified=optional(
        st.dictionaries(st.from_regex(r"[a-z]+\.[a-z_]+", fullmatch=True), st.text(), max_size=3)
    ),
)


@given(resource_docs)
def test_round_trip(doc: dict[str, Any]) -> None:
    res = Resources.from_dict(doc)
    assert res.to_dict() == doc
    assert Resources.from_dict(res.to_dict()) == res


@given(resource_docs, resource_docs)
def test_merge_laws(a: dict[str, Any], b: dict[str, Any]) -> None:
    ra, rb = Resources.from_dict(a), Resources.from_dict(b)
    merged = ra.merge(rb)
    # Whatever the update says wins; merging the same update twice changes nothing more.
    assert merged.merge(rb) == merged
    assert ra.merge(Resources()) == ra
    if rb.memory is not None and rb.memory.limit is not None:
        assert merged.memory is not None and merged.memory.limit == rb.memory.limit
    if rb.memory is None:
        assert merged.memory == ra.memory


def test_every_field_has_its_json_form() -> None:
    # The decoder, encoder and merge walk `_FIELDS`: a field missing from it would be
    # silently dropped, and a misspelled one would raise only at run time.
    classes = [getattr(resources, name) for name in resources.__all__]
    assert set(resources._FIELDS) == set(classes)
    for cls, table in resources._FIELDS.items():
        nt: Any = cls
        assert tuple(table) == nt._fields, nt.__name__
        assert all(v is None for v in nt._field_defaults.values()), nt.__name__


def test_values_are_immutable_and_hashable_with_unified() -> None:
    res = Resources.from_dict(FULL)
    with pytest.raises(AttributeError):
        res.memory = None  # type: ignore[misc]
    assert res.memory is not None
    with pytest.raises(AttributeError):
        res.memory.limit = 1  # type: ignore[misc]
    again = Resources.from_dict(FULL)
    assert res == again
    assert hash(res) == hash(again)
    assert {res: 1}[again] == 1
    assert res != res._replace(unified={"memory.high": "2G"})


def test_merge_returns_new_values() -> None:
    old = Resources.from_dict({"memory": {"limit": 1}, "unified": {"a.b": "1"}})
    merged = old.merge(Resources.from_dict({"unified": {"c.d": "2"}}))
    assert merged.unified == {"a.b": "1", "c.d": "2"}
    assert old.unified == {"a.b": "1"}
    assert merged.memory is old.memory
