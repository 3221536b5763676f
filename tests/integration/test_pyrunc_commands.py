"""pyrunc commands a user drives directly: the create/start split, update, events, spec,
features, exec --detach, kill --all, run --detach."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.runtimes import CGROUP_ROOT, Runtime

pytestmark = [pytest.mark.root]


def _share(tmp_path: Path):
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)

    def edit(c: dict) -> None:
        c["mounts"].append(
            {
                "destination": "/share",
                "type": "bind",
                "source": str(share),
                "options": ["rbind", "rw"],
            }
        )

    return share, edit


def _wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_process_runs_only_after_start(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    share, edit = _share(tmp_path)
    b = bundle(["sh", "-c", "echo started > /share/marker; sleep 30"], edit=edit)
    pidfile = tmp_path / "pid"
    cid = pyrunc.create(b, None, "--pid-file", str(pidfile))
    # The pid file exists when create returns, and the process waits inside its namespaces.
    pid = int(pidfile.read_text())
    assert pyrunc.state(cid)["pid"] == pid
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    time.sleep(0.3)
    assert not (share / "marker").exists()
    pyrunc.cmd("start", cid)
    assert _wait_for(lambda: (share / "marker").exists())
    assert pyrunc.state(cid)["status"] == "running"


def test_update_changes_limits(pyrunc: Runtime, bundle) -> None:
    b = bundle(["sleep", "30"])
    cid = pyrunc.create(b)
    cg = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"].strip("/")
    pyrunc.cmd(
        "update",
        "--memory",
        "64M",
        "--pids-limit",
        "20",
        "--cpu-shares",
        "512",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        cid,
    )
    assert (CGROUP_ROOT / "memory" / cg / "memory.limit_in_bytes").read_text().strip() == str(
        64 << 20
    )
    assert (CGROUP_ROOT / "pids" / cg / "pids.max").read_text().strip() == "20"
    assert (CGROUP_ROOT / "cpu" / cg / "cpu.shares").read_text().strip() == "512"
    assert (CGROUP_ROOT / "cpu" / cg / "cpu.cfs_quota_us").read_text().strip() == "50000"
    res = b.parent / "res.json"
    res.write_text(json.dumps({"pids": {"limit": 7}}))
    pyrunc.cmd("update", "-r", str(res), cid)
    assert (CGROUP_ROOT / "pids" / cg / "pids.max").read_text().strip() == "7"
    # An earlier change survives a later one that does not mention it.
    assert (CGROUP_ROOT / "cpu" / cg / "cpu.shares").read_text().strip() == "512"
    bad = pyrunc.cmd("update", "--memory", "lots", cid, check=False)
    assert bad.returncode != 0 and b"invalid size" in bad.stderr


def test_events_stats(pyrunc: Runtime, bundle) -> None:
    b = bundle(
        ["sleep", "30"],
        edit=lambda c: c["linux"]["resources"].update(
            memory={"limit": 128 << 20}, pids={"limit": 50}
        ),
    )
    cid = pyrunc.create(b)
    pyrunc.cmd("start", cid)
    ev = json.loads(pyrunc.cmd("events", "--stats", cid).stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    assert ev["data"]["memory"]["usage"]["limit"] == 128 << 20
    assert ev["data"]["pids"]["current"] >= 1
    assert ev["data"]["pids"]["limit"] == 50
    assert ev["data"]["cpu"]["usage"]["total"] > 0


def test_spec_writes_a_runnable_default(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    d = tmp_path / "specdir"
    d.mkdir()
    pyrunc.cmd("spec", "--bundle", str(d))
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["process"]["args"] == ["sh"] and cfg["process"]["terminal"] is True
    again = pyrunc.cmd("spec", "--bundle", str(d), check=False)
    assert again.returncode != 0 and b"exists" in again.stderr
    # Run it non-interactively in a bundle beside a real rootfs.
    b = bundle()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "echo default-ok"]
    cfg["root"]["path"] = json.loads((b / "config.json").read_text())["root"]["path"]
    cfg["linux"]["cgroupsPath"] = json.loads((b / "config.json").read_text())["linux"][
        "cgroupsPath"
    ]
    (b / "config.json").write_text(json.dumps(cfg))
    p = pyrunc.run(b)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == b"default-ok"


def test_features(pyrunc: Runtime) -> None:
    f = json.loads(pyrunc.cmd("features").stdout)
    assert f["ociVersionMax"] == "1.2.0"
    assert "createRuntime" in f["hooks"]
    assert "user" in f["linux"]["namespaces"]
    assert f["linux"]["seccomp"]["enabled"] is True


def test_exec_detach_and_kill_all(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle(["sleep", "60"])
    cid = pyrunc.create(b)
    pyrunc.cmd("start", cid)
    pidfile = tmp_path / "exec.pid"
    # Detached processes keep the caller's stdio: give them nothing a test would wait on.
    subprocess.run(
        [*pyrunc.argv, "exec", "--detach", "--pid-file", str(pidfile), cid, "sleep", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=30,
    )
    epid = int(pidfile.read_text())
    pids = json.loads(pyrunc.cmd("ps", "--format", "json", cid).stdout)
    assert epid in pids and pyrunc.state(cid)["pid"] in pids
    pyrunc.cmd("kill", "--all", cid, "KILL")
    assert _wait_for(lambda: pyrunc.state(cid)["status"] == "stopped")
    assert _wait_for(
        lambda: (
            not Path(f"/proc/{epid}").exists()
            or Path(f"/proc/{epid}/stat").read_text().split(") ")[1][0] == "Z"
        )
    )
    pyrunc.cmd("delete", cid)


def test_exec_exit_code_and_paused_refusal(pyrunc: Runtime, bundle) -> None:
    b = bundle(["sleep", "60"])
    cid = pyrunc.create(b)
    pyrunc.cmd("start", cid)
    assert pyrunc.cmd("exec", cid, "sh", "-c", "exit 42", check=False).returncode == 42
    pyrunc.cmd("pause", cid)
    p = pyrunc.cmd("exec", cid, "true", check=False)
    assert p.returncode != 0 and b"paused" in p.stderr
    pyrunc.cmd("resume", cid)
    assert pyrunc.cmd("exec", cid, "true").returncode == 0


def test_join_namespaces_by_path(pyrunc: Runtime, bundle) -> None:
    first = pyrunc.create(bundle(["sleep", "60"]))
    pid = pyrunc.state(first)["pid"]

    def join(c: dict) -> None:
        for ns in c["linux"]["namespaces"]:
            if ns["type"] in ("network", "ipc", "uts"):
                ns["path"] = f"/proc/{pid}/ns/{'net' if ns['type'] == 'network' else ns['type']}"
        c.pop("hostname", None)

    probe = "for n in net ipc uts mnt; do readlink /proc/self/ns/$n; done"
    p = pyrunc.run(bundle(["sh", "-c", probe], edit=join))
    assert p.returncode == 0, p.stderr
    net, ipc, uts, mnt = p.stdout.decode().split()
    assert net == os.readlink(f"/proc/{pid}/ns/net")
    assert ipc == os.readlink(f"/proc/{pid}/ns/ipc")
    assert uts == os.readlink(f"/proc/{pid}/ns/uts")
    assert mnt != os.readlink(f"/proc/{pid}/ns/mnt")


def test_run_detach_and_text_log(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle(["sleep", "60"])
    cid = pyrunc.new_id()
    pyrunc.ids.add(cid)
    subprocess.run(
        [*pyrunc.argv, "run", "--detach", "--bundle", str(b), cid],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=30,
    )
    assert pyrunc.state(cid)["status"] == "running"
    log = tmp_path / "log.txt"
    p = pyrunc.cmd("--log", str(log), "start", cid, check=False)
    assert p.returncode == 1
    line = log.read_text().strip()
    assert line.startswith('time="') and "level=error" in line and "container is running" in line


def test_default_cgroup_leaves_no_trace(pyrunc: Runtime, bundle) -> None:
    b = bundle(["sleep", "30"], edit=lambda c: c["linux"].pop("cgroupsPath"))
    cid = pyrunc.create(b)
    mine = CGROUP_ROOT / "memory" / "pyrunc" / cid
    assert mine.is_dir()
    pyrunc.cmd("delete", "--force", cid)
    assert not mine.exists()
    parent = mine.parent
    others = [p for p in parent.iterdir() if p.is_dir()] if parent.exists() else []
    if not others:
        assert not parent.exists()


def test_start_container_hook_alone(pyrunc: Runtime, bundle) -> None:
    """startContainer hooks run after the root switch: nothing they need may be missing
    there, even when no earlier hook loaded it."""

    def edit(c: dict) -> None:
        c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
        c["hooks"] = {
            "startContainer": [
                {"path": "/bin/sh", "args": ["sh", "-c", "echo hook-ran > /tmp/started"]}
            ]
        }

    p = pyrunc.run(bundle(["cat", "/tmp/started"], edit=edit))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == b"hook-ran"
