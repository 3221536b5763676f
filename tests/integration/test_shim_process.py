"""The shim's core against real runtimes (pyrunc, runc; crun where it can run): containers
created and started through the shim's RuntimeClient, reaped as the shim's children, their
output in the json-file log, their exits in the exit file.

Each scenario runs in a fresh interpreter that makes itself a child subreaper and runs the
reaper (waitpid(-1)), as the shim does: pytest's own process keeps its children and signal
handlers to itself. The parent registers every container and bundle with the `runtime`
fixture, which deletes them and their cgroups whatever happens in the child.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.runtimes import CGROUP_ROOT, Runtime
from tests.unit.test_shim_reaper import in_child

pytestmark = [pytest.mark.root]

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$")


# -- the child's side ------------------------------------------------------------------------


class Shim:
    """What the shim process holds: subreaper, reaper, runtime client, its processes."""

    def __init__(self, runtime: str, root: str, bundle: str) -> None:
        from shim.reaper import Reaper, become_subreaper
        from shim.runtime_client import RuntimeClient

        become_subreaper()
        self.reaper = Reaper()
        self.reaper.start()
        self.runtime = RuntimeClient(runtime, root, f"{bundle}/log.json", self.reaper)
        self.procs: list[Any] = []

    def init(self, cid: str, bundle: str, *, log: bool = True, **kw: Any) -> Any:
        from shim.logs import LogWriter
        from shim.process import InitProcess

        writer = None
        if log:
            writer = LogWriter(
                f"{bundle}/ctr-json.log",
                max_size=kw.pop("max_size", 0),
                max_files=kw.pop("max_files", 1),
            )
        p = InitProcess(cid, bundle, self.runtime, self.reaper, log=writer, **kw)
        self.procs.append(p)
        return p

    def __enter__(self) -> Shim:
        return self

    def __exit__(self, *exc: object) -> None:
        from shim.process import State

        for p in self.procs:
            if p.state is not State.DELETED:
                try:
                    p.delete(force=True)
                except Exception as e:
                    print(f"cleanup of {p.id}: {e}")
        self.reaper.stop()


def _entries(bundle: str) -> list[list[str]]:
    from shim.logs import read_logs

    return [[e.stream, e.log, e.time] for e in read_logs(f"{bundle}/ctr-json.log")]


def _exitfile(bundle: str) -> dict[str, Any]:
    with open(f"{bundle}/exit") as f:
        return json.load(f)


def _run_to_exit(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle)
        p.create()
        p.start()
        status, at = p.wait(60)
        exitfile = _exitfile(bundle)
        rec = p.delete()
        return {
            "wait": [status, at],
            "exitfile": exitfile,
            "deleted": [rec.exit_status, rec.exited_at],
            "entries": _entries(bundle),
            "state": p.state.value,
        }


def _killed(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle)
        p.create()
        p.start()
        before = p.state.value
        p.kill(signal.SIGKILL)
        status, _ = p.wait(30)
        exitfile = _exitfile(bundle)
        p.delete()
        return {"before": before, "status": status, "exitfile": exitfile}


def _stdin(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle, stdin=True)
        p.create()
        p.start()
        p.write_stdin(b"hello from the shim\n")
        p.write_stdin(b"second line\n")
        p.close_io()  # EOF: cat ends
        status, _ = p.wait(30)
        p.delete()
        return {"status": status, "entries": _entries(bundle)}


def _terminal(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle, stdin=True)
        p.create()
        p.start()
        p.resize(100, 40)
        p.write_stdin(b"go\n")  # the container reads the size only after this line
        status, _ = p.wait(30)
        p.delete()
        return {"status": status, "entries": _entries(bundle), "terminal": p.stdio.terminal}


def _exec(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle)
        p.create()
        p.start()
        with open(f"{bundle}/config.json") as f:
            base = json.load(f)["process"]
        out: dict[str, Any] = {}

        spec = {**base, "args": ["sh", "-c", "echo exec-out; cat; echo exec-err >&2; exit 3"]}
        e = p.exec("e1", spec, stdin=True)
        att = e.subscribe()
        e.start()
        e.write_stdin(b"piped in\n")
        e.close_io()
        out["e1_status"] = e.wait(30)[0]
        out["e1_out"] = [[st, d.decode()] for st, d in att]
        out["e1_pid_was_in_container"] = e.pid != p.pid
        e.delete()

        e = p.exec("e2", {**base, "args": ["sleep", "1000"]})
        e.start()
        out["e2_in_pids"] = e.pid in p.pids()
        e.kill(signal.SIGKILL)
        out["e2_status"] = e.wait(30)[0]
        e.delete()

        e = p.exec("e3", {**base, "args": ["tty"], "terminal": True})
        att = e.subscribe()
        e.start()
        out["e3_status"] = e.wait(30)[0]
        out["e3_out"] = b"".join(d for _, d in att).decode()
        e.delete()

        e = p.exec("e4", {**base, "args": ["true"]})
        e.start()  # exits at once: the exit is not lost
        out["e4_status"] = e.wait(30)[0]
        e.delete()

        from shim.runtime_client import OCIRuntimeError

        e = p.exec("e5", {**base, "args": ["/no/such/binary"]})
        try:
            e.start()
            out["e5_error"] = None
        except OCIRuntimeError as err:
            out["e5_error"] = err.message
        out["e5_deleted"] = e.delete()
        out["init_after_e5"] = p.state.value

        out["execs_left"] = sorted(p.execs)
        out["init_log"] = _entries(bundle)  # exec output is not the container's log
        p.kill(signal.SIGKILL)
        p.wait(30)
        p.delete()
        return out


def _early(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    from shim.process import ProcessError

    with Shim(rt, root, bundle) as s:
        out: dict[str, Any] = {}
        # exits as soon as it starts
        p = s.init(cid, bundle)
        p.create()
        p.start()
        out["true_status"] = p.wait(30)[0]
        p.delete()
        # killed before it was ever started
        p = s.init(cid + "k", bundle)
        p.create()
        p.kill(signal.SIGKILL)
        out["created_killed"] = p.wait(30)[0]
        try:
            p.start()
            out["start_after_exit"] = None
        except ProcessError as e:
            out["start_after_exit"] = type(e).__name__
        p.delete()
        return out


def _pause(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle)
        p.create()
        p.start()
        out: dict[str, Any] = {"pid": p.pid}
        p.pause()
        out["paused"] = [p.state.value, p.runtime_state()["status"]]
        p.resume()
        out["resumed"] = [p.state.value, p.runtime_state()["status"]]
        out["pids"] = p.pids()
        p.update({"pids": {"limit": 123}})
        out["pids_max"] = _pids_max(bundle)
        p.kill(signal.SIGKILL)
        out["status"] = p.wait(30)[0]
        p.delete()
        return out


def _pids_max(bundle: str) -> str:
    with open(f"{bundle}/config.json") as f:
        cg = json.load(f)["linux"]["cgroupsPath"].strip("/")
    for base in (CGROUP_ROOT / "pids" / cg, CGROUP_ROOT / cg):
        if (base / "pids.max").exists():
            return (base / "pids.max").read_text().strip()
    return "?"


def _create_fails(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    from shim.runtime_client import OCIRuntimeError

    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle)
        try:
            p.create()
            return {"error": None}
        except OCIRuntimeError as e:
            return {"error": e.message, "state": p.state.value, "status": e.exit_status}


# -- the parent's side -----------------------------------------------------------------------


def scenario(fn: Any, runtime: Runtime, bundle: Path, timeout: float = 120) -> tuple[Any, str]:
    cid = runtime.new_id()
    runtime.bundles.add(bundle)
    return in_child(fn, runtime.name, str(runtime.root), str(bundle), cid, timeout=timeout), cid


def assert_cleaned_up(runtime: Runtime, bundle: Path, cid: str) -> None:
    assert not (runtime.root / cid).exists(), "state dir left behind"
    cg = json.loads((bundle / "config.json").read_text())["linux"]["cgroupsPath"].strip("/")
    left = [str(h / cg) for h in CGROUP_ROOT.iterdir() if (h / cg).exists()]
    assert left == [], "cgroups left behind"


def test_output_reaches_the_log_in_order(runtime: Runtime, bundle) -> None:
    script = 'i=1; while [ $i -le 300 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done'
    b = bundle(["sh", "-c", script])
    r, cid = scenario(_run_to_exit, runtime, b)
    entries = r["entries"]
    assert [e[1] for e in entries if e[0] == "stdout"] == [f"out {i}\n" for i in range(1, 301)]
    assert [e[1] for e in entries if e[0] == "stderr"] == [f"err {i}\n" for i in range(1, 301)]
    assert len(entries) == 600
    assert all(TIME_RE.match(e[2]) for e in entries)
    from shim.timestamps import parse_rfc3339

    times = [parse_rfc3339(e[2]) for e in entries]
    assert times == sorted(times)
    assert abs(times[-1] - time.time_ns()) < 120 * 10**9
    assert r["wait"][0] == 0 and r["exitfile"]["exit_status"] == 0
    assert r["state"] == "deleted"
    assert_cleaned_up(runtime, b, cid)


def test_exit_code_is_recorded_and_returned(runtime: Runtime, bundle) -> None:
    b = bundle(["sh", "-c", "echo bye; exit 7"])
    r, cid = scenario(_run_to_exit, runtime, b)
    status, at = r["wait"]
    assert status == 7
    from shim.timestamps import parse_rfc3339

    assert r["exitfile"]["exit_status"] == 7
    assert parse_rfc3339(r["exitfile"]["exited_at"]) == at
    assert r["deleted"] == [7, at]
    assert [e[1] for e in r["entries"]] == ["bye\n"]
    assert (b / "exit").exists()  # stays for whoever reads it after delete
    assert_cleaned_up(runtime, b, cid)


def test_signal_death_is_128_plus_signal(runtime: Runtime, bundle) -> None:
    b = bundle(["sleep", "1000"])
    r, cid = scenario(_killed, runtime, b)
    assert r["before"] == "running"
    assert r["status"] == 137
    assert r["exitfile"]["exit_status"] == 137
    assert_cleaned_up(runtime, b, cid)


def test_stdin_reaches_the_container(runtime: Runtime, bundle) -> None:
    b = bundle(["cat"])
    r, cid = scenario(_stdin, runtime, b)
    assert r["status"] == 0
    assert [(e[0], e[1]) for e in r["entries"]] == [
        ("stdout", "hello from the shim\n"),
        ("stdout", "second line\n"),
    ]
    assert_cleaned_up(runtime, b, cid)


def test_terminal_through_the_console_socket(runtime: Runtime, bundle) -> None:
    def tty(cfg: dict) -> None:
        cfg["process"]["terminal"] = True

    b = bundle(["sh", "-c", "tty; read x; stty size; echo got $x"], edit=tty)
    r, cid = scenario(_terminal, runtime, b)
    assert r["terminal"] is True
    assert r["status"] == 0
    text = "".join(e[1] for e in r["entries"])
    assert {e[0] for e in r["entries"]} == {"stdout"}
    assert "/dev/pts/0\r\n" in text
    assert "40 100\r\n" in text
    assert "got go\r\n" in text
    assert_cleaned_up(runtime, b, cid)


def test_exec_processes(runtime: Runtime, bundle) -> None:
    b = bundle(["sleep", "1000"])
    r, cid = scenario(_exec, runtime, b)
    assert r["e1_status"] == 3
    out = r["e1_out"]
    assert "".join(d for s, d in out if s == "stdout") == "exec-out\npiped in\n"
    assert "".join(d for s, d in out if s == "stderr") == "exec-err\n"
    assert r["e1_pid_was_in_container"]
    assert r["e2_in_pids"] is True
    assert r["e2_status"] == 137
    assert r["e3_status"] == 0
    assert r["e3_out"].startswith("/dev/pts/")
    assert r["e4_status"] == 0
    assert r["e5_error"], "exec of a missing binary must fail with the runtime's reason"
    assert r["e5_deleted"] is None
    assert r["init_after_e5"] == "running"
    assert r["execs_left"] == []
    assert r["init_log"] == []
    assert_cleaned_up(runtime, b, cid)


def test_early_exits_are_not_lost(runtime: Runtime, bundle) -> None:
    b = bundle(["true"])
    r, cid = scenario(_early, runtime, b)
    runtime.ids.add(cid + "k")
    assert r["true_status"] == 0
    assert r["created_killed"] == 137
    assert r["start_after_exit"] in ("ProcessFinishedError", "StateTransitionError")
    assert_cleaned_up(runtime, b, cid)
    assert not (runtime.root / (cid + "k")).exists()


def test_pause_resume_update(runtime: Runtime, bundle) -> None:
    b = bundle(["sleep", "1000"])
    r, cid = scenario(_pause, runtime, b)
    assert r["paused"] == ["paused", "paused"]
    assert r["resumed"] == ["running", "running"]
    assert r["pid"] in r["pids"]
    assert r["pids_max"] == "123"
    assert r["status"] == 137
    assert_cleaned_up(runtime, b, cid)


def test_failed_create_names_the_reason(runtime: Runtime, bundle) -> None:
    def no_rootfs(cfg: dict) -> None:
        cfg["root"]["path"] = "/nonexistent-rootfs"

    b = bundle(["true"], edit=no_rootfs)
    r, cid = scenario(_create_fails, runtime, b)
    assert r["error"], "create should have failed"
    assert r["state"] == "deleted"
    assert r["status"] != 0
    assert_cleaned_up(runtime, b, cid)
    assert not os.path.exists(b / "exit")


def test_container_signals_are_default(runtime: Runtime, bundle) -> None:
    # CPython ignores SIGPIPE and SIGXFSZ, and an ignored signal survives execve: the shim
    # spawns runtimes with every signal reset, so no container inherits the shim's. pyrunc
    # is Python too and resets them itself before it execs the container's process.
    b = bundle(["grep", "^SigIgn:", "/proc/self/status"])
    r, cid = scenario(_run_to_exit, runtime, b)
    mask = int(r["entries"][0][1].split()[1], 16)
    ignored = [s.name for s in signal.Signals if 0 < s < 64 and mask & (1 << (s - 1))]
    assert ignored == []
    assert_cleaned_up(runtime, b, cid)
