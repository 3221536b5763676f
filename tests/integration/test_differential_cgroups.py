"""Differential: cgroup limits in effect, and the freezer, under pyrunc, runc and crun.

The probes check what the limits do to a process (an OOM kill, a refused fork, a device that
cannot be opened) and read the values back inside the container and from the host's cgroup
directories. Needs a cgroup v1 host (this project's machines); v2 hosts skip.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.probes import cgroup_dir, chain, probe, sh, wait_status

pytestmark = [pytest.mark.root, pytest.mark.cgroup_v1]

MiB = 1 << 20


def resources(**res):
    def edit(cfg):
        cfg["linux"].setdefault("resources", {}).update(res)

    return edit


def tmpfs_tmp(cfg):
    cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})


def test_memory_limit_oom_kills(runtime, bundle):
    # tail keeps its last "line" in memory: /dev/zero has no newline, so it grows until the
    # 32 MiB limit; memory+swap is capped too, so the kernel cannot swap its way out. tail
    # raises its own oom_score_adj to be the victim, and reads /dev/zero itself: with a
    # `head |` feeding it, head's pipe writes could start a second OOM kill before tail's
    # memory is freed, and take the shell (seen with every runtime).
    edit = resources(memory={"limit": 32 * MiB, "swap": 32 * MiB})
    script = (
        "(echo 1000 > /proc/self/oom_score_adj && exec tail /dev/zero) >/dev/null; "
        "echo rc=$?; "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
        "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes; "
        "grep oom_kill /sys/fs/cgroup/memory/memory.oom_control"
    )
    got = probe(runtime, bundle, script, edit=edit, timeout=60)
    assert got.code == 0, got
    lines = got.out.splitlines()
    assert lines[0] == "rc=137", got  # 128 + SIGKILL
    assert lines[1:3] == [str(32 * MiB), str(32 * MiB)], got
    counts = dict(line.split() for line in lines[3:])
    assert int(counts["oom_kill"]) >= 1, got


def test_memory_limit_init_oom_killed(runtime, bundle):
    # The container's own process over the limit: `run` reports the SIGKILL as 137.
    edit = resources(memory={"limit": 32 * MiB, "swap": 32 * MiB})
    b = bundle(["tail", "/dev/zero"], edit=edit)
    p = runtime.run(b, timeout=60)
    assert p.returncode == 137, p.stderr


def test_pids_limit_refuses_fork(runtime, bundle):
    # busybox sh gives up at the first fork it cannot make, so a child shell does the forking:
    # with the limit at 5, the outer and inner shells and three sleeps fill it. Then the
    # inner shell is gone and `cat` takes its place (`; true` keeps sh from exec'ing it).
    edit = resources(pids={"limit": 5})
    script = (
        "cat /sys/fs/cgroup/pids/pids.max; "
        "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & echo started; done'; echo rc=$?; "
        "cat /sys/fs/cgroup/pids/pids.current; true"
    )
    got = probe(runtime, bundle, script, edit=edit)
    assert got.out.splitlines() == ["5", "started", "started", "started", "rc=2", "5"], got
    assert got.err.count("can't fork") == 1, got


def test_cpu_shares_quota_and_cpuset(runtime, bundle):
    edit = resources(cpu={"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"})
    script = (
        "cd /sys/fs/cgroup; cat cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us "
        "cpuset/cpuset.cpus; grep Cpus_allowed_list /proc/self/status"
    )
    got = probe(runtime, bundle, script, edit=edit)
    assert got.code == 0, got
    assert got.out.split() == ["512", "50000", "100000", "0", "Cpus_allowed_list:", "0"], got


def test_limits_in_host_cgroup_dirs(runtime, bundle):
    edit = resources(
        memory={"limit": 64 * MiB},
        cpu={"shares": 256, "quota": 20000, "period": 100000},
        pids={"limit": 42},
    )
    b = bundle(sh("sleep 100"), edit=edit)
    cid = runtime.create(b)
    st = runtime.state(cid)
    want = {
        ("memory", "memory.limit_in_bytes"): str(64 * MiB),
        ("cpu", "cpu.shares"): "256",
        ("cpu", "cpu.cfs_quota_us"): "20000",
        ("cpu", "cpu.cfs_period_us"): "100000",
        ("pids", "pids.max"): "42",
    }
    for (controller, name), value in want.items():
        d = cgroup_dir(b, controller)
        assert (d / name).read_text().strip() == value, f"{controller}/{name}"
        assert str(st["pid"]) in (d / "cgroup.procs").read_text().split()
    runtime.cmd("delete", "--force", cid)
    for controller in ("memory", "cpu", "pids", "freezer"):
        assert not cgroup_dir(b, controller).exists(), f"{controller} cgroup left behind"


def test_update_changes_limits(runtime, bundle):
    b = bundle(sh("sleep 100"), edit=resources(pids={"limit": 20}, memory={"limit": 64 * MiB}))
    cid = runtime.create(b)
    runtime.cmd("start", cid)
    runtime.cmd("update", "--pids-limit", "30", "--memory", str(96 * MiB), cid)
    assert (cgroup_dir(b, "pids") / "pids.max").read_text().strip() == "30"
    memory = cgroup_dir(b, "memory") / "memory.limit_in_bytes"
    assert memory.read_text().strip() == str(96 * MiB)
    # The device rules survive an update: /dev/null still opens.
    p = runtime.cmd("exec", cid, "sh", "-c", "echo x > /dev/null && echo ok", check=False)
    assert (p.returncode, p.stdout) == (0, b"ok\n"), p.stderr


def with_mknod(cfg):
    for kind in ("bounding", "effective", "permitted"):
        cfg["process"]["capabilities"][kind].append("CAP_MKNOD")


def test_device_cgroup(runtime, bundle):
    # The default spec denies every device; the runtime adds the usual ones back.
    script = (
        "echo x > /dev/null && echo null=ok; "
        "head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; "
        "echo x > /dev/full; echo full=$?; "
        "mknod /tmp/sda b 8 0 && echo mknod=ok; "
        "head -c 1 /tmp/sda; echo sda=$?"
    )
    got = probe(runtime, bundle, script, edit=chain(tmpfs_tmp, with_mknod))
    lines = got.out.splitlines()
    assert lines == ["null=ok", "4", "4", "full=1", "mknod=ok", "sda=1"], got
    assert "No space left on device" in got.err  # /dev/full, opened fine
    assert "Operation not permitted" in got.err  # the block device, refused by the cgroup


def test_device_allowed_by_spec(runtime, bundle):
    # A device in linux.devices with an allow rule: created and usable inside.
    def edit(cfg):
        cfg["linux"]["devices"] = [
            {"path": "/dev/kmsg2", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644}
        ]
        cfg["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}
        )

    got = probe(runtime, bundle, "stat -c '%F %t:%T %a' /dev/kmsg2", edit=edit)
    assert (got.code, got.out) == (0, "character special file 1:b 644\n"), got


def _counter(path: Path) -> int:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else 0


def _task_state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return "?"


def test_pause_and_resume(runtime, bundle, short_tmp):
    share = short_tmp / "count"
    share.mkdir()

    def edit(cfg):
        cfg["mounts"].append(
            {"destination": "/var", "type": "bind", "source": str(share), "options": ["rbind"]}
        )

    b = bundle(sh("i=0; while :; do i=$((i+1)); echo $i > /var/n; sleep 0.01; done"), edit=edit)
    cid = runtime.create(b)
    runtime.cmd("start", cid)
    counter = share / "n"
    deadline = time.monotonic() + 10
    while _counter(counter) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _counter(counter) >= 3, "the container never ran"

    runtime.cmd("pause", cid)
    st = runtime.state(cid)
    assert st["status"] == "paused"
    freezer = cgroup_dir(b, "freezer") / "freezer.state"
    assert freezer.read_text().strip() == "FROZEN"
    # Every process of the container sits in the freezer: the kernel shows a frozen task as
    # "D (disk sleep)" (6.x) in /proc/<pid>/status.
    pids = json.loads(runtime.cmd("ps", "--format", "json", cid).stdout)
    assert st["pid"] in pids
    for pid in pids:
        assert _task_state(pid) == "D", f"pid {pid} is {_task_state(pid)} while paused"
    frozen_at = _counter(counter)
    time.sleep(0.3)
    assert _counter(counter) == frozen_at, "processes ran while paused"
    assert runtime.cmd("start", cid, check=False).returncode != 0
    if runtime.name != "crun":
        # runc refuses to pause a paused container; crun 1.8 accepts it, a no-op.
        assert runtime.cmd("pause", cid, check=False).returncode != 0

    runtime.cmd("resume", cid)
    assert runtime.state(cid)["status"] == "running"
    assert freezer.read_text().strip() == "THAWED"
    deadline = time.monotonic() + 5
    while _counter(counter) <= frozen_at and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _counter(counter) > frozen_at, "processes did not run again after resume"
    if runtime.name != "crun":
        # Likewise resuming a running one.
        assert runtime.cmd("resume", cid, check=False).returncode != 0

    runtime.cmd("kill", cid, "KILL")
    wait_status(runtime, cid, "stopped")
    runtime.cmd("delete", cid)


def test_delete_force_paused(runtime, bundle):
    b = bundle(sh("sleep 100"))
    cid = runtime.create(b)
    runtime.cmd("start", cid)
    runtime.cmd("pause", cid)
    pid = runtime.state(cid)["pid"]
    runtime.cmd("delete", "--force", cid)
    assert runtime.cmd("state", cid, check=False).returncode != 0
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert not cgroup_dir(b, "freezer").exists()
