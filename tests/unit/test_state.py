"""The container record: ids, the fast JSON reader, atomic writes, live status."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci_runtime.jsonread import loads
from oci_runtime.state import (
    ContainerError,
    State,
    Store,
    atomic_write,
    proc_start_time,
)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json)
def test_loads_matches_json(value) -> None:
    text = json.dumps(value)
    assert loads(text) == json.loads(text)
    assert loads(f"  {text}\n") == json.loads(text)


@pytest.mark.parametrize("bad", ["", "{", '{"a": 1} x', "nope", "[1,]"])
def test_loads_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        loads(bad)


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "a b", "é", "x\n"])
def test_bad_ids(cid: str, tmp_path: Path) -> None:
    with pytest.raises(ContainerError, match="invalid container id"):
        Store(tmp_path).check_id(cid)


def test_good_ids(tmp_path: Path) -> None:
    for cid in ["a", "A-b_c.d+e", "0123"]:
        Store(tmp_path).check_id(cid)


def test_save_load_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    (tmp_path / "c1").mkdir()
    rec = State(
        "c1",
        123,
        456,
        "/b",
        "/b/rootfs",
        "2026-01-01T00:00:00.000000000Z",
        {"ociVersion": "1.1.0"},
        {"memory": "/sys/fs/cgroup/memory/x"},
        annotations={"k": "v"},
    )
    store.save(rec)
    back = store.load("c1")
    assert back.to_dict() == rec.to_dict()
    assert store.ids() == ["c1"]
    assert oct((tmp_path / "c1" / "state.json").stat().st_mode & 0o777) == "0o600"


def test_unreadable_record_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "state.json").write_text("{half")
    with pytest.raises(ContainerError, match="c1: unreadable state"):
        Store(tmp_path).load("c1")
    with pytest.raises(ContainerError, match="does not exist"):
        Store(tmp_path).load("c2")


def test_atomic_write_replaces(tmp_path: Path) -> None:
    p = tmp_path / "f"
    atomic_write(p, b"one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]


def test_start_time_of_self_and_gone() -> None:
    assert proc_start_time(os.getpid()) is not None
    assert proc_start_time(2**22 + 7) is None
