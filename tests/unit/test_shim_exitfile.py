"""`<bundle>/exit`: written atomically, read back exactly, foreign content refused."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from shim.exitfile import ExitFileError, ExitRecord, read_exit, write_exit

AT = 1_796_036_400_123_456_789


def test_round_trip(tmp_path: Path) -> None:
    write_exit(str(tmp_path), 4242, 137, AT)
    assert read_exit(str(tmp_path)) == ExitRecord(4242, 137, AT)
    assert json.loads((tmp_path / "exit").read_text()) == {
        "pid": 4242,
        "exit_status": 137,
        "exited_at": "2026-11-30T11:00:00.123456789Z",
    }
    assert os.listdir(tmp_path) == ["exit"]  # no temp file left behind


def test_no_file_is_none(tmp_path: Path) -> None:
    assert read_exit(str(tmp_path)) is None


def test_rewrite_replaces(tmp_path: Path) -> None:
    write_exit(str(tmp_path), 1, 0, AT)
    write_exit(str(tmp_path), 2, 7, AT + 1)
    assert read_exit(str(tmp_path)) == ExitRecord(2, 7, AT + 1)


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"pid": 1}', b'{"pid": "1", "exit_status": 0, "exited_at": "x"}',
     b'{"pid": 1, "exit_status": 0, "exited_at": "yesterday"}', b"\xff\xfe"],
)  # fmt: skip
def test_foreign_content_is_an_error_not_a_crash(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "exit").write_bytes(content)
    with pytest.raises(ExitFileError):
        read_exit(str(tmp_path))


def test_a_leftover_temp_file_is_ignored(tmp_path: Path) -> None:
    # a shim killed between write and rename leaves its temp file; readers never see it
    (tmp_path / "exit.tmp999").write_text('{"pid": 1, "exit_st')
    assert read_exit(str(tmp_path)) is None
    write_exit(str(tmp_path), 5, 1, AT)
    assert read_exit(str(tmp_path)) == ExitRecord(5, 1, AT)


def test_readers_see_whole_records_while_it_is_rewritten(tmp_path: Path) -> None:
    write_exit(str(tmp_path), 1, 1, AT)
    stop = threading.Event()
    errors: list[Exception] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                rec = read_exit(str(tmp_path))
                assert rec is not None and rec.exit_status == rec.pid % 256
            except Exception as e:  # a torn read would land here
                errors.append(e)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for pid in range(1, 300):
        write_exit(str(tmp_path), pid, pid % 256, AT + pid)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
