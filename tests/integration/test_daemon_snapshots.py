"""`pyctr snapshots` against a real daemon, on overlay (root) and native: prepare, mounts
(printed as mount commands that work), commit, view, ls, usage, info, rm, and events."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_py.snapshots.mount import unmount_all
from tests.daemon import ROOT, Daemon, running_daemon


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    with running_daemon(short_tmp) as d:
        yield d


def pyctr(d: Daemon, *args: str, snapshotter: str = "") -> str:
    pre = ["--snapshotter", snapshotter] if snapshotter else []
    r = subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", d.address, "snapshots", *pre, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:]]


@pytest.mark.parametrize("snapshotter", ["native", pytest.param("overlay", marks=pytest.mark.root)])
def test_snapshot_commands(daemon: Daemon, snapshotter: str, short_tmp: Path) -> None:
    c = daemon.client()
    if snapshotter not in {p.id for p in c.plugins("type==io.pycontainerd.snapshotter.v1")}:
        c.close()
        pytest.skip(f"{snapshotter} is not loaded by this daemon")
    events = c.events('topic~="^/snapshot/"')
    target = tempfile.mkdtemp(dir=short_tmp)
    try:
        out = pyctr(daemon, "prepare", "--target", target, "base-w", snapshotter=snapshotter)
        assert out.startswith("mount -t ")
        subprocess.run(shlex.split(out.splitlines()[0]), check=True)  # as a user would
        try:
            Path(target, "hello").write_text("hi")
        finally:
            unmount_all(target)
        pyctr(daemon, "commit", "base", "base-w", snapshotter=snapshotter)
        pyctr(daemon, "prepare", "work", "base", snapshotter=snapshotter)
        pyctr(daemon, "view", "look", "base", snapshotter=snapshotter)
        assert rows(pyctr(daemon, "ls", snapshotter=snapshotter)) == [
            ["base", "Committed"],
            ["look", "base", "View"],
            ["work", "base", "Active"],
        ]
        lines = pyctr(daemon, "mounts", target, "work", snapshotter=snapshotter).splitlines()
        assert len(lines) == 1
        subprocess.run(shlex.split(lines[0]), check=True)
        try:
            assert Path(target, "hello").read_text() == "hi"
            Path(target, "more").write_text("x")
        finally:
            unmount_all(target)
        usage = rows(pyctr(daemon, "usage", snapshotter=snapshotter))
        assert [r[0] for r in usage] == ["base", "look", "work"]
        assert all(int(r[-1]) >= 1 for r in usage)
        info = json.loads(pyctr(daemon, "info", "work", snapshotter=snapshotter))
        assert info["Kind"] == "Active" and info["Parent"] == "base"
        pyctr(daemon, "rm", "work", "look", snapshotter=snapshotter)
        pyctr(daemon, "rm", "base", snapshotter=snapshotter)
        assert rows(pyctr(daemon, "ls", snapshotter=snapshotter)) == []
        topics = [next(events).topic for _ in range(6)]
        assert topics == [
            "/snapshot/prepare",
            "/snapshot/commit",
            "/snapshot/prepare",
            "/snapshot/remove",
            "/snapshot/remove",
            "/snapshot/remove",
        ]
    finally:
        events.close()
        c.close()
        os.rmdir(target)


def test_removing_a_parent_fails_cleanly(daemon: Daemon) -> None:
    pyctr(daemon, "prepare", "a", snapshotter="native")
    pyctr(daemon, "commit", "a-c", "a", snapshotter="native")
    pyctr(daemon, "prepare", "b", "a-c", snapshotter="native")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.ctr",
            "-a",
            daemon.address,
            "snapshots",
            "--snapshotter",
            "native",
            "rm",
            "a-c",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "child" in r.stderr and len(r.stderr.splitlines()) == 1
    assert [x[0] for x in rows(pyctr(daemon, "ls", snapshotter="native"))] == ["a-c", "b"]
