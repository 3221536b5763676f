"""Bad input to pyrunc: one line on stderr, a JSON line in --log, a non-zero exit, and
nothing left behind: no state dir, cgroup, mount or process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.runtimes import CGROUP_ROOT, Runtime

pytestmark = [pytest.mark.root]


def leftovers(rt: Runtime, cid: str, bundle: Path) -> list[str]:
    found = []
    if (rt.root / cid).exists():
        found.append(f"state dir {rt.root / cid}")
    try:
        cfg = json.loads((bundle / "config.json").read_text())
        cg = cfg["linux"]["cgroupsPath"].strip("/")
    except (OSError, ValueError, KeyError, TypeError):
        cg = ""
    if cg:
        for hier in CGROUP_ROOT.iterdir():
            if (hier / cg).exists():
                found.append(f"cgroup {hier / cg}")
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                text = Path(f"/proc/{pid}/cgroup").read_text()
            except OSError:
                continue
            if cg in text and not _zombie(pid):
                found.append(f"process {pid}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if str(bundle) in line:
                found.append(f"mount {line.split()[4]}")
    return found


def _zombie(pid: str) -> bool:
    """A killed process its parent has not reaped yet is dead, not left behind."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def fails(rt: Runtime, *args: str, log: Path) -> str:
    p = rt.cmd("--log", str(log), "--log-format", "json", *args, check=False)
    assert p.returncode != 0
    err = p.stderr.decode().strip()
    assert err.startswith("pyrunc: "), err
    assert len(err.splitlines()) == 1, err
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries[-1]["level"] == "error"
    assert entries[-1]["msg"] in err
    return err


def create_fails(pyrunc: Runtime, bundle: Path, tmp_path: Path, expect: str) -> None:
    cid = pyrunc.new_id()
    err = fails(pyrunc, "create", "--bundle", str(bundle), cid, log=tmp_path / "log.json")
    assert expect in err
    assert leftovers(pyrunc, cid, bundle) == []


def test_missing_config(pyrunc: Runtime, tmp_path: Path) -> None:
    b = tmp_path / "empty"
    b.mkdir()
    create_fails(pyrunc, b, tmp_path, "config.json: no such file")


def test_malformed_json(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle()
    (b / "config.json").write_text('{"ociVersion": "1.0.2", "process": ')
    create_fails(pyrunc, b, tmp_path, "invalid JSON")


def test_wrong_type(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle(edit=lambda c: c["process"].update(args="sh -c true"))
    create_fails(pyrunc, b, tmp_path, "process.args: expected array, got string")


def test_unknown_namespace(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle(edit=lambda c: c["linux"]["namespaces"].append({"type": "sideways"}))
    create_fails(pyrunc, b, tmp_path, "unknown namespace type 'sideways'")


def test_mount_that_fails(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    def edit(c: dict) -> None:
        c["mounts"].append(
            {
                "destination": "/data",
                "type": "bind",
                "source": str(tmp_path / "no-such-dir"),
                "options": ["rbind"],
            }
        )

    create_fails(pyrunc, bundle(edit=edit), tmp_path, "/data")


def test_missing_executable(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle(["/bin/no-such-program"])
    create_fails(pyrunc, b, tmp_path, 'exec: "/bin/no-such-program": executable file not found')
    b = bundle(["no-such-program"])
    create_fails(pyrunc, b, tmp_path, "executable file not found in $PATH")


def test_cgroup_value_the_kernel_refuses(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle(edit=lambda c: c["linux"]["resources"].update(cpu={"cpus": "4096"}))
    create_fails(pyrunc, b, tmp_path, "cpuset")


def test_failing_create_runtime_hook(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    def edit(c: dict) -> None:
        c["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}

    create_fails(pyrunc, bundle(edit=edit), tmp_path, "createRuntime hook #0 (/bin/sh) exited 3")


def test_hook_timeout(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    def edit(c: dict) -> None:
        c["hooks"] = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}

    create_fails(pyrunc, bundle(edit=edit), tmp_path, "timed out after 1s")


def test_invalid_id(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle()
    err = fails(pyrunc, "create", "--bundle", str(b), "../escape", log=tmp_path / "l")
    assert "invalid container id" in err
    assert not (pyrunc.root.parent / "escape").exists()


def test_duplicate_id_keeps_the_first(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle(["sleep", "30"])
    cid = pyrunc.create(b)
    err = fails(pyrunc, "create", "--bundle", str(b), cid, log=tmp_path / "l")
    assert f"container with id {cid} already exists" in err
    assert pyrunc.state(cid)["status"] == "created"


@pytest.mark.parametrize("cmd", ["state", "start", "kill", "pause", "resume", "delete", "ps"])
def test_unknown_id(pyrunc: Runtime, tmp_path: Path, cmd: str) -> None:
    err = fails(pyrunc, cmd, "nosuchcontainer", log=tmp_path / "l")
    assert "container nosuchcontainer does not exist" in err


def test_unwritable_root(bundle, short_tmp: Path, tmp_path: Path) -> None:
    blocker = short_tmp / "file"
    blocker.write_text("")
    rt = Runtime("pyrunc", short_tmp)
    rt.argv[-1] = str(blocker / "root")
    b = bundle()
    try:
        err = fails(rt, "create", "--bundle", str(b), "c1", log=tmp_path / "l")
        assert "Not a directory" in err
        assert leftovers(rt, "c1", b) == []
    finally:
        rt.cleanup()


def test_start_twice_and_delete_running(pyrunc: Runtime, bundle, tmp_path: Path) -> None:
    b = bundle(["sleep", "30"])
    cid = pyrunc.create(b)
    pyrunc.cmd("start", cid)
    err = fails(pyrunc, "start", cid, log=tmp_path / "l")
    assert "container is running" in err
    err = fails(pyrunc, "delete", cid, log=tmp_path / "l")
    assert "not stopped: running" in err
    pyrunc.cmd("delete", "--force", cid)
    assert leftovers(pyrunc, cid, b) == []


def test_crash_between_mkdir_and_state(pyrunc: Runtime) -> None:
    """A create killed before its first save leaves a bare dir: delete must clear it."""
    (pyrunc.root / "halfmade").mkdir(parents=True)
    pyrunc.cmd("delete", "halfmade")
    assert not (pyrunc.root / "halfmade").exists()
