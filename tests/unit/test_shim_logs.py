"""The shim's json-file log: docker's line format, 16 KiB partial lines, rotation, the reader
across rotated files (tail, since, until, follow), and live subscribers that never block."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import threading
import time
from pathlib import Path

import pytest

from shim.logs import (
    MAX_LINE,
    Fanout,
    LogEntry,
    LogWriter,
    encode_entry,
    escape,
    log_files,
    read_logs,
    split_lines,
)
from shim.timestamps import parse_rfc3339, rfc3339_nano

# Go's RFC3339Nano in UTC: up to 9 fraction digits, no trailing zero, no fraction at all on
# a whole second.
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$")

# -- times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_796_036_400_123_456_789, "2026-11-30T11:00:00.123456789Z"),
        (1_796_036_400_120_000_000, "2026-11-30T11:00:00.12Z"),
        (1_796_036_400_000_000_001, "2026-11-30T11:00:00.000000001Z"),
        (951_782_400_500_000_000, "2000-02-29T00:00:00.5Z"),
    ],
)
def test_rfc3339_nano_is_gos_format(ns: int, text: str) -> None:
    assert rfc3339_nano(ns) == text
    assert parse_rfc3339(text) == ns


def test_parse_matches_datetime_for_many_times() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        ns = rng.randrange(0, 4_000_000_000 * 10**9)
        text = rfc3339_nano(ns)
        assert TIME_RE.match(text), text
        assert parse_rfc3339(text) == ns
        secs = int(dt.datetime.fromisoformat(text[:19] + "+00:00").timestamp())
        assert secs == ns // 10**9


def test_parse_offsets_and_rejects_garbage() -> None:
    assert parse_rfc3339("2026-11-30T12:00:00.5+01:00") == parse_rfc3339("2026-11-30T11:00:00.5Z")
    assert parse_rfc3339("2026-11-30T06:30:00-04:30") == parse_rfc3339("2026-11-30T11:00:00Z")
    for bad in ("", "2026-11-30", "2026-11-30T11:00:00", "2026-13-01T00:00:00Z", "yesterday"):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


# -- the line format -------------------------------------------------------------------------


def test_entry_is_dockers_line() -> None:
    ns = 1_796_036_400_123_456_789
    assert encode_entry(b"hello", "stdout", ns) == (
        b'{"log":"hello\\n","stream":"stdout","time":"2026-11-30T11:00:00.123456789Z"}\n'
    )
    assert encode_entry(b"part", "stderr", ns, newline=False) == (
        b'{"log":"part","stream":"stderr","time":"2026-11-30T11:00:00.123456789Z"}\n'
    )


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"plain text 123", b"plain text 123"),
        (b'q"b\\', b'q\\"b\\\\'),
        (b"<a href='x'>&", b"\\u003ca href='x'\\u003e\\u0026"),
        (b"tab\there\rcr", b"tab\\u0009here\\rcr"),
        (b"\x00\x01\x1b[0m\x7f", b"\\u0000\\u0001\\u001b[0m\x7f"),
        ("é ✓ 😀".encode(), "é ✓ 😀".encode()),
        ("\u2028\u2029".encode(), b"\\u2028\\u2029"),
        # one U+FFFD per invalid byte, as Go's utf8.DecodeRune walks them
        (b"a\xffb", b"a\\ufffdb"),
        (b"\xe2\x82", b"\\ufffd\\ufffd"),
        (b"\xc0\xaf", b"\\ufffd\\ufffd"),
    ],
)
def test_escaping_follows_docker(raw: bytes, escaped: bytes) -> None:
    assert escape(raw) == escaped
    # and it is JSON whose text is the input where the input was valid UTF-8
    text = json.loads(b'"' + escaped + b'"')
    assert text == raw.decode("utf-8", "replace") or "\ufffd" in text


def test_split_lines_keeps_a_partial_line_for_later() -> None:
    pieces, carry = split_lines(b"", b"one\ntwo\nthr")
    assert pieces == [(b"one", True), (b"two", True)]
    assert carry == b"thr"
    pieces, carry = split_lines(carry, b"ee\n\n")
    assert pieces == [(b"three", True), (b"", True)]
    assert carry == b""


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (MAX_LINE - 1, [(MAX_LINE - 1, True)]),
        # a full 16 KiB buffer without a newline goes out as a partial entry; the newline
        # that follows is then a line of its own, as docker's copier does it
        (MAX_LINE, [(MAX_LINE, False), (0, True)]),
        (MAX_LINE + 5, [(MAX_LINE, False), (5, True)]),
        (2 * MAX_LINE + 1, [(MAX_LINE, False), (MAX_LINE, False), (1, True)]),
    ],
)
def test_long_lines_are_cut_at_16k(length: int, expected: list[tuple[int, bool]]) -> None:
    pieces, carry = split_lines(b"", b"x" * length + b"\n")
    assert [(len(p), c) for p, c in pieces] == expected
    assert carry == b""


def test_long_line_without_newline_is_flushed_only_in_16k_pieces() -> None:
    pieces, carry = split_lines(b"", b"y" * (MAX_LINE * 2 + 100))
    assert [(len(p), c) for p, c in pieces] == [(MAX_LINE, False), (MAX_LINE, False)]
    assert len(carry) == 100


def _entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_writer_splits_streams_and_flushes_partial_at_eof(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = LogWriter(str(path))
    w.write("stdout", b"a1\na")
    w.write("stderr", b"e1\n")
    w.write("stdout", b"2\nno newline")
    w.end_stream("stdout")
    w.close()
    got = [(e["stream"], e["log"]) for e in _entries(path)]
    assert got == [
        ("stdout", "a1\n"),
        ("stderr", "e1\n"),
        ("stdout", "a2\n"),
        ("stdout", "no newline"),
    ]
    for e in _entries(path):
        assert list(e) == ["log", "stream", "time"]
        assert TIME_RE.match(e["time"])


def test_writer_writes_through_each_call(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = LogWriter(str(path))
    w.write("stdout", b"now\n")
    # nothing buffered in the shim: another process sees the line at once
    assert b'"now\\n"' in path.read_bytes()
    w.close()


def test_writer_appends_to_an_existing_log(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = LogWriter(str(path))
    w.write("stdout", b"first\n")
    w.close()
    w = LogWriter(str(path))
    w.write("stdout", b"second\n")
    w.close()
    assert [e["log"] for e in _entries(path)] == ["first\n", "second\n"]


def _write_numbered(w: LogWriter, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        w.write("stdout" if i % 3 else "stderr", f"line {i:05d} {'x' * 40}\n".encode())


def test_rotation_keeps_max_files_and_loses_nothing_within_them(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = LogWriter(str(path), max_size=2000, max_files=4)
    _write_numbered(w, 60)  # ~130 bytes an entry: ~8000 bytes, fits in 4 files
    w.close()
    files = log_files(str(path))
    assert files == [f"{path}.3", f"{path}.2", f"{path}.1", str(path)]
    for f in files:
        size = os.path.getsize(f)
        # a file is rotated once it reached max_size: it overshoots by one entry at most
        assert size < 2000 + 200, (f, size)
    logs = [e.log for e in read_logs(str(path))]
    assert logs == [f"line {i:05d} {'x' * 40}\n" for i in range(60)]


def test_rotation_drops_the_oldest_file(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = LogWriter(str(path), max_size=1000, max_files=2)
    _write_numbered(w, 100)
    w.close()
    assert not Path(f"{path}.2").exists()
    nums = [int(e.log.split()[1]) for e in read_logs(str(path))]
    # what is kept is the newest, contiguous, and ends at the last line
    assert nums == list(range(nums[0], 100))
    # one full file (~1000 bytes of ~120-byte entries) plus the current one
    assert 9 <= len(nums) <= 20


def test_one_file_is_truncated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = LogWriter(str(path), max_size=500, max_files=1)
    _write_numbered(w, 50)
    w.close()
    assert log_files(str(path)) == [str(path)]
    assert os.path.getsize(path) < 500 + 200
    nums = [int(e.log.split()[1]) for e in read_logs(str(path))]
    assert nums == list(range(nums[0], 50))


def test_max_files_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LogWriter(str(tmp_path / "c.log"), max_files=0)


# -- reading ---------------------------------------------------------------------------------


def _fixed_log(tmp_path: Path) -> tuple[Path, list[int]]:
    """Three files of hand-made entries one second apart: c.log.2, c.log.1, c.log."""
    path = tmp_path / "c.log"
    base = 1_796_036_400 * 10**9
    times = [base + i * 10**9 for i in range(9)]
    for k, name in enumerate([f"{path}.2", f"{path}.1", str(path)]):
        with open(name, "wb") as f:
            for i in range(k * 3, k * 3 + 3):
                f.write(encode_entry(f"m{i}".encode(), "stdout", times[i]))
    return path, times


def test_reader_goes_through_rotated_files_in_order(tmp_path: Path) -> None:
    path, times = _fixed_log(tmp_path)
    got = list(read_logs(str(path)))
    assert [e.log for e in got] == [f"m{i}\n" for i in range(9)]
    assert [e.time_ns for e in got] == times
    assert all(e.stream == "stdout" and not e.partial for e in got)


@pytest.mark.parametrize("tail", [0, 1, 2, 4, 8, 9, 50])
def test_tail_counts_across_files(tmp_path: Path, tail: int) -> None:
    path, _ = _fixed_log(tmp_path)
    got = [e.log for e in read_logs(str(path), tail=tail)]
    assert got == [f"m{i}\n" for i in range(9)][len(range(9)) - min(tail, 9) :]


def test_since_and_until(tmp_path: Path) -> None:
    path, times = _fixed_log(tmp_path)
    assert [e.log for e in read_logs(str(path), since=rfc3339_nano(times[4]))] == [
        f"m{i}\n" for i in range(4, 9)
    ]
    assert [e.log for e in read_logs(str(path), since=times[7] / 1e9)] == ["m7\n", "m8\n"]
    assert [e.log for e in read_logs(str(path), until=rfc3339_nano(times[1]))] == [
        "m0\n",
        "m1\n",
    ]
    assert [e.log for e in read_logs(str(path), since=times[2] / 1e9, tail=2)] == [
        "m7\n",
        "m8\n",
    ]
    assert [e.log for e in read_logs(str(path), since=times[7] / 1e9, tail=5)] == [
        "m7\n",
        "m8\n",
    ]


def test_reader_skips_torn_and_foreign_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    with open(path, "wb") as f:
        f.write(encode_entry(b"ok1", "stdout", 10**18))
        f.write(b"not json\n")
        f.write(b'{"log":"no time"}\n')
        f.write(encode_entry(b"ok2", "stderr", 10**18 + 1))
        f.write(b'{"log":"half a line, being writ')
    assert [(e.stream, e.log) for e in read_logs(str(path))] == [
        ("stdout", "ok1\n"),
        ("stderr", "ok2\n"),
    ]


def test_missing_log_reads_as_empty(tmp_path: Path) -> None:
    assert list(read_logs(str(tmp_path / "none.log"))) == []


def test_follow_sees_new_entries_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = LogWriter(str(path), max_size=1500, max_files=10)
    _write_numbered(w, 5)
    done = threading.Event()
    got: list[LogEntry] = []

    def reader() -> None:
        for e in read_logs(str(path), follow=True, stop=done.is_set, poll_interval=0.01):
            got.append(e)

    t = threading.Thread(target=reader)
    t.start()
    for start in range(5, 100, 5):
        _write_numbered(w, 5, start)
        time.sleep(0.005)
    deadline = time.monotonic() + 10
    while len(got) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    t.join(10)
    w.close()
    assert len(log_files(str(path))) > 3  # it did rotate while we followed
    assert [int(e.log.split()[1]) for e in got] == list(range(100))


def test_follow_starts_after_a_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    whole = encode_entry(b"later", "stdout", 10**18)
    path.write_bytes(encode_entry(b"first", "stdout", 10**18) + whole[:10])
    stop = threading.Event()
    it = read_logs(str(path), follow=True, stop=stop.is_set, poll_interval=0.01)
    assert next(it).log == "first\n"
    with open(path, "ab") as f:
        f.write(whole[10:])
    assert next(it).log == "later\n"
    stop.set()
    assert list(it) == []


# -- live subscribers ------------------------------------------------------------------------


def test_fanout_delivers_then_ends() -> None:
    f = Fanout()
    a = f.subscribe()
    f.publish("stdout", b"x")
    f.publish("stderr", b"y")
    f.close()
    assert list(a) == [("stdout", b"x"), ("stderr", b"y")]
    assert not a.dropped
    # subscribing after the end gives an ended attachment, not a hang
    assert f.subscribe().get(timeout=1) is None


def test_slow_subscriber_is_dropped_and_never_blocks() -> None:
    f = Fanout()
    slow = f.subscribe(max_bytes=1000)
    fast = f.subscribe(max_bytes=1 << 30)
    t0 = time.monotonic()
    for _ in range(10_000):
        f.publish("stdout", b"z" * 100)
    assert time.monotonic() - t0 < 5
    assert slow.dropped
    # it keeps what it had queued, then ends
    assert sum(len(d) for _, d in slow) <= 1000
    f.close()
    assert sum(len(d) for _, d in fast) == 1_000_000


def test_subscriber_get_times_out_and_can_leave() -> None:
    f = Fanout()
    a = f.subscribe()
    with pytest.raises(TimeoutError):
        a.get(timeout=0.01)
    a.close()
    f.publish("stdout", b"after")
    assert a.get(timeout=0.01) is None
