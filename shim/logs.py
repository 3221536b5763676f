"""Container output: docker's json-file log, written by the shim, and live attach subscribers.

File format (byte for byte what dockerd's json-file driver writes), one object per line:

    {"log":"hello\\n","stream":"stdout","time":"2026-11-30T10:00:00.123456789Z"}

- Output is split on newlines; each line keeps its "\\n". A line that reaches 16 KiB without
  a newline is written as a 16 KiB entry without "\\n" (a partial line), and so is what is
  left when the stream ends; the reader joins nothing, as docker's does not.
- Escaping as docker's: `"` and `\\` escaped, `\\n` and `\\r` short, other control bytes and
  `<`, `>`, `&` as `\\u00XX`, U+2028/U+2029 as escapes, each byte of invalid UTF-8 as
  `\\ufffd`, anything else raw UTF-8.
- time is Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped), per line.
- Rotation (`max_size` bytes, `max_files` files) as docker's: before writing an entry, if the
  current file has reached max_size, `log.1` → `log.2` ... (the oldest dropped), `log` →
  `log.1`, and a new `log` starts; with max_files=1 the file is truncated instead. A file may
  exceed max_size by one batch of entries from one read.
- Each read from the container becomes one `write()` of whole entries: nothing is buffered in
  the shim, a reader never sees half an entry once the write returned, and a shim killed
  with -9 loses at most a line that had no newline yet.

Live subscribers (`Fanout`) get the raw bytes of each read, tagged with the stream, through
queues bounded in bytes: a subscriber that does not keep up is dropped, never waited for,
so a slow or dead client cannot block the copy loop, and so the container.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque

from shim.timestamps import parse_rfc3339, rfc3339_nano

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

MAX_LINE = 16 * 1024  # docker's copier buffer: longer lines are cut into partial entries

# -- encoding --------------------------------------------------------------------------------

# Printable ASCII docker writes as is. A line made only of these (the usual case) is copied
# without decoding; bytes.translate(None, _PLAIN) leaves only the bytes that need escaping.
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\<>&')


def _escape_table() -> dict[int, str]:
    t: dict[int, str] = {c: f"\\u{c:04x}" for c in range(0x20)}
    t.update({ord("\n"): "\\n", ord("\r"): "\\r", ord('"'): '\\"', ord("\\"): "\\\\"})
    for c in "<>&\u2028\u2029":
        t[ord(c)] = f"\\u{ord(c):04x}"
    # surrogateescape turns each undecodable byte into one lone surrogate: docker writes
    # one U+FFFD per invalid byte.
    for c in range(0xDC80, 0xDD00):
        t[c] = "\\ufffd"
    return t


_ESCAPES: dict[int, str] | None = None


def escape(data: bytes) -> bytes:
    """The inside of a JSON string for data, as docker's json-file driver escapes it."""
    global _ESCAPES
    if not data.translate(None, _PLAIN):
        return data
    if _ESCAPES is None:
        _ESCAPES = _escape_table()
    text = data.decode("utf-8", "surrogateescape").translate(_ESCAPES)
    return text.encode("utf-8")


def encode_entry(line: bytes, stream: str, time_ns: int, *, newline: bool = True) -> bytes:
    """One log line: `{"log":...,"stream":...,"time":...}` and a newline."""
    return b"".join(
        (
            b'{"log":"',
            escape(line),
            b'\\n","stream":"' if newline else b'","stream":"',
            stream.encode(),
            b'","time":"',
            rfc3339_nano(time_ns).encode(),
            b'"}\n',
        )
    )


def split_lines(carry: bytes, data: bytes) -> tuple[list[tuple[bytes, bool]], bytes]:
    """Cut carry+data into (line without "\\n", complete) pieces and the new carry.

    Lines of MAX_LINE bytes or more come out as MAX_LINE partial pieces first, as docker's
    copier flushes its full 16 KiB buffer.
    """
    buf = carry + data if carry else data
    out: list[tuple[bytes, bool]] = []
    start = 0
    find = buf.find
    while True:
        nl = find(b"\n", start)
        if nl < 0:
            break
        while nl - start >= MAX_LINE:
            out.append((buf[start : start + MAX_LINE], False))
            start += MAX_LINE
        out.append((buf[start:nl], True))
        start = nl + 1
    while len(buf) - start >= MAX_LINE:
        out.append((buf[start : start + MAX_LINE], False))
        start += MAX_LINE
    return out, buf[start:]


# -- writing ---------------------------------------------------------------------------------


class LogWriter:
    """Appends container output to a json-file log with rotation; shared by the copiers.

    max_size <= 0 means no rotation. Errors (a full disk) are reported once on stderr and
    the output dropped: the copy loop must go on draining the container.
    """

    def __init__(self, path: str, *, max_size: int = 0, max_files: int = 1) -> None:
        if max_files < 1:
            raise ValueError("max_files must be at least 1")
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self._lock = threading.Lock()
        self._carry: dict[str, bytes] = {}
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._failed = False

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, stream: str, data: bytes) -> None:
        """Log one read's worth of a stream's output; an unfinished line waits for the next."""
        with self._lock:
            pieces, self._carry[stream] = split_lines(self._carry.get(stream, b""), data)
            if pieces:
                self._emit(stream, pieces)

    def end_stream(self, stream: str) -> None:
        """The stream is at EOF: what is left of its last line goes out as a partial entry."""
        with self._lock:
            rest = self._carry.pop(stream, b"")
            if rest:
                self._emit(stream, [(rest, False)])

    def _emit(self, stream: str, pieces: list[tuple[bytes, bool]]) -> None:
        now = time.time_ns
        batch: list[bytes] = []
        for line, complete in pieces:
            if self.max_size > 0 and self._size >= self.max_size:
                self._flush(batch)
                batch = []
                self._rotate()
            entry = encode_entry(line, stream, now(), newline=complete)
            batch.append(entry)
            self._size += len(entry)
        self._flush(batch)

    def _flush(self, batch: list[bytes]) -> None:
        if not batch or self._fd < 0:
            return
        view = memoryview(b"".join(batch))
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            if not self._failed:
                self._failed = True
                os.write(2, f"pycontainerd-shim: writing {self.path}: {e}\n".encode())

    def _rotate(self) -> None:
        try:
            if self.max_files > 1:
                try:
                    os.unlink(f"{self.path}.{self.max_files - 1}")
                except FileNotFoundError:
                    pass
                for i in range(self.max_files - 1, 1, -1):
                    try:
                        os.rename(f"{self.path}.{i - 1}", f"{self.path}.{i}")
                    except FileNotFoundError:
                        pass
                os.rename(self.path, f"{self.path}.1")
                os.close(self._fd)
                self._fd = self._open()
            else:
                os.ftruncate(self._fd, 0)
            self._size = 0
        except OSError as e:
            os.write(2, f"pycontainerd-shim: rotating {self.path}: {e}\n".encode())

    def close(self) -> None:
        for stream in list(self._carry):
            self.end_stream(stream)
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


# -- live subscribers ------------------------------------------------------------------------


class Attachment:
    """One live subscriber's queue of (stream, bytes), bounded in bytes."""

    def __init__(self, fanout: Fanout, max_bytes: int) -> None:
        self._fanout = fanout
        self._max = max_bytes
        self._items: deque[tuple[str, bytes]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self.closed = False
        self.dropped = False  # True: it fell behind and lost output

    def _offer(self, stream: str, data: bytes) -> bool:
        with self._cond:
            if self.closed:
                return False
            if self._bytes + len(data) > self._max:
                self.dropped = self.closed = True
                self._cond.notify_all()
                return False
            self._items.append((stream, data))
            self._bytes += len(data)
            self._cond.notify_all()
            return True

    def _end(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """The next chunk; None once output ended or the subscriber was dropped.

        TimeoutError if nothing arrived within timeout.
        """
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait_for(lambda: self._items or self.closed, timeout)
            if self._items:
                item = self._items.popleft()
                self._bytes -= len(item[1])
                return item
            if self.closed:
                return None
            raise TimeoutError

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        while (item := self.get()) is not None:
            yield item

    def close(self) -> None:
        self._end()
        self._fanout._remove(self)


class Fanout:
    """Hands each chunk a copier read to every attached subscriber without ever waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Attachment] = []
        self.closed = False

    def subscribe(self, max_bytes: int = 1 << 20) -> Attachment:
        att = Attachment(self, max_bytes)
        with self._lock:
            if self.closed:
                att._end()
            else:
                self._subs.append(att)
        return att

    def publish(self, stream: str, data: bytes) -> None:
        with self._lock:
            subs = self._subs
            if not subs:
                return
            gone = [a for a in subs if not a._offer(stream, data)]
            if gone:
                self._subs = [a for a in subs if a not in gone]

    def _remove(self, att: Attachment) -> None:
        with self._lock:
            if att in self._subs:
                self._subs = [a for a in self._subs if a is not att]

    def close(self) -> None:
        """Output has ended: subscribers get what is queued, then None."""
        with self._lock:
            self.closed = True
            subs, self._subs = self._subs, []
        for a in subs:
            a._end()


# -- reading ---------------------------------------------------------------------------------


class LogEntry:
    """One json-file line: stream, the text (with its "\\n" unless partial), and its time."""

    __slots__ = ("_ns", "log", "stream", "time")

    def __init__(self, stream: str, log: str, time: str) -> None:
        self.stream = stream
        self.log = log
        self.time = time
        self._ns: int | None = None

    @property
    def time_ns(self) -> int:
        if self._ns is None:
            self._ns = parse_rfc3339(self.time)
        return self._ns

    @property
    def partial(self) -> bool:
        return not self.log.endswith("\n")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogEntry) and (self.stream, self.log, self.time) == (
            other.stream,
            other.log,
            other.time,
        )

    def __hash__(self) -> int:
        return hash((self.stream, self.log, self.time))

    def __repr__(self) -> str:
        return f"LogEntry({self.stream!r}, {self.log!r}, {self.time!r})"


def _parse(raw: bytes) -> LogEntry | None:
    try:
        obj = json.loads(raw)
        return LogEntry(obj.get("stream", ""), obj.get("log", ""), obj["time"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a torn or foreign line: skip it, as docker does


def log_files(path: str) -> list[str]:
    """The log and its rotated files, oldest first."""
    files = [path]
    i = 1
    while os.path.exists(f"{path}.{i}"):
        files.append(f"{path}.{i}")
        i += 1
    files.reverse()
    return files


def _to_ns(t: float | str | None) -> int | None:
    if t is None:
        return None
    if isinstance(t, str):
        return parse_rfc3339(t)
    return int(t * 1_000_000_000)


def _open_all(path: str) -> list[int]:
    """Open the log and its rotated files, oldest first, as one consistent set.

    The newest is opened first and checked again at the end: if the writer rotated in
    between, the names moved under us and the set is opened again.
    """
    for _ in range(5):
        fds: list[int] = []
        try:
            head = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            head = -1
        i = 1
        while True:
            try:
                fds.append(os.open(f"{path}.{i}", os.O_RDONLY | os.O_CLOEXEC))
            except FileNotFoundError:
                break
            i += 1
        fds.reverse()
        if head < 0:
            return fds
        fds.append(head)
        try:
            same = os.path.samestat(os.stat(path), os.fstat(head))
        except FileNotFoundError:
            same = False
        if same:
            return fds
        for fd in fds:
            os.close(fd)
    raise OSError(f"{path}: rotating too fast to read")


def _lines_forward(fd: int, end: int) -> Iterator[bytes]:
    """Lines (without "\\n") of fd up to offset end, which is just after a newline."""
    pos = 0
    carry = b""
    while pos < end:
        chunk = os.pread(fd, min(1 << 16, end - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        yield from lines


def _lines_backward(fd: int, end: int) -> Iterator[bytes]:
    """Complete lines of fd before offset end, newest first."""
    pos = end
    carry = b""
    while pos > 0:
        n = min(1 << 16, pos)
        pos -= n
        data = os.pread(fd, n, pos) + carry
        lines = data.split(b"\n")
        carry = lines.pop(0)
        for line in reversed(lines):
            if line:  # the "" after the final newline
                yield line
    if carry:
        yield carry


def _complete_end(fd: int) -> int:
    """Offset just after the last newline: a line still being written is not read yet."""
    size = os.fstat(fd).st_size
    pos = size
    while pos > 0:
        n = min(4096, pos)
        block = os.pread(fd, n, pos - n)
        i = block.rfind(b"\n")
        if i >= 0:
            return pos - n + i + 1
        pos -= n
    return 0


def read_logs(
    path: str,
    *,
    follow: bool = False,
    since: float | str | None = None,
    until: float | str | None = None,
    tail: int | None = None,
    stop: Callable[[], bool] | None = None,
    poll_interval: float = 0.1,
) -> Iterator[LogEntry]:
    """Entries of a json-file log and its rotated files, oldest first.

    since/until: unix seconds or an RFC 3339 time; entries before since or after until are
    skipped. tail: only the last N entries (of those since `since`). follow: then wait for
    new entries, across rotations, until stop() returns true or an entry is after until.
    """
    since_ns, until_ns = _to_ns(since), _to_ns(until)

    def wanted(e: LogEntry) -> bool:
        return since_ns is None or e.time_ns >= since_ns

    fds = _open_all(path)
    try:
        # Read each file up to its last newline as of now; follow resumes from there.
        ends = [_complete_end(fd) for fd in fds]
        if tail is not None:
            entries: Iterator[LogEntry] = iter(_tail(fds, ends, tail, wanted))
        else:
            entries = (
                e
                for fd, end in zip(fds, ends, strict=True)
                for e in map(_parse, _lines_forward(fd, end))
                if e is not None and wanted(e)
            )
        for e in entries:
            if until_ns is not None and e.time_ns > until_ns:
                return
            yield e
        if not follow:
            return
        cur, pos = (fds.pop(), ends[-1]) if fds else (-1, 0)
        yield from _follow(path, cur, pos, wanted, until_ns, stop, poll_interval)
    finally:
        for fd in fds:
            os.close(fd)


def _tail(
    fds: list[int], ends: list[int], n: int, wanted: Callable[[LogEntry], bool]
) -> list[LogEntry]:
    """The last n wanted entries, read backwards from the newest file."""
    picked: list[LogEntry] = []
    for fd, end in zip(reversed(fds), reversed(ends), strict=True):
        for raw in _lines_backward(fd, end):
            if len(picked) >= n:
                break
            e = _parse(raw)
            if e is None:
                continue
            if not wanted(e):
                # times only grow through the files: nothing older can be wanted
                picked.reverse()
                return picked
            picked.append(e)
    picked.reverse()
    return picked[-n:] if n else []


def _follow(
    path: str,
    fd: int,
    pos: int,
    wanted: Callable[[LogEntry], bool],
    until_ns: int | None,
    stop: Callable[[], bool] | None,
    poll_interval: float,
) -> Iterator[LogEntry]:
    carry = b""
    try:
        while True:
            chunk = os.pread(fd, 1 << 16, pos) if fd >= 0 else b""
            if chunk:
                pos += len(chunk)
                lines = (carry + chunk).split(b"\n")
                carry = lines.pop()
                for raw in lines:
                    e = _parse(raw)
                    if e is None or not wanted(e):
                        continue
                    if until_ns is not None and e.time_ns > until_ns:
                        return
                    yield e
                continue
            if stop is not None and stop():
                return
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None:
                if fd < 0:
                    fd, pos, carry = os.open(path, os.O_RDONLY | os.O_CLOEXEC), 0, b""
                    continue
                cur = os.fstat(fd)
                if not os.path.samestat(st, cur):
                    # Rotated: this fd has been read to its end (the writer finishes a file
                    # before renaming it), so the new file is next.
                    os.close(fd)
                    fd, pos, carry = os.open(path, os.O_RDONLY | os.O_CLOEXEC), 0, b""
                    continue
                if cur.st_size < pos:  # truncated in place (max_files=1)
                    pos, carry = 0, b""
                    continue
            time.sleep(poll_interval)
    finally:
        if fd >= 0:
            os.close(fd)
