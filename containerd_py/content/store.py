"""The content store: blobs addressed by their sha256 digest, written through resumable ingests.

On disk (under the daemon root):

    content/blobs/sha256/<hex>          committed blobs, read-only (0444), shared by namespaces
    content/ingest/<sha256 of ns/ref>/  one in-progress write:
        ref        "<namespace>/<ref>" (checked on resume: the directory name is a hash)
        data       the bytes so far; its size is the resume offset
        startedat  updatedat            integer nanoseconds since the epoch
        total      expected           the size and digest announced when the write began

Which namespace sees which blob, and its labels, are rows in the metadata database
(`metadata/content.py`), as in containerd's metadata content store: one copy of the bytes,
one record per namespace. A blob on disk that no namespace records is invisible and is
removed by the garbage collector.

A write is exclusive per ref: the writer holds `flock` on its `data` file, so a second writer
for the same ref, in this process or another, gets Unavailable, and a daemon killed in the
middle of a write leaves an ingest that the next writer for that ref resumes from its
offset. Commit checks size and digest, renames `data` into `blobs/` and records the row in
one database transaction.

Errors: a digest that is not `sha256:` + 64 lowercase hex is InvalidArgument before any path
is built; committing fewer bytes than announced is FailedPrecondition and keeps the ingest
(it can be resumed); more bytes than announced, or another digest, is InvalidArgument and
drops the ingest (containerd answers FailedPrecondition for both and keeps the ingest: we
drop data known to be wrong); committing a blob the namespace already has is AlreadyExists
and drops the ingest, leaving the existing blob untouched.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from containerd_py import filters
from containerd_py.content import digests
from containerd_py.content.types import Info, Status, Usage
from containerd_py.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from containerd_py.metadata.common import (
    DECODE_ERRORS,
    apply_label_paths,
    to_datetime,
    validate_identifier,
    validate_labels,
)
from containerd_py.metadata.content import ContentRecords
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.leases import CONTENT, INGESTS, Resource, add_resource_in

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_MAX_REF = 4096


def _write_small(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_small(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int:
    """A number from a small file; 0 when missing or torn (a crash mid-write)."""
    try:
        return int(_read_small(path) or 0)
    except ValueError:
        return 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    """Remove a directory; renaming it first makes the removal look atomic to readers."""
    gone = path.with_name(f".rm-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(path, gone)
    except FileNotFoundError:
        return
    shutil.rmtree(gone, ignore_errors=True)


class BlobStore:
    """The files alone: blobs and ingest directories, with no namespaces and no labels."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root) / "content"
        self.blobs = self.root / "blobs" / digests.ALGORITHM
        self.ingests = self.root / "ingest"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingests.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blobs / digests.encoded(digests.validate(digest))

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def digests(self) -> Iterator[str]:
        """Every blob on disk; stray files (temporaries, foreign names) are not blobs."""
        try:
            entries = list(os.scandir(self.blobs))
        except FileNotFoundError:
            return
        for e in entries:
            d = f"{digests.ALGORITHM}:{e.name}"
            if digests.is_digest(d) and e.is_file(follow_symlinks=False):
                yield d

    def remove(self, digest: str) -> int:
        """Delete a blob; returns the bytes freed (0 if it was not there)."""
        p = self.path(digest)
        try:
            size = p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            return 0
        return size

    def ingest_dir(self, key: str) -> Path:
        # A hash keeps the name short and path-safe whatever the ref contains.
        return self.ingests / hashlib.sha256(key.encode()).hexdigest()

    def ingest_dirs(self) -> Iterator[tuple[Path, str]]:
        """(directory, "<ns>/<ref>") of every readable ingest."""
        try:
            entries = sorted(os.scandir(self.ingests), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for e in entries:
            if e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
                continue
            key = _read_small(Path(e.path) / "ref")
            if key is None or self.ingest_dir(key).name != e.name:
                log.debug("content: skipping unreadable ingest %s", e.path)
                continue
            yield Path(e.path), key

    def read_status(self, path: Path, ref: str) -> Status:
        try:
            offset = (path / "data").stat().st_size
        except FileNotFoundError:
            offset = 0

        started = _read_int(path / "startedat")
        updated = _read_int(path / "updatedat") or started
        return Status(
            ref=ref,
            offset=offset,
            total=_read_int(path / "total"),
            expected=(_read_small(path / "expected") or "").strip(),
            started_at=to_datetime(started),
            updated_at=to_datetime(updated),
        )

    def usage(self) -> Usage:
        """Bytes and files on disk, blobs and ingests alike."""
        size = count = 0
        for top in (self.blobs, self.ingests):
            for dirpath, _, files in os.walk(top):
                for f in files:
                    try:
                        size += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                        count += 1
                    except FileNotFoundError:
                        pass
        return Usage(size, count)


class Writer:
    """One exclusive, resumable write of a blob. Use as a context manager: leaving the block
    without committing keeps the progress for a later writer with the same ref."""

    def __init__(
        self,
        store: ContentStore,
        ref: str,
        path: Path,
        fd: int,
        total: int,
        expected: str,
        started_at: int,
    ) -> None:
        self._store = store
        self.ref = ref
        self.path = path
        self._fd: int | None = fd
        self.total = total
        self.expected = expected
        self._started_at = started_at
        self._updated_at = started_at
        self._hash = hashlib.sha256()
        self._offset = 0
        self._rehash(os.fstat(fd).st_size)

    # -- progress -------------------------------------------------------------------

    @property
    def offset(self) -> int:
        return self._offset

    def digest(self) -> str:
        return f"{digests.ALGORITHM}:{self._hash.hexdigest()}"

    def status(self) -> Status:
        return Status(
            self.ref,
            self._offset,
            self.total,
            self.expected,
            to_datetime(self._started_at),
            to_datetime(self._updated_at),
        )

    def write(self, data: bytes | bytearray | memoryview) -> int:
        fd = self._require_open()
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        self._hash.update(view)
        self._offset += done
        self._updated_at = time.time_ns()
        return done

    def truncate(self, size: int) -> None:
        """Cut the ingest back to `size` bytes (the resume point of a stream that cannot seek)."""
        fd = self._require_open()
        if size < 0 or size > self._offset:
            raise InvalidArgument(f"cannot truncate ingest {self.ref!r} to {size}")
        os.ftruncate(fd, size)
        self._rehash(size)
        self._updated_at = time.time_ns()

    def _rehash(self, size: int) -> None:
        fd = self._require_open()
        h = hashlib.sha256()
        pos = 0
        while pos < size:
            chunk = os.pread(fd, min(CHUNK, size - pos), pos)
            if not chunk:
                break
            h.update(chunk)
            pos += len(chunk)
        os.lseek(fd, pos, os.SEEK_SET)
        self._hash = h
        self._offset = pos

    # -- ending ---------------------------------------------------------------------

    def commit(
        self,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Info:
        """Verify and publish the blob; the writer is closed afterwards, whatever happens."""
        fd = self._require_open()
        try:
            want_digest = expected_digest or self.expected or None
            if want_digest is not None:
                digests.validate(want_digest)
            want_size = expected_size if expected_size is not None else (self.total or None)
            labels = validate_labels(labels)
            os.fsync(fd)
            actual = os.fstat(fd).st_size
            if want_size is not None and actual < want_size:
                raise FailedPrecondition(
                    f"ingest {self.ref!r}: {actual} bytes written, expected {want_size}"
                    " (the write can be resumed)"
                )
            if want_size is not None and actual > want_size:
                self._drop()
                raise InvalidArgument(
                    f"ingest {self.ref!r}: {actual} bytes written, expected {want_size}"
                )
            got = self.digest()
            if want_digest is not None and got != want_digest:
                self._drop()
                raise InvalidArgument(
                    f"ingest {self.ref!r}: content has digest {got}, expected {want_digest}"
                )
            return self._store._publish(self, got, actual, labels)
        finally:
            self.close()

    def abort(self) -> None:
        """Forget this write and its bytes."""
        self._require_open()
        self._drop()
        self.close()

    def close(self) -> None:
        """Release the ref, keeping the progress on disk for a resume."""
        if self._fd is None:
            return
        if self.path.exists():
            try:
                _write_small(self.path / "updatedat", str(self._updated_at))
            except OSError as e:
                log.debug("content: cannot record updatedat of %s: %s", self.ref, e)
        os.close(self._fd)
        self._fd = None

    def _drop(self) -> None:
        # Still holding the lock: no other writer can be inside this directory.
        _rmtree(self.path)
        self._store._forget_ingest(self.ref)

    def _require_open(self) -> int:
        if self._fd is None:
            raise FailedPrecondition(f"writer for {self.ref!r} is closed")
        return self._fd

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContentStore:
    """Blobs as one namespace sees them (default "default"); `with_namespace` for others.

    With a lease, everything written or adopted through this view is added to that lease, so
    a pull in progress is safe from the collector.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        db: MetadataDB | None = None,
        namespace: str = "default",
        lease: str | None = None,
        *,
        _blobs: BlobStore | None = None,
    ) -> None:
        self.root = Path(root)
        self._owns_db = db is None
        self.db = db if db is not None else MetadataDB(self.root / "metadata.db")
        self.blobs = _blobs or BlobStore(self.root)
        self.namespace = validate_identifier("namespace", namespace)
        self.lease = lease

    def with_namespace(self, namespace: str, lease: str | None = None) -> ContentStore:
        """A view of the same store for another namespace (and lease); shares the DB."""
        return ContentStore(self.root, self.db, namespace, lease, _blobs=self.blobs)

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    # -- writing --------------------------------------------------------------------

    def writer(self, ref: str, expected: str | None = None, size: int | None = None) -> Writer:
        """Begin, or resume, the write named `ref` (Unavailable if another writer holds it).

        When the namespace already has `expected`, AlreadyExists. When another namespace has
        it, this namespace adopts the blob (no bytes need to travel) and AlreadyExists is
        raised all the same: either way the caller has nothing to write.
        """
        if not isinstance(ref, str) or not ref or len(ref) > _MAX_REF or "\0" in ref:
            raise InvalidArgument("ingest ref must be a non-empty string")
        if expected is not None:
            digests.validate(expected)
            self._adopt_existing(expected, size)
        if size is not None and size < 0:
            raise InvalidArgument(f"size must not be negative: {size}")
        key = f"{self.namespace}/{ref}"
        path = self.blobs.ingest_dir(key)
        fd = self._lock_ingest(path, ref, create=True)
        try:
            stored = _read_small(path / "ref")
            stored_total = _read_int(path / "total")
            stored_expected = (_read_small(path / "expected") or "").strip()
            fresh = stored != key
            if not fresh and (
                (size and stored_total and size != stored_total)
                or (expected and stored_expected and expected != stored_expected)
            ):
                # As containerd: an ingest announced for other content is restarted.
                log.info("content: ingest %r restarted: it was for other content", ref)
                fresh = True
            if fresh:
                os.ftruncate(fd, 0)
                started = time.time_ns()
                for name in ("total", "expected"):
                    (path / name).unlink(missing_ok=True)
                _write_small(path / "ref", key)
                _write_small(path / "startedat", str(started))
                _write_small(path / "updatedat", str(started))
                if size:
                    _write_small(path / "total", str(size))
                if expected:
                    _write_small(path / "expected", expected)
                total, want = size or 0, expected or ""
            else:
                started = _read_int(path / "startedat") or time.time_ns()
                # What the first writer did not announce, a resuming one may.
                if size and not stored_total:
                    _write_small(path / "total", str(size))
                if expected and not stored_expected:
                    _write_small(path / "expected", expected)
                total, want = stored_total or size or 0, stored_expected or expected or ""
            if self.lease:
                with self.db.transaction() as c:
                    add_resource_in(c, self.namespace, self.lease, Resource(ref, INGESTS))
            return Writer(self, ref, path, fd, total, want, started)
        except BaseException:
            os.close(fd)
            raise

    def ingest(
        self,
        stream: BinaryIO,
        expected_digest: str,
        expected_size: int,
        ref: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Info:
        """Write a whole stream as one blob, resuming a previous attempt where possible.

        Idempotent: content the namespace already has is not written again; its Info is
        returned.
        """
        digests.validate(expected_digest)
        ref = ref or f"ingest-{expected_digest}"
        try:
            w = self.writer(ref, expected_digest, expected_size)
        except AlreadyExists:
            return self.info(expected_digest)
        with w:
            if w.offset:
                try:
                    if w.offset > expected_size or not stream.seekable():
                        raise io.UnsupportedOperation
                    stream.seek(w.offset)
                except (AttributeError, OSError, io.UnsupportedOperation):
                    w.truncate(0)
            while chunk := stream.read(CHUNK):
                w.write(chunk)
            try:
                return w.commit(expected_digest, expected_size, labels)
            except AlreadyExists:
                return self.info(expected_digest)

    def abort(self, ref: str) -> None:
        """Drop an ingest (NotFound if there is none, Unavailable if a writer holds it)."""
        path = self.blobs.ingest_dir(f"{self.namespace}/{ref}")
        if not path.is_dir():
            raise NotFound(f"ingest {ref!r} not found in namespace {self.namespace!r}")
        fd = self._lock_ingest(path, ref, create=False)
        try:
            _rmtree(path)
        finally:
            os.close(fd)
        self._forget_ingest(ref)

    def status(self, ref: str) -> Status:
        key = f"{self.namespace}/{ref}"
        path = self.blobs.ingest_dir(key)
        if _read_small(path / "ref") != key:
            raise NotFound(f"ingest {ref!r} not found in namespace {self.namespace!r}")
        return self.blobs.read_status(path, ref)

    def statuses(self, *filter_strings: str) -> list[Status]:
        """Ingests in progress in this namespace, including those left by a dead daemon."""
        flt = filters.parse(*filter_strings)
        prefix = f"{self.namespace}/"
        out = []
        for path, key in self.blobs.ingest_dirs():
            if not key.startswith(prefix):
                continue
            ref = key[len(prefix) :]
            if flt.match(filters.adapt({"ref": ref})):
                out.append(self.blobs.read_status(path, ref))
        return out

    # -- reading --------------------------------------------------------------------

    def info(self, digest: str) -> Info:
        digests.validate(digest)
        info = self._record(digest)
        if info is None:
            raise NotFound(f"content {digest} not found in namespace {self.namespace!r}")
        return info

    def exists(self, digest: str) -> bool:
        """Whether this namespace has the blob (InvalidArgument for a malformed digest)."""
        digests.validate(digest)
        return self._record(digest) is not None

    def open(self, digest: str) -> BinaryIO:
        self.info(digest)
        try:
            return open(self.blobs.path(digest), "rb")
        except FileNotFoundError:
            log.warning("content: %s is recorded in %r but missing on disk", digest, self.namespace)
            raise NotFound(f"content {digest} not found") from None

    def read(self, digest: str, offset: int = 0, size: int | None = None) -> bytes:
        """Up to `size` bytes from `offset` (to the end when size is None or negative)."""
        if offset < 0:
            raise InvalidArgument(f"negative offset {offset}")
        with self.open(digest) as f:
            f.seek(offset)
            return f.read(-1 if size is None or size < 0 else size)

    def walk(self, *filter_strings: str) -> Iterator[Info]:
        """Blobs of this namespace matching containerd filters on digest, size, labels."""
        flt = filters.parse(*filter_strings)
        for info in list(ContentRecords.iter(self.db.conn(), self.namespace)):
            fields = {"digest": info.digest, "size": str(info.size)}
            if flt.match(filters.adapt(fields, info.labels)):
                yield info

    def usage(self) -> Usage:
        """Total size and count of the blobs this namespace records."""
        row = (
            self.db.conn()
            .execute(
                "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM content WHERE namespace=?",
                (self.namespace,),
            )
            .fetchone()
        )
        return Usage(row[0], row[1])

    # -- changing -------------------------------------------------------------------

    def update_labels(
        self,
        digest: str,
        labels: Mapping[str, str],
        fieldpaths: Sequence[str] | None = None,
    ) -> Info:
        """Replace the labels, or with fieldpaths ("labels", "labels.<key>") edit some."""
        digests.validate(digest)
        labels = validate_labels(labels)
        with self.db.transaction() as c:
            info = self._record(digest, c)
            if info is None:
                raise NotFound(f"content {digest} not found in namespace {self.namespace!r}")
            if fieldpaths:
                new = apply_label_paths(info.labels, labels, fieldpaths)
                if new is None:
                    raise InvalidArgument(f"cannot update {list(fieldpaths)} of content")
            else:
                new = dict(labels)
            ContentRecords.set_labels(c, self.namespace, digest, validate_labels(new))
            return self._record(digest, c)  # type: ignore[return-value]

    def delete(self, digest: str) -> None:
        """Remove the blob from this namespace; its bytes go when no namespace has it."""
        digests.validate(digest)
        # Inside the write transaction: a commit in another namespace that would adopt these
        # bytes waits for us, so it never records a blob we are unlinking.
        with self.db.transaction() as c:
            if not ContentRecords.delete(c, self.namespace, digest):
                raise NotFound(f"content {digest} not found in namespace {self.namespace!r}")
            if ContentRecords.holders(c, digest) == 0:
                self.blobs.remove(digest)

    # -- internals ------------------------------------------------------------------

    def _record(self, digest: str, c: sqlite3.Connection | None = None) -> Info | None:
        try:
            return ContentRecords.get(c or self.db.conn(), self.namespace, digest)
        except DECODE_ERRORS as e:
            raise Internal(f"content {digest} has a corrupt record: {e}") from e

    def _adopt_existing(self, digest: str, size: int | None) -> None:
        # AlreadyExists is raised after the transaction: raising inside would roll back the
        # adoption and the lease reference.
        with self.db.transaction() as c:
            if self._record(digest, c) is None:
                try:
                    actual = self.blobs.path(digest).stat().st_size
                except FileNotFoundError:
                    return
                if size is not None and size != actual:
                    raise InvalidArgument(f"content {digest} has size {actual}, not {size}")
                ContentRecords.insert(c, self.namespace, digest, actual, {})
            self._lease_content(c, digest)
        raise AlreadyExists(f"content {digest} already exists")

    def _publish(self, w: Writer, digest: str, size: int, labels: dict[str, str]) -> Info:
        info: Info | None = None
        with self.db.transaction() as c:
            # AlreadyExists is raised after the transaction, which has nothing to undo.
            if self._record(digest, c) is None:
                target = self.blobs.path(digest)
                if not target.exists():
                    data = w.path / "data"
                    os.chmod(data, 0o444)  # a published blob is never written again
                    os.rename(data, target)
                    _fsync_dir(target.parent)
                # else another namespace has these bytes; ours are identical: adopt theirs.
                info = ContentRecords.insert(c, self.namespace, digest, size, labels)
                self._lease_content(c, digest)
        if info is None:
            w._drop()
            raise AlreadyExists(f"content {digest} already exists")
        _rmtree(w.path)
        self._forget_ingest(w.ref)
        return info

    def _lease_content(self, c: sqlite3.Connection, digest: str) -> None:
        if self.lease:
            add_resource_in(c, self.namespace, self.lease, Resource(digest, CONTENT))

    def _forget_ingest(self, ref: str) -> None:
        if not self.lease:
            return
        with self.db.transaction() as c:
            c.execute(
                "DELETE FROM lease_resources WHERE namespace=? AND lease_id=? AND type=? AND id=?",
                (self.namespace, self.lease, INGESTS, ref),
            )

    def _lock_ingest(self, path: Path, ref: str, *, create: bool) -> int:
        """Open and flock the ingest's data file; the lock is the writer's ownership."""
        for _ in range(5):
            if create:
                path.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
            try:
                fd = os.open(path / "data", flags, 0o644)
            except FileNotFoundError:
                if not create:
                    # An ingest whose data never got written: nothing to lock.
                    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                continue  # removed under us by an abort; start again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise Unavailable(f"ref {ref!r} is locked by another writer") from None
                raise
            if os.fstat(fd).st_nlink == 0:
                os.close(fd)  # we locked a file an abort had just removed
                continue
            return fd
        raise Unavailable(f"ref {ref!r} is being removed, try again")
