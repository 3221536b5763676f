"""The shim's Stats, read from the container's cgroup files (shim/metrics.py), against what
the runtime itself reports for the same container (`<runtime> events --stats`), on pyrunc
and runc: the same limits and counts, counters that only grow, and the same keys. On crun,
which has no `events` command, the shim's own reading is all there is."""

from __future__ import annotations

import json
from typing import Any

import pytest

from containerd_py.api.runtime.task.v1 import shim_pb2 as pb
from shim.service import stats_from_runtime
from tests.integration.test_shim_server import _any_json, make, rt, shims, wait_for
from tests.runtimes import Runtime

pytestmark = [pytest.mark.root]
__all__ = ["make", "rt", "shims"]  # fixtures, imported to be used here


def runtime_stats(rt: Runtime, cid: str) -> Any:
    out = rt.cmd("events", "--stats", cid).stdout
    return stats_from_runtime(json.loads(out.splitlines()[0])["data"])


def test_stats_agree_with_the_runtime(rt: Runtime, shims: Any, make: Any) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["linux"].setdefault("resources", {}).update(
            memory={"limit": 48 << 20}, pids={"limit": 40}
        )

    # Three processes: the shell, its subshell, and the subshell's sleep.
    s = shims(make(["sh", "-c", "(while :; do sleep 1; done) & exec sleep 1000"], edit=edit))
    s.start()
    s.create()
    s.start_task()
    wait_for(lambda: len(s.call("Pids", pb.PidsRequest(id=s.id)).processes) == 3)
    mine = s.call("Stats", pb.StatsRequest(id=s.id)).stats
    assert (mine.memory.limit, mine.pids.limit, mine.pids.current) == (48 << 20, 40, 3)
    assert mine.memory.usage > 0 and mine.cpu.usage_total_ns > 0
    if rt.name != "crun":  # crun has no `events` command (and so no stats of its own)
        before = runtime_stats(rt, s.id)
        mine = s.call("Stats", pb.StatsRequest(id=s.id)).stats
        after = runtime_stats(rt, s.id)
        assert (before.memory.limit, before.pids.limit, before.pids.current) == (48 << 20, 40, 3)
        assert before.cpu.usage_total_ns <= mine.cpu.usage_total_ns <= after.cpu.usage_total_ns
        assert set(mine.memory.raw) == set(before.memory.raw)
    # An update shows in the next Stats (the files are read afresh each time).
    s.call("Update", pb.UpdateRequest(id=s.id, resources=_any_json({"pids": {"limit": 50}})))
    assert s.call("Stats", pb.StatsRequest(id=s.id)).stats.pids.limit == 50
    s.kill(9, all=True)
    assert s.wait().exit_status == 137
    s.delete()
