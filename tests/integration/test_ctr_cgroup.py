"""`pyctr run --cgroup PATH` (ctr's flag: the task's linux.cgroupsPath) against a real
daemon, on pyrunc and runc, and pyctr through its fast launcher for a whole `run --rm`.

The daemon runs without PYCONTAINERD_CGROUP_PARENT (which would replace any path a client
sets): every task here is given a path under this test's own parent, removed at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from containerd_py.runtime.task_manager import CGROUP_PARENT_ENV
from oci_runtime.launcher import write_launcher
from tests.daemon import ROOT, Daemon
from tests.integration.test_daemon_tasks import IMAGE, _bundles, cleanup_tasks, mkimage_archive
from tests.runtimes import CGROUP_PARENT, CGROUP_ROOT, remove_cgroup
from tests.task_runtime import daemon_args, default_runtime, runtimes_under_test

pytestmark = [
    pytest.mark.root,
    pytest.mark.cgroup_v1,
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs /bin/busybox"),
    pytest.mark.skipif(
        not (CGROUP_ROOT / "memory").is_dir(), reason="needs a cgroup v1 memory hierarchy"
    ),
]


class Stack:
    def __init__(self, daemon: Daemon, parent: str) -> None:
        self.daemon = daemon
        self.parent = parent  # the cgroup every task of a test goes under

    def pyctr(self, *args: str, start: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(start or [sys.executable, "-m", "cli.ctr"]),
                "--address",
                self.daemon.address,
                *args,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ok(self, *args: str, start: list[str] | None = None) -> str:
        r = self.pyctr(*args, start=start)
        assert r.returncode == 0, f"pyctr {' '.join(args)}: {r.stderr}\n{self.daemon.logs_tail()}"
        return r.stdout


@pytest.fixture
def stack(short_tmp: Path) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if k != CGROUP_PARENT_ENV}
    d = Daemon(short_tmp, env=env, args=daemon_args(short_tmp))
    parent = f"{CGROUP_PARENT}/{short_tmp.name}"
    try:
        d.start()
        s = Stack(d, parent)
        s.ok("images", "import", str(mkimage_archive(short_tmp)))
        yield s
    finally:
        d.close()
        cleanup_tasks(d.state)
        remove_cgroup(parent)


@pytest.fixture(params=runtimes_under_test())
def runtime_name(request: pytest.FixtureRequest) -> str:
    return request.param


def memory_cgroup(path: str) -> Path:
    return CGROUP_ROOT / "memory" / path.strip("/")


def commands_in(procs: Path) -> list[list[str]]:
    """The first two words of each process in a cgroup (none while it does not exist)."""
    try:
        pids = procs.read_text().split()
    except FileNotFoundError:
        return []
    out = []
    for pid in pids:
        try:
            out.append(psutil.Process(int(pid)).cmdline()[:2])
        except psutil.Error:  # gone since the read: the runtime's init exec'ing, or exiting
            pass
    return out


def test_run_places_the_task_in_the_given_cgroup(stack: Stack, runtime_name: str) -> None:
    path = f"{stack.parent}/jobs/j1"
    procs = memory_cgroup(path) / "cgroup.procs"
    argv = [sys.executable, "-m", "cli.ctr", "--address", stack.daemon.address, "run", "--rm",
            "--runtime", runtime_name, "--cgroup", path, IMAGE, "j1",
            "sh", "-c", 'read line; echo "got $line"']  # fmt: skip
    with subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as p:
        try:
            # The task waits for a line: until it gets one, its shell is in the cgroup.
            deadline = time.monotonic() + 60
            while commands_in(procs) != [["sh", "-c"]]:
                assert p.poll() is None, p.stderr.read() if p.stderr else ""
                assert time.monotonic() < deadline, f"cgroup: {commands_in(procs)}"
                time.sleep(0.05)
            out, err = p.communicate(b"x\n", timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
    assert (out, p.returncode) == (b"got x\n", 0), err
    # --rm: the runtime's delete removed the cgroup with the container.
    assert not memory_cgroup(path).exists()
    assert stack.ok("containers", "ls", "-q") == ""


def test_a_detached_task_runs_in_its_cgroup_until_removed(stack: Stack, runtime_name: str) -> None:
    path = f"{stack.parent}/d1"
    stack.ok("run", "-d", "--runtime", runtime_name, "--cgroup", path, IMAGE, "d1", "sleep", "300")
    pid = int(stack.ok("tasks", "ls").splitlines()[1].split()[1])
    procs = (memory_cgroup(path) / "cgroup.procs").read_text().split()
    assert str(pid) in procs
    stack.ok("tasks", "rm", "-f", "d1")
    stack.ok("containers", "rm", "d1")
    assert not memory_cgroup(path).exists()


@pytest.mark.skipif(
    default_runtime() != "pyrunc",
    reason="runc and crun clean '..' out of a cgroup path: they would make /escape",
)
def test_a_cgroup_path_the_runtime_refuses_leaves_nothing(stack: Stack) -> None:
    r = stack.pyctr(
        "run", "--rm", "--runtime", "pyrunc", "--cgroup", "/a/../../escape", IMAGE, "bad", "true"
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith("pyctr: ") and r.stderr.count("\n") == 1, r.stderr
    assert "cgroupsPath" in r.stderr and "Traceback" not in r.stderr
    assert stack.ok("containers", "ls", "-q") == ""
    assert stack.ok("snapshots", "ls").count("\n") == 1 + 1  # header + the image's layer
    assert _bundles(stack.daemon.state) == []


def test_the_fast_launcher_runs_a_whole_run_rm(stack: Stack, short_tmp: Path) -> None:
    launcher = short_tmp / "pyctr"
    write_launcher(str(launcher), "cli.ctr:main", ["typer", "grpc", "google.protobuf"])
    start = [str(launcher)]
    assert stack.ok("version", start=start).startswith("Client:\n")
    r = stack.pyctr(
        "run", "--rm", "--cgroup", f"{stack.parent}/l1", IMAGE, "l1", "sh", "-c", "echo hi; exit 3",
        start=start,
    )  # fmt: skip
    assert (r.stdout, r.returncode) == ("hi\n", 3), r.stderr
    assert stack.ok("containers", "ls", "-q", start=start) == ""
