"""The shim's reaper: dispatch by pid with fake exits, then real children in a separate
interpreter (a reaper calls waitpid(-1): it must never run inside pytest's own process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shim.reaper import Exit, ExitFuture, Reaper, exit_status

ROOT = Path(__file__).resolve().parents[2]


class FakeWait:
    """Stands in for os.waitpid: hands out queued (pid, status) pairs."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, int]] = []
        self.children = True

    def __call__(self, pid: int, options: int) -> tuple[int, int]:
        assert (pid, options) == (-1, os.WNOHANG)
        if self.queue:
            return self.queue.pop(0)
        if not self.children:
            raise ChildProcessError
        return 0, 0


def exited(code: int) -> int:
    return code << 8


def killed(sig: int) -> int:
    return sig


@pytest.fixture
def fake() -> tuple[Reaper, FakeWait]:
    w = FakeWait()
    return Reaper(waitpid=w), w


@pytest.mark.parametrize(
    ("status", "expected"),
    [(exited(0), 0), (exited(7), 7), (exited(255), 255), (killed(9), 137), (killed(15), 143)],
)
def test_exit_status_is_dockers(status: int, expected: int) -> None:
    assert exit_status(status) == expected
    assert Exit(1, status, 0).exit_status == expected


def test_exit_before_the_pid_is_known_is_buffered(fake: tuple[Reaper, FakeWait]) -> None:
    reaper, w = fake
    sub = reaper.subscribe()
    w.queue += [(100, exited(1)), (200, exited(2))]  # exits arrive, pids not known yet
    assert reaper.reap() == 2
    sub.narrow(200)
    assert sub.wait(200, timeout=0).exit_status == 2
    assert sub.poll(100) is None  # narrowing dropped what it does not cover
    sub.close()


def test_exits_before_subscribing_are_not_seen(fake: tuple[Reaper, FakeWait]) -> None:
    reaper, w = fake
    w.queue.append((100, exited(1)))
    reaper.reap()
    sub = reaper.subscribe()
    with pytest.raises(TimeoutError):
        sub.wait(100, timeout=0.01)


def test_narrowed_subscription_keeps_only_its_pids(fake: tuple[Reaper, FakeWait]) -> None:
    reaper, w = fake
    sub = reaper.subscribe()
    sub.narrow(5)
    w.queue += [(6, exited(0)), (5, exited(3)), (5, exited(4))]
    reaper.reap()
    assert sub.poll(6) is None
    # pid 5 exited, was reaped, and the number was reused: the first exit is the one
    assert sub.poll(5).exit_status == 3
    assert reaper._by_pid == {5: [sub]}
    sub.close()
    assert reaper._by_pid == {}
    assert reaper._all == []


def test_every_subscriber_gets_the_exit(fake: tuple[Reaper, FakeWait]) -> None:
    reaper, w = fake
    subs = [reaper.subscribe() for _ in range(3)]
    subs[1].narrow(9)
    w.queue.append((9, killed(9)))
    reaper.reap()
    assert [s.wait(9, 0).exit_status for s in subs] == [137, 137, 137]


def test_waiter_is_released_by_the_dispatch(fake: tuple[Reaper, FakeWait]) -> None:
    reaper, w = fake
    sub = reaper.subscribe()
    got: list[Exit] = []
    t = threading.Thread(target=lambda: got.append(sub.wait(42, timeout=10)))
    t.start()
    time.sleep(0.05)
    assert not got
    w.queue.append((42, exited(5)))
    reaper.reap()
    t.join(5)
    assert got[0].pid == 42 and got[0].exit_status == 5
    assert abs(got[0].exited_at - time.time_ns()) < 10 * 10**9


def test_closing_wakes_waiters(fake: tuple[Reaper, FakeWait]) -> None:
    reaper, _ = fake
    sub = reaper.subscribe()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            sub.wait(1, timeout=10)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.05)
    sub.close()
    t.join(5)
    assert isinstance(errors[0], RuntimeError)


def test_reap_stops_when_there_are_no_children(fake: tuple[Reaper, FakeWait]) -> None:
    reaper, w = fake
    w.children = False
    w.queue.append((3, exited(0)))
    assert reaper.reap() == 1
    assert reaper.reap() == 0


def test_future_never_signals_a_reaped_pid(fake: tuple[Reaper, FakeWait]) -> None:
    reaper, w = fake
    sub = reaper.subscribe()
    # a pid that does not exist: os.kill says so, and signal() reports False
    fut = ExitFuture(2**22 + 12345, sub)
    sub.narrow(fut.pid)
    assert fut.signal(0) is False
    w.queue.append((fut.pid, exited(0)))
    reaper.reap()
    assert fut.done()
    assert fut.signal(signal.SIGKILL) is False  # not even tried: the number may be reused
    assert fut.result(0).exit_status == 0


# -- real children, in a child interpreter ---------------------------------------------------


def in_child(fn: Callable[..., Any], *args: Any, timeout: float = 60) -> Any:
    """Run fn(*args) (a module-level function) in a fresh interpreter; its JSON result."""
    code = (
        "import json, sys\n"
        f"from {fn.__module__} import {fn.__name__} as f\n"
        "r = f(*json.loads(sys.argv[1]))\n"
        "sys.stdout.write('\\0' + json.dumps(r))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout.rsplit(b"\0", 1)[1])


def _children() -> dict[str, Any]:
    reaper = Reaper()
    reaper.start()
    try:
        futs = []
        for i in range(40):
            _, fut = reaper.start_child(["sh", "-c", f"exit {i}"])
            futs.append(fut)
        codes = [f.result(10).exit_status for f in futs]
        _, fut = reaper.start_child(["sh", "-c", "kill -9 $$"])
        killed = fut.result(10).exit_status
        r, w = os.pipe()
        _, fut = reaper.start_child(["echo", "hello"], stdout=w)
        os.close(w)
        fut.result(10)
        out = os.read(r, 100).decode()
        _, fut = reaper.start_child(["cat", "/proc/self/status"], stdout=(w2 := os.pipe())[1])
        os.close(w2[1])
        fut.result(10)
        status = os.read(w2[0], 100000).decode()
        sigign = int(next(x for x in status.splitlines() if x.startswith("SigIgn:")).split()[1], 16)
        _, fut = reaper.start_child(["sleep", "30"])
        assert fut.signal(signal.SIGTERM)
        termed = fut.result(10).exit_status
        try:
            reaper.start_child(["/nonexistent/binary"])
            spawn_error = None
        except OSError as e:
            spawn_error = e.errno
        leftover = len(reaper._all) + len(reaper._by_pid)
        return {
            "codes": codes,
            "killed": killed,
            "out": out,
            "sigpipe_ignored": bool(sigign & (1 << (signal.SIGPIPE - 1))),
            "termed": termed,
            "spawn_error": spawn_error,
            "leftover": leftover,
        }
    finally:
        reaper.stop()


def test_real_children_are_reaped_and_dispatched() -> None:
    r = in_child(_children)
    assert r["codes"] == list(range(40))
    assert r["killed"] == 137
    assert r["out"] == "hello\n"
    assert r["termed"] == 143
    # CPython ignores SIGPIPE; the children must not inherit that
    assert r["sigpipe_ignored"] is False
    assert r["spawn_error"] == 2
    assert r["leftover"] == 0  # every subscription was closed


def _orphans() -> dict[str, Any]:
    from shim.reaper import become_subreaper, is_subreaper

    before = is_subreaper()
    become_subreaper()
    reaper = Reaper()
    reaper.start()
    try:
        sub = reaper.subscribe()  # before anything runs: no exit can be missed
        r, w = os.pipe()
        # the shell prints its background child's pid and exits; the child re-parents to us
        _, fut = reaper.start_child(["sh", "-c", "sleep 0.3 & echo $!"], stdout=w)
        os.close(w)
        fut.result(10)
        orphan = int(os.read(r, 100))
        stat = Path(f"/proc/{orphan}/stat").read_text()
        ppid_after = int(stat.rsplit(")", 1)[1].split()[1])
        sub.narrow(orphan)
        ex = sub.wait(orphan, 10)
        # an exit that happens before its pid is known: the child is long reaped when we
        # learn the pid, and the subscription still has it
        sub2 = reaper.subscribe()
        pid = os.posix_spawnp("true", ["true"], os.environ)
        time.sleep(0.3)
        sub2.narrow(pid)
        early = sub2.wait(pid, 0).exit_status
        zombie = os.path.exists(f"/proc/{pid}")
        return {
            "before": before,
            "after": is_subreaper(),
            "ppid": ppid_after,
            "me": os.getpid(),
            "orphan_status": ex.exit_status,
            "early": early,
            "zombie": zombie,
        }
    finally:
        reaper.stop()


def test_subreaper_reaps_orphans_and_keeps_early_exits() -> None:
    r = in_child(_orphans)
    assert r["before"] is False and r["after"] is True
    assert r["ppid"] == r["me"]
    assert r["orphan_status"] == 0
    assert r["early"] == 0
    assert r["zombie"] is False
