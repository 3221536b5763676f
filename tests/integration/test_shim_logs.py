"""A container's output under load through the shim: rotation at max_size loses nothing
within max_files, and a container that writes a lot with nobody attached (and with an
attached client that never reads) is never blocked by the shim."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from tests.integration.test_shim_process import Shim, assert_cleaned_up, scenario
from tests.runtimes import Runtime

pytestmark = [pytest.mark.root]


def _rotating(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    from shim.logs import log_files, read_logs

    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle, max_size=64 * 1024, max_files=20)
        p.create()
        p.start()
        status, _ = p.wait(60)
        p.delete()
        path = f"{bundle}/ctr-json.log"
        return {
            "status": status,
            "files": [[f, os.path.getsize(f)] for f in log_files(path)],
            "logs": [e.log for e in read_logs(path)],
        }


def test_rotation_at_max_size_loses_nothing(runtime: Runtime, bundle) -> None:
    b = bundle(["seq", "1", "5000"])
    r, cid = scenario(_rotating, runtime, b)
    assert r["status"] == 0
    files = r["files"]
    assert len(files) >= 4, files
    assert files[-1][0].endswith("ctr-json.log")
    for name, size in files:
        assert size < 64 * 1024 + 64 * 1024, (name, size)  # at most one read's batch over
    assert r["logs"] == [f"{i}\n" for i in range(1, 5001)]
    assert_cleaned_up(runtime, b, cid)


def _flood(rt: str, root: str, bundle: str, cid: str) -> dict[str, Any]:
    from shim.logs import read_logs

    with Shim(rt, root, bundle) as s:
        p = s.init(cid, bundle, max_size=8 << 20, max_files=3)
        # an attached client that never reads: it must be dropped, not waited for
        stuck = p.subscribe(max_bytes=1 << 20)
        p.create()
        t0 = time.monotonic()
        p.start()
        status, _ = p.wait(300)
        secs = time.monotonic() - t0
        p.delete()
        last: dict[str, Any] = {}
        n = 0
        for e in read_logs(f"{bundle}/ctr-json.log"):
            last[e.stream] = [e.log, e.partial]
            n += 1
        return {"status": status, "secs": secs, "dropped": stuck.dropped, "last": last, "n": n}


@pytest.mark.slow
def test_lots_of_output_with_nobody_attached_never_blocks(runtime: Runtime, bundle) -> None:
    # 50 MiB in 100-byte lines as fast as the container can write them. (Not `yes | head`:
    # that relies on SIGPIPE, which pyrunc leaves ignored in the container; see
    # test_shim_process.py::test_container_signals_are_default.)
    script = "head -c 52428800 /dev/zero | tr '\\0' x | fold -w 99; echo done >&2"
    b = bundle(["sh", "-c", script])
    r, cid = scenario(_flood, runtime, b, timeout=300)
    assert r["status"] == 0
    assert r["dropped"] is True
    # The end of both streams is in the log: fold leaves the last 83 bytes without a
    # newline, a partial entry flushed at EOF. 3 files of 8 MiB keep the last ~130k lines.
    rest = 52428800 % 99
    assert r["last"] == {"stdout": ["x" * rest, True], "stderr": ["done\n", False]}
    assert r["n"] > 100_000
    assert_cleaned_up(runtime, b, cid)
    print(f"{runtime.name}: 50 MiB through the shim in {r['secs']:.1f}s")
