"""The spec built from an image config (containerd_py.oci_spec), and the GC scheduler's
debouncing (containerd_py.gc_service)."""

from __future__ import annotations

import gzip
import io
import threading
import time
from contextlib import AbstractContextManager
from typing import BinaryIO

import pytest

from containerd_py import errdefs
from containerd_py.gc_service import GCScheduler
from containerd_py.metadata.gc import GCReport
from containerd_py.oci_spec import PasswdLookup, build_spec, find_files, merge_env
from tests.unit.services_stack import layer_tar

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:\napp:x:1001:\n"


def test_spec_from_image_config() -> None:
    cfg = {
        "config": {
            "Entrypoint": ["/entry"],
            "Cmd": ["serve", "--port=1"],
            "Env": ["PATH=/opt/bin", "A=1"],
            "WorkingDir": "/srv",
            "User": "1000:50",
        }
    }
    spec = build_spec(cfg, container_id="web", namespace="ns1")
    p = spec["process"]
    assert p["args"] == ["/entry", "serve", "--port=1"]
    assert p["env"] == ["PATH=/opt/bin", "A=1"]
    assert p["cwd"] == "/srv" and p["user"] == {"uid": 1000, "gid": 50}
    assert p["terminal"] is False
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["hostname"] == "web"
    assert spec["linux"]["cgroupsPath"] == "/ns1/web"

    spec = build_spec(cfg, container_id="web", args=["x"], env=["A=2", "B=3"], terminal=True)
    assert spec["process"]["args"] == ["/entry", "x"]
    assert spec["process"]["env"] == ["PATH=/opt/bin", "TERM=xterm", "A=2", "B=3"]


def test_spec_errors_and_defaults() -> None:
    spec = build_spec({"config": {"Cmd": ["sh"]}}, container_id="c")
    assert spec["process"]["cwd"] == "/" and spec["process"]["user"] == {"uid": 0, "gid": 0}
    assert spec["process"]["env"][0].startswith("PATH=")
    with pytest.raises(errdefs.InvalidArgument):
        build_spec({"config": {}}, container_id="c")
    with pytest.raises(errdefs.InvalidArgument):
        build_spec({"config": {"Cmd": "sh"}}, container_id="c")
    with pytest.raises(errdefs.InvalidArgument):
        build_spec({"config": {"Cmd": ["sh"], "User": "app"}}, container_id="c")


def test_user_names_from_the_image() -> None:
    table = PasswdLookup(PASSWD, GROUP)
    assert (table.resolve("app").uid, table.resolve("app").gid) == (1000, 1001)
    assert (table.resolve("app:staff").uid, table.resolve("app:staff").gid) == (1000, 50)
    assert table.resolve("1000").gid == 1001  # the primary group of that uid
    with pytest.raises(errdefs.NotFound):
        table.resolve("nobody")
    spec = build_spec(
        {"config": {"Cmd": ["sh"], "User": "app"}}, container_id="c", lookup=lambda: table
    )
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1001}


def _opener(data: bytes):
    def open_layer() -> AbstractContextManager[BinaryIO]:
        return io.BytesIO(data)

    return open_layer


def test_find_files_in_layers() -> None:
    bottom = layer_tar({"etc/passwd": b"old\n", "etc/group": b"g\n"})
    top = layer_tar({"etc/passwd": PASSWD.encode()}, whiteouts=("etc/group",))
    found = find_files([_opener(gzip.compress(top)), _opener(bottom)], ["/etc/passwd", "etc/group"])
    assert found == {"etc/passwd": PASSWD}
    found = find_files([_opener(bottom)], ["etc/passwd", "etc/group"])
    assert found == {"etc/passwd": "old\n", "etc/group": "g\n"}


def test_merge_env_keeps_positions() -> None:
    assert merge_env(["A=1", "B=2"], ["A=3"], ["C=4"]) == ["A=3", "B=2", "C=4"]


def test_scheduler_debounces_and_collects_now() -> None:
    calls: list[float] = []
    started = threading.Event()

    def collect() -> GCReport:
        calls.append(time.monotonic())
        started.set()
        return GCReport()

    gc = GCScheduler(collect, delay=0.2, max_delay=5)
    try:
        for _ in range(5):
            gc.schedule()
            time.sleep(0.02)
        assert started.wait(5)
        assert gc.wait_idle()
        assert len(calls) == 1  # five requests, one run
        report = gc.collect_now()
        assert isinstance(report, GCReport) and len(calls) == 2 and gc.runs == 2
    finally:
        gc.close()


def test_scheduler_max_delay_and_failures() -> None:
    calls: list[float] = []

    def collect() -> GCReport:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("boom")
        return GCReport()

    gc = GCScheduler(collect, delay=10, max_delay=0.2)
    try:
        gc.schedule()
        time.sleep(0.05)
        gc.schedule()  # the delay restarts, but max_delay still holds
        assert gc.wait_idle(5) and len(calls) == 1
        gc.schedule()
        assert gc.wait_idle(5) and len(calls) == 2  # the thread survived the failure
    finally:
        gc.close()
