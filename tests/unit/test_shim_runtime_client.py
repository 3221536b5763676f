"""RuntimeClient against a fake runtime script: the command lines it builds, the error it
raises (the JSON log's last error, else stderr), timeouts, and outputs read without waiting
for EOF. Runs in a child interpreter: the client waits through a reaper (waitpid(-1))."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from shim.runtime_client import runtime_command
from tests.unit.test_shim_reaper import in_child

FAKE = r"""#!/bin/sh
# a stand-in OCI runtime: --root R --log L --log-format json COMMAND ARGS...
log="$4"
cmd="$7"
echo "$*" >> "$FAKE_CALLS"
case "$cmd" in
state) echo '{"ociVersion":"1.0.2","id":"c1","status":"running","pid":42}' ;;
ps) echo '[42,43]' ;;
update) cat > "$FAKE_INPUT" ;;
kill)
    echo '{"level":"warning","msg":"just a warning","time":"x"}' >> "$log"
    echo '{"level":"error","msg":"first error","time":"x"}' >> "$log"
    echo '{"level":"error","msg":"container not running","time":"x"}' >> "$log"
    echo 'noise on stderr' >&2
    exit 1 ;;
delete) echo 'only stderr says why' >&2; exit 3 ;;
pause) sleep 5 & exit 0 ;;
start) sleep 30 ;;
*) exit 0 ;;
esac
"""


def _client_calls(tmp: str) -> dict[str, Any]:
    from shim.reaper import Reaper
    from shim.runtime_client import OCIRuntimeError, RuntimeClient

    fake = os.path.join(tmp, "fake-runtime")
    with open(fake, "w") as f:
        f.write(FAKE)
    os.chmod(fake, 0o755)
    calls = os.path.join(tmp, "calls")
    env = {
        **os.environ,
        "FAKE_CALLS": calls,
        "FAKE_INPUT": os.path.join(tmp, "input"),
    }
    log = os.path.join(tmp, "log.json")
    with open(log, "w") as f:  # an error from an earlier call must not be reported again
        f.write('{"level":"error","msg":"old error","time":"x"}\n')
    reaper = Reaper()
    reaper.start()
    try:
        rc = RuntimeClient(fake, os.path.join(tmp, "root"), log, reaper, env=env, timeout=1)
        out: dict[str, Any] = {}
        out["state"] = rc.state("c1")
        out["ps"] = rc.ps("c1")
        rc.update("c1", {"pids": {"limit": 7}})
        with open(os.path.join(tmp, "input")) as f:
            out["input"] = f.read()
        errors = {}
        for name, call in (
            ("kill", lambda: rc.kill("c1", 9, all=True)),
            ("delete", lambda: rc.delete("c1", force=True)),
            ("start", lambda: rc.start("c1")),
        ):
            try:
                call()
                errors[name] = None
            except OCIRuntimeError as e:
                errors[name] = [e.command, e.exit_status, e.message]
        out["errors"] = errors
        import time

        t0 = time.monotonic()
        rc.pause("c1")  # leaves a child holding stdout open: no waiting for EOF
        out["pause_secs"] = time.monotonic() - t0
        r, w = os.pipe()
        rc.create("c1", "/b", pid_file="/b/init.pid", console_socket="/s", stdio=(None, w, w))
        rc.exec("c1", "/p.json", pid_file="/e.pid", stdio=(None, w, w))
        rc.resume("c1")
        os.close(w)
        os.close(r)
        with open(calls) as f:
            out["calls"] = f.read().splitlines()
        out["leftover"] = len(reaper._all) + len(reaper._by_pid)
        return out
    finally:
        reaper.stop()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rtc")


@pytest.fixture(scope="module")
def result(tmp: Path) -> dict[str, Any]:
    return in_child(_client_calls, str(tmp))


def test_outputs_are_parsed(result: dict[str, Any]) -> None:
    assert result["state"]["status"] == "running"
    assert result["ps"] == [42, 43]
    assert result["input"] == '{"pids": {"limit": 7}}'


def test_errors_name_the_runtimes_reason(result: dict[str, Any]) -> None:
    errs = result["errors"]
    # the last level=error line this call wrote, not an older one, not a warning
    assert errs["kill"] == ["kill", 1, "container not running"]
    # no JSON error: stderr
    assert errs["delete"] == ["delete", 3, "only stderr says why"]
    # killed after the timeout
    assert errs["start"][0:2] == ["start", None]
    assert "did not finish within 1s" in errs["start"][2]


def test_no_wait_for_eof(result: dict[str, Any]) -> None:
    assert result["pause_secs"] < 2


def test_command_lines(result: dict[str, Any], tmp: Path) -> None:
    g = f"--root {tmp}/root --log {tmp}/log.json --log-format json"
    assert result["calls"] == [
        f"{g} state c1",
        f"{g} ps --format json c1",
        f"{g} update --resources - c1",
        f"{g} kill --all c1 9",
        f"{g} delete --force c1",
        f"{g} start c1",
        f"{g} pause c1",
        f"{g} create --bundle /b --pid-file /b/init.pid --console-socket /s c1",
        f"{g} exec --process /p.json --pid-file /e.pid --detach c1",
        f"{g} resume c1",
    ]
    assert result["leftover"] == 0


def test_runtime_names() -> None:
    assert runtime_command("pyrunc", "/usr/local/bin/pyrunc") == (["/usr/local/bin/pyrunc"], {})
    argv, extra = runtime_command("pyrunc")
    assert argv == [sys.executable, "-m", "oci_runtime"]
    tree = str(Path(__file__).resolve().parents[2])
    assert extra["PYTHONPATH"].split(os.pathsep)[0] == tree
    assert runtime_command("/opt/x/runc") == (["/opt/x/runc"], {})
    with pytest.raises(FileNotFoundError):
        runtime_command("no-such-runtime-anywhere")
