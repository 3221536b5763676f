"""shim/metrics.py: finding a task's cgroup (from config.json's cgroupsPath, else from the
init's /proc/<pid>/cgroup) and reading its counters, over fake v1 and v2 trees; the Stats a
client gets from them (shim.service.stats_from_runtime, the format runc's stats have)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shim import metrics
from shim.service import stats_from_runtime
from tests.unit.test_cgroups import fake_v1_mountinfo, write_tree

V1_HIERARCHIES = {
    "cpu,cpuacct": "rw,cpu,cpuacct",
    "memory": "rw,memory",
    "pids": "rw,pids",
    "systemd": "rw,name=systemd",
}


def v1_tree(root: Path, rel: str) -> str:
    write_tree(
        root,
        {
            f"cpu,cpuacct/{rel}/cpuacct.usage": "5000\n",
            f"cpu,cpuacct/{rel}/cpuacct.usage_user": "3000\n",
            f"cpu,cpuacct/{rel}/cpuacct.usage_sys": "2000\n",
            f"cpu,cpuacct/{rel}/cpuacct.usage_percpu": "4000 1000\n",
            f"cpu,cpuacct/{rel}/cpu.stat": "nr_periods 4\nnr_throttled 1\nthrottled_time 9\n",
            f"memory/{rel}/memory.usage_in_bytes": "4096\n",
            f"memory/{rel}/memory.limit_in_bytes": "67108864\n",
            f"memory/{rel}/memory.max_usage_in_bytes": "8192\n",
            f"memory/{rel}/memory.stat": "cache 100\nrss 300\ntotal_cache 150\ntotal_rss 350\n",
            f"pids/{rel}/pids.current": "3\n",
            f"pids/{rel}/pids.max": "77\n",
        },
    )
    return fake_v1_mountinfo(root, V1_HIERARCHIES, unified=True)


def v2_tree(root: Path, rel: str) -> None:
    write_tree(
        root,
        {
            "cgroup.controllers": "cpu io memory pids\n",
            f"{rel}/cpu.stat": "usage_usec 7\nuser_usec 4\nsystem_usec 3\n",
            f"{rel}/memory.current": "2048\n",
            f"{rel}/memory.max": "max\n",
            f"{rel}/memory.stat": "anon 1500\nfile 500\n",
            f"{rel}/memory.events": "max 0\noom_kill 0\n",
            f"{rel}/pids.current": "2\n",
            f"{rel}/pids.max": "max\n",
            f"{rel}/io.stat": "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n",
        },
    )


def v2_mountinfo(root: Path) -> str:
    return f"30 23 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def fake_proc(base: Path, pid: int, cgroup: str) -> Path:
    (base / str(pid)).mkdir(parents=True)
    (base / str(pid) / "cgroup").write_text(cgroup)
    return base


def test_v1_from_cgroups_path(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    text = v1_tree(root, "default/web")
    cg = metrics.locate(
        {"linux": {"cgroupsPath": "/default/web"}}, 0, root=str(root), mountinfo=text
    )
    assert cg is not None and cg.version == 1
    assert cg.paths["memory"] == f"{root}/memory/default/web"
    assert cg.paths["cpuacct"] == f"{root}/cpu,cpuacct/default/web"
    assert "" not in cg.paths  # the hybrid cgroup2 tree holds no counters
    s = stats_from_runtime(cg.stats())
    assert (s.cpu.usage_total_ns, s.cpu.usage_user_ns, s.cpu.usage_kernel_ns) == (5000, 3000, 2000)
    assert list(s.cpu.usage_per_cpu_ns) == [4000, 1000]
    assert (s.cpu.periods, s.cpu.throttled_periods, s.cpu.throttled_time_ns) == (4, 1, 9)
    assert (s.memory.usage, s.memory.max_usage, s.memory.limit) == (4096, 8192, 64 << 20)
    assert (s.memory.cache, s.memory.rss) == (150, 350)
    assert s.memory.raw["rss"] == 300
    assert (s.pids.current, s.pids.limit) == (3, 77)


def test_v2_from_cgroups_path(tmp_path: Path) -> None:
    v2_tree(tmp_path, "k8s.io/pod1")
    cg = metrics.locate({"linux": {"cgroupsPath": "/k8s.io/pod1"}}, 0, root=str(tmp_path))
    assert cg is not None and cg.version == 2
    assert cg.paths == {"": f"{tmp_path}/k8s.io/pod1"}
    s = stats_from_runtime(cg.stats())
    assert (s.cpu.usage_total_ns, s.cpu.usage_user_ns, s.cpu.usage_kernel_ns) == (
        7000,
        4000,
        3000,
    )
    assert (s.memory.usage, s.memory.limit, s.memory.cache, s.memory.rss) == (2048, 0, 500, 1500)
    assert (s.pids.current, s.pids.limit) == (2, 0)
    assert (s.blkio.read_bytes, s.blkio.write_bytes, s.blkio.read_ops, s.blkio.write_ops) == (
        10,
        20,
        1,
        2,
    )


@pytest.mark.parametrize(
    ("config", "systemd"),
    [
        ({"linux": {"cgroupsPath": "relative/web"}}, False),  # each runtime resolves its own
        ({"linux": {"cgroupsPath": "system.slice:pyc:web"}}, True),
        ({"linux": {}}, False),
        ({}, False),
    ],
)
def test_v1_from_the_init_pid_when_the_path_is_not_plain(
    tmp_path: Path, config: dict, systemd: bool
) -> None:
    root = tmp_path / "cg"
    text = v1_tree(root, "runtime-chose/web")
    proc = fake_proc(
        tmp_path / "proc",
        42,
        "12:pids:/runtime-chose/web\n"
        "5:cpu,cpuacct:/runtime-chose/web\n"
        "4:memory:/runtime-chose/web\n"
        "1:name=systemd:/runtime-chose/web\n"
        "0::/runtime-chose/web\n",
    )
    cg = metrics.locate(config, 42, systemd=systemd, root=str(root), mountinfo=text, proc=str(proc))
    assert cg is not None and cg.version == 1
    assert cg.paths == {
        "cpu": f"{root}/cpu,cpuacct/runtime-chose/web",
        "cpuacct": f"{root}/cpu,cpuacct/runtime-chose/web",
        "memory": f"{root}/memory/runtime-chose/web",
        "pids": f"{root}/pids/runtime-chose/web",
    }
    assert stats_from_runtime(cg.stats()).pids.limit == 77


def test_a_path_that_names_no_cgroup_falls_back_to_the_pid(tmp_path: Path) -> None:
    v2_tree(tmp_path / "cg", "real/web")
    proc = fake_proc(tmp_path / "proc", 7, "0::/real/web\n")
    cg = metrics.locate(
        {"linux": {"cgroupsPath": "/not/there"}},
        7,
        root=str(tmp_path / "cg"),
        mountinfo=v2_mountinfo(tmp_path / "cg"),
        proc=str(proc),
    )
    assert cg is not None and cg.paths == {"": f"{tmp_path}/cg/real/web"}


def test_a_hierarchy_mounted_from_a_sub_cgroup(tmp_path: Path) -> None:
    # Inside a cgroup namespace or a nested container, the mount root is not "/".
    root = tmp_path / "cg"
    write_tree(root, {"memory/web/memory.usage_in_bytes": "1\n"})
    text = f"40 31 0:50 /outer {root}/memory rw - cgroup cgroup rw,memory\n"
    proc = fake_proc(tmp_path / "proc", 9, "4:memory:/outer/web\n")
    cg = metrics.from_pid(9, root=str(root), mountinfo=text, proc=str(proc))
    assert cg is not None and cg.paths == {"memory": f"{root}/memory/web"}


def test_gone_or_unknown_cgroups_give_none(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    text = v1_tree(root, "default/web")
    cfg = {"linux": {"cgroupsPath": "/default/gone"}}
    # No such cgroup, and no process to ask (it exited: /proc/<pid> is gone).
    assert metrics.locate(cfg, 5, root=str(root), mountinfo=text, proc=str(tmp_path)) is None
    found = metrics.locate(
        {"linux": {"cgroupsPath": "/default/web"}}, 0, root=str(root), mountinfo=text
    )
    assert found is not None and found.exists()
    for d in set(found.paths.values()):
        shutil.rmtree(d, ignore_errors=True)  # the container went and its cgroup with it
    assert not found.exists()
    # The cgroup root itself is never a task's cgroup.
    assert (
        metrics.locate({"linux": {"cgroupsPath": "/"}}, 0, root=str(root), mountinfo=text) is None
    )


def test_runc_stats_with_zero_values_left_out() -> None:
    # runc's JSON omits zero fields (Go omitempty), in blkio entries too.
    data = {
        "blkio": {
            "ioServiceBytesRecursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write"},
            ]
        },
        "memory": {"usage": {"limit": 9223372036854771712}},
    }
    s = stats_from_runtime(data)
    assert (s.blkio.read_bytes, s.blkio.write_bytes) == (4096, 0)
    assert s.memory.limit == 0  # v1's "no limit"
