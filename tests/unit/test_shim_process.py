"""The process state machine: the transition table, and InitProcess driven by a fake runtime
and fake exits (no root, no container): early exits, exits racing operations, the exit on
disk before wait() returns, and refused operations that leave everything as it was."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shim import process as process_mod
from shim.exitfile import read_exit
from shim.process import (
    TRANSITIONS,
    InitProcess,
    ProcessError,
    ProcessFinishedError,
    State,
    StateTransitionError,
    check_transition,
)
from shim.reaper import Reaper
from shim.runtime_client import OCIRuntimeError

S = State
EXPECTED = {
    (S.CREATED, S.RUNNING),
    (S.CREATED, S.STOPPED),
    (S.CREATED, S.DELETED),
    (S.RUNNING, S.PAUSED),
    (S.RUNNING, S.STOPPED),
    (S.PAUSED, S.RUNNING),
    (S.PAUSED, S.STOPPED),
    (S.STOPPED, S.DELETED),
}


@pytest.mark.parametrize("src", list(State))
@pytest.mark.parametrize("dst", list(State))
def test_transition_table(src: State, dst: State) -> None:
    assert ((src, dst) in EXPECTED) == (dst in TRANSITIONS[src])
    if (src, dst) in EXPECTED:
        check_transition(src, dst)
    else:
        with pytest.raises(StateTransitionError) as e:
            check_transition(src, dst)
        assert e.value.current is src and e.value.target is dst
        assert src.value in str(e.value)


def test_deleted_is_final() -> None:
    assert TRANSITIONS[State.DELETED] == frozenset()


class FakeWait:
    def __init__(self) -> None:
        self.queue: list[tuple[int, int]] = []

    def __call__(self, pid: int, options: int) -> tuple[int, int]:
        return self.queue.pop(0) if self.queue else (0, 0)


class FakeRuntime:
    """Records calls; create writes a pid file. Hooks let a test exit the init mid-call."""

    PID = 4_000_001  # above any real pid_max default: never a real process

    def __init__(self, reaper: Reaper, waits: FakeWait) -> None:
        self.reaper = reaper
        self.waits = waits
        self.calls: list[tuple[Any, ...]] = []
        self.on: dict[str, Any] = {}
        self.log_path = "/dev/null"

    def exit_init(self, status: int) -> None:
        self.waits.queue.append((self.PID, status))
        self.reaper.reap()

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        hook = self.on.get(name)
        if hook:
            hook()

    def create(self, id: str, bundle: str, *, pid_file: str, console_socket: Any, stdio: Any):
        Path(pid_file).write_text(str(self.PID))
        self._call("create", id)

    def start(self, id: str) -> None:
        self._call("start", id)

    def kill(self, id: str, sig: int, all: bool = False) -> None:
        self._call("kill", id, int(sig), all)

    def delete(self, id: str, force: bool = False) -> None:
        self._call("delete", id, force)

    def pause(self, id: str) -> None:
        self._call("pause", id)

    def resume(self, id: str) -> None:
        self._call("resume", id)

    def update(self, id: str, resources: dict) -> None:
        self._call("update", id, resources)

    def ps(self, id: str) -> list[int]:
        self._call("ps", id)
        return [self.PID]


@pytest.fixture
def env(tmp_path: Path):
    waits = FakeWait()
    reaper = Reaper(waitpid=waits)
    rt = FakeRuntime(reaper, waits)

    def make(**kw: Any) -> InitProcess:
        return InitProcess(
            "c1", str(tmp_path), rt, reaper, terminal=False, check_subreaper=False, **kw
        )

    yield make, rt, reaper, tmp_path
    assert reaper._all == [] and reaper._by_pid == {}, "a subscription was left open"


def test_lifecycle(env) -> None:
    make, rt, _, bundle = env
    p = make()
    assert p.state is State.CREATED
    p.create()
    assert p.pid == FakeRuntime.PID and p.state is State.CREATED
    p.start()
    assert p.state is State.RUNNING
    p.pause()
    assert p.state is State.PAUSED
    p.resume()
    assert p.pids() == [FakeRuntime.PID]
    p.update({"pids": {"limit": 5}})
    p.kill(15)
    rt.exit_init(9)  # killed by SIGKILL
    assert p.wait(5)[0] == 137
    assert p.state is State.STOPPED
    rec = p.delete()
    assert rec.exit_status == 137 and rec.pid == FakeRuntime.PID
    assert p.state is State.DELETED
    assert read_exit(str(bundle)) == rec
    assert [c[0] for c in rt.calls] == [
        "create",
        "start",
        "pause",
        "resume",
        "ps",
        "update",
        "kill",
        "delete",
    ]
    assert rt.calls[-1] == ("delete", "c1", False)


def test_exit_before_the_pid_file_is_read_is_not_lost(env) -> None:
    make, rt, _, bundle = env
    p = make()
    # the init dies inside `runtime create`, before the shim has read its pid
    rt.on["create"] = lambda: rt.exit_init(7 << 8)
    p.create()
    assert p.wait(5)[0] == 7
    assert p.state is State.STOPPED
    with pytest.raises(ProcessError):
        p.start()
    assert read_exit(str(bundle)).exit_status == 7
    p.delete()


def test_exit_during_start_leaves_it_stopped(env) -> None:
    make, rt, _, _ = env
    p = make()
    p.create()
    rt.on["start"] = lambda: rt.exit_init(0)  # `true`: gone before start returns
    p.start()
    assert p.wait(5)[0] == 0
    assert p.state is State.STOPPED
    p.delete()


def test_exit_while_paused_wins(env) -> None:
    make, rt, _, _ = env
    p = make()
    p.create()
    p.start()
    rt.on["pause"] = lambda: rt.exit_init(9)
    p.pause()
    p.wait(5)
    assert p.state is State.STOPPED
    p.delete()


def test_exit_is_on_disk_before_waiters_are_released(env, monkeypatch) -> None:
    make, rt, _, bundle = env
    real = process_mod.write_exit

    def slow_write(*a: Any) -> None:
        time.sleep(0.3)
        real(*a)

    monkeypatch.setattr(process_mod, "write_exit", slow_write)
    p = make()
    p.create()
    p.start()
    seen: list[Any] = []

    def waiter() -> None:
        p.wait(10)
        seen.append(read_exit(str(bundle)))

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    rt.exit_init(3 << 8)
    for t in threads:
        t.join(10)
    assert [r.exit_status for r in seen] == [3, 3, 3]
    p.delete()


def test_refused_operations_change_nothing(env) -> None:
    make, rt, _, _ = env
    p = make()
    with pytest.raises(StateTransitionError):
        p.wait(0)  # nothing to wait for before create
    p.create()
    for op in (p.pause, p.resume):
        with pytest.raises(StateTransitionError):
            op()
    p.start()
    with pytest.raises(StateTransitionError):
        p.start()
    with pytest.raises(StateTransitionError):
        p.delete()  # running: needs force
    with pytest.raises(StateTransitionError):
        p.resume()
    assert [c[0] for c in rt.calls] == ["create", "start"]
    assert p.state is State.RUNNING
    rt.exit_init(0)
    p.wait(5)
    with pytest.raises(ProcessFinishedError):
        p.kill(9)
    with pytest.raises(ProcessFinishedError):
        p.update({})
    p.delete()
    with pytest.raises(StateTransitionError):
        p.delete()
    with pytest.raises(StateTransitionError):
        p.kill(9)


def test_force_delete_of_a_running_container(env) -> None:
    make, rt, _, _ = env
    p = make()
    p.create()
    p.start()
    rt.on["delete"] = lambda: rt.exit_init(9)  # delete --force kills it
    assert p.delete(force=True).exit_status == 137
    assert rt.calls[-1] == ("delete", "c1", True)
    assert p.state is State.DELETED


def test_delete_of_a_created_container_kills_it(env) -> None:
    make, rt, _, _ = env
    p = make()
    p.create()
    rt.on["delete"] = lambda: rt.exit_init(9)
    assert p.delete().exit_status == 137
    assert rt.calls[-1] == ("delete", "c1", True)


def test_kill_racing_the_exit_is_process_finished(env) -> None:
    make, rt, _, _ = env
    p = make()
    p.create()
    p.start()

    def exit_then_fail() -> None:
        rt.exit_init(0)
        raise OCIRuntimeError("kill", 1, "container not running")

    rt.on["kill"] = exit_then_fail
    with pytest.raises(ProcessFinishedError):
        p.kill(15)
    p.wait(5)
    p.delete()


def test_failed_create_leaves_nothing(env) -> None:
    make, rt, _, bundle = env

    def fail() -> None:
        raise OCIRuntimeError("create", 1, "no such image")

    rt.on["create"] = fail
    p = make()
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OCIRuntimeError):
        p.create()
    assert p.state is State.DELETED
    assert set(os.listdir("/proc/self/fd")) <= before  # pipes closed
    assert read_exit(str(bundle)) is None


def test_delete_without_an_exit_records_255(env) -> None:
    make, _, _, bundle = env
    p = make()
    p.create()
    p.start()
    rec = p.delete(force=True, timeout=0.1)  # the exit never comes
    assert rec.exit_status == 255
    assert read_exit(str(bundle)).exit_status == 255
    assert p.state is State.DELETED


def test_exec_ids_are_checked(env) -> None:
    make, rt, _, _ = env
    p = make()
    p.create()
    with pytest.raises(StateTransitionError):
        p.exec("e1", {"args": ["true"]})  # not running yet
    p.start()
    for bad in ("", "a/b", "..", "."):
        with pytest.raises(ProcessError):
            p.exec(bad, {"args": ["true"]})
    e = p.exec("e1", {"args": ["true"]})
    assert e.state is State.CREATED
    with pytest.raises(ProcessError):
        p.exec("e1", {"args": ["true"]})
    assert e.delete() is None  # never started
    assert p.execs == {}
    rt.exit_init(0)
    p.wait(5)
    p.delete()
