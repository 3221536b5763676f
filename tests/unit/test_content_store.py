"""The content store: commit and verification, resume after a restart, locking, labels,
namespaces, and digest strings that must never become paths."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from containerd_py.content import digests
from containerd_py.content.store import ContentStore
from containerd_py.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from containerd_py.metadata.leases import LeaseStore, Resource


def dg(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path):
    s = ContentStore(tmp_path)
    try:
        yield s
    finally:
        s.close()


def ingest_dirs(root: Path) -> list[str]:
    return [e for e in os.listdir(root / "content" / "ingest") if not e.startswith(".")]


def test_commit_publishes_a_read_only_blob(store: ContentStore, tmp_path: Path) -> None:
    data = b"hello, blob"
    with store.writer("ref-1", dg(data), len(data)) as w:
        w.write(data[:5])
        w.write(data[5:])
        assert w.offset == len(data)
        assert w.digest() == dg(data)
        info = w.commit(labels={"a": "1"})
    assert info.digest == dg(data) and info.size == len(data) and info.labels == {"a": "1"}
    blob = tmp_path / "content" / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) & 0o222 == 0
    assert ingest_dirs(tmp_path) == []
    assert store.info(dg(data)) == info
    assert store.exists(dg(data)) and not store.exists(dg(b"other"))
    assert not store.with_namespace("other").exists(dg(data))
    assert store.read(dg(data)) == data
    assert store.read(dg(data), 7, 2) == b"bl"
    with store.open(dg(data)) as f:
        assert f.read() == data


def test_commit_without_announcement_takes_the_digest_given_at_commit(
    store: ContentStore,
) -> None:
    w = store.writer("anon")
    w.write(b"abc")
    assert w.commit(dg(b"abc"), 3).digest == dg(b"abc")


def test_digest_mismatch_keeps_nothing(store: ContentStore, tmp_path: Path) -> None:
    w = store.writer("bad")
    w.write(b"not what you asked for")
    with pytest.raises(InvalidArgument, match="digest"):
        w.commit(dg(b"something else"))
    assert ingest_dirs(tmp_path) == []
    assert list(store.blobs.digests()) == []
    assert store.statuses() == []


def test_oversize_keeps_nothing_but_short_write_can_resume(
    store: ContentStore, tmp_path: Path
) -> None:
    data = b"0123456789"
    w = store.writer("long", size=4)
    w.write(data)
    with pytest.raises(InvalidArgument, match="expected 4"):
        w.commit()
    assert ingest_dirs(tmp_path) == []

    w = store.writer("short", dg(data), len(data))
    w.write(data[:6])
    with pytest.raises(FailedPrecondition, match="resumed"):
        w.commit()
    w = store.writer("short", dg(data), len(data))
    assert w.offset == 6
    w.write(data[6:])
    assert w.commit().size == len(data)


def test_ingest_survives_a_restart_and_resumes(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    s1 = ContentStore(tmp_path)
    w = s1.writer("pull-layer", dg(data), len(data))
    w.write(data[:100_000])
    w.close()  # a killed daemon leaves the same on disk (the lock dies with the process)
    s1.close()

    s2 = ContentStore(tmp_path)
    [st] = s2.statuses()
    assert (st.ref, st.offset, st.total, st.expected) == (
        "pull-layer",
        100_000,
        len(data),
        dg(data),
    )
    w = s2.writer("pull-layer", dg(data), len(data))
    assert w.offset == 100_000 and w.total == len(data)
    w.write(data[100_000:])
    assert w.commit().digest == dg(data)
    assert s2.read(dg(data)) == data
    s2.close()


def test_ingest_helper_resumes_seekable_streams_and_is_idempotent(store: ContentStore) -> None:
    data = b"x" * 5000 + b"y" * 5000
    w = store.writer("helper", dg(data), len(data))
    w.write(data[:3000])
    w.close()
    info = store.ingest(io.BytesIO(data), dg(data), len(data), ref="helper")
    assert info.size == len(data) and store.read(dg(data)) == data
    assert store.ingest(io.BytesIO(data), dg(data), len(data)) == info


def test_ingest_helper_restarts_unseekable_streams(store: ContentStore) -> None:
    data = b"abcdef" * 100

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[override]
            chunk = self.inner.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    w = store.writer("pipe", dg(data), len(data))
    w.write(b"garbage!")  # wrong bytes: a restart from zero must drop them
    w.close()
    assert store.ingest(Pipe(), dg(data), len(data), ref="pipe").digest == dg(data)


def test_second_writer_for_a_ref_is_refused(store: ContentStore) -> None:
    w = store.writer("busy")
    with pytest.raises(Unavailable):
        store.writer("busy")
    with pytest.raises(Unavailable):
        store.abort("busy")
    w.close()
    store.writer("busy").close()  # free again once closed


def test_same_ref_in_two_namespaces_are_two_ingests(store: ContentStore) -> None:
    a = store.writer("shared-name")
    b = store.with_namespace("other").writer("shared-name")
    assert a.path != b.path
    a.close()
    b.close()


def test_abort_removes_the_ingest(store: ContentStore, tmp_path: Path) -> None:
    w = store.writer("gone")
    w.write(b"123")
    w.abort()
    assert ingest_dirs(tmp_path) == []
    w = store.writer("gone2")
    w.write(b"1")
    w.close()
    store.abort("gone2")
    assert store.statuses() == []
    with pytest.raises(NotFound):
        store.abort("gone2")
    with pytest.raises(NotFound):
        store.status("gone2")


def test_commit_of_an_existing_blob_is_already_exists_and_consistent(
    store: ContentStore, tmp_path: Path
) -> None:
    data = b"twice"
    store.ingest(io.BytesIO(data), dg(data), len(data), labels={"keep": "me"})
    with pytest.raises(AlreadyExists):
        store.writer("again", dg(data), len(data))
    w = store.writer("again-unannounced")
    w.write(data)
    with pytest.raises(AlreadyExists):
        w.commit(dg(data))
    assert ingest_dirs(tmp_path) == []
    assert store.info(dg(data)).labels == {"keep": "me"}
    assert store.read(dg(data)) == data


def test_namespaces_see_only_their_blobs_and_share_the_bytes(store: ContentStore) -> None:
    data = b"layer"
    other = store.with_namespace("other")
    store.ingest(io.BytesIO(data), dg(data), len(data))
    with pytest.raises(NotFound):
        other.info(dg(data))
    with pytest.raises(NotFound):
        other.read(dg(data))
    # The other namespace adopts the bytes without sending them again.
    with pytest.raises(AlreadyExists):
        other.writer("x", dg(data), len(data))
    assert other.read(dg(data)) == data
    assert other.info(dg(data)).labels == {}
    store.delete(dg(data))
    assert store.blobs.exists(dg(data))  # still held by "other"
    other.delete(dg(data))
    assert not store.blobs.exists(dg(data))
    with pytest.raises(NotFound):
        other.delete(dg(data))


def test_labels_update_and_walk_filters(store: ContentStore) -> None:
    a, b = b"aaa", b"bbbb"
    store.ingest(io.BytesIO(a), dg(a), 3, labels={"kind": "config", "x": "1"})
    store.ingest(io.BytesIO(b), dg(b), 4, labels={"kind": "layer"})
    assert {i.digest for i in store.walk()} == {dg(a), dg(b)}
    assert [i.digest for i in store.walk("labels.kind==layer")] == [dg(b)]
    assert [i.digest for i in store.walk("labels.x")] == [dg(a)]
    assert {i.digest for i in store.walk("labels.kind==layer", "labels.x==1")} == {dg(a), dg(b)}
    assert [i.digest for i in store.walk(f"digest=={dg(a)}")] == [dg(a)]
    assert [i.digest for i in store.walk("size==4")] == [dg(b)]

    info = store.update_labels(dg(a), {"x": "2", "ignored": "y"}, ["labels.x"])
    assert info.labels == {"kind": "config", "x": "2"}
    info = store.update_labels(dg(a), {}, ["labels.kind"])
    assert info.labels == {"x": "2"}
    info = store.update_labels(dg(a), {"only": "this"})
    assert info.labels == {"only": "this"}
    assert info.updated_at >= info.created_at
    with pytest.raises(InvalidArgument):
        store.update_labels(dg(a), {}, ["size"])
    with pytest.raises(InvalidArgument):
        store.update_labels(dg(a), {"k": "v" * 5000})
    with pytest.raises(NotFound):
        store.update_labels(dg(b"nope"), {})


def test_usage(store: ContentStore) -> None:
    store.ingest(io.BytesIO(b"12345"), dg(b"12345"), 5)
    store.ingest(io.BytesIO(b"678"), dg(b"678"), 3)
    assert store.usage() == (8, 2)
    assert store.with_namespace("empty").usage() == (0, 0)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sha256:",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "a" * 64 + "\n",
        "sha512:" + "a" * 128,
        "sha256:../../../../etc/passwd",
        "sha256:" + "a" * 62 + "/.",
        "a" * 64,
        None,
    ],
)
def test_bad_digests_are_refused_before_any_path_is_built(store: ContentStore, bad) -> None:
    assert not digests.is_digest(bad)
    for call in (
        lambda: store.info(bad),
        lambda: store.exists(bad),
        lambda: store.open(bad),
        lambda: store.read(bad),
        lambda: store.delete(bad),
        lambda: store.update_labels(bad, {}),
        lambda: store.writer("r", expected=bad or "x"),
        lambda: store.blobs.path(bad),
    ):
        with pytest.raises(InvalidArgument):
            call()


def test_bad_refs_are_refused(store: ContentStore) -> None:
    for ref in ("", "a\0b"):
        with pytest.raises(InvalidArgument):
            store.writer(ref)


def test_foreign_files_in_blobs_are_not_blobs(store: ContentStore, tmp_path: Path) -> None:
    blobs = tmp_path / "content" / "blobs" / "sha256"
    (blobs / "README").write_text("not a blob")
    (blobs / ("A" * 64)).write_text("upper case")
    assert list(store.blobs.digests()) == []


def test_a_blob_recorded_but_missing_on_disk_is_not_found(store: ContentStore) -> None:
    data = b"vanishing"
    store.ingest(io.BytesIO(data), dg(data), len(data))
    os.chmod(store.blobs.path(dg(data)), 0o644)
    store.blobs.path(dg(data)).unlink()
    with pytest.raises(NotFound):
        store.read(dg(data))


def test_writes_under_a_lease_are_leased(store: ContentStore) -> None:
    leases = LeaseStore(store.db)
    leases.create("default", "pull")
    leased = store.with_namespace("default", lease="pull")
    w = leased.writer("layer-0")
    assert leases.list_resources("default", "pull") == [Resource("layer-0", "ingests")]
    w.write(b"data")
    w.commit()
    assert leases.list_resources("default", "pull") == [Resource(dg(b"data"), "content")]
    # Adopting a blob that already exists leases it too.
    other = store.with_namespace("ns2", lease=None)
    leases.create("ns2", "l2")
    with pytest.raises(AlreadyExists):
        other.with_namespace("ns2", lease="l2").writer("r", dg(b"data"))
    assert leases.list_resources("ns2", "l2") == [Resource(dg(b"data"), "content")]
    with pytest.raises(NotFound):
        store.with_namespace("default", lease="no-such-lease").writer("r2")


def test_a_writer_in_another_process_holds_the_ref(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from containerd_py.content.store import ContentStore\n"
        f"w = ContentStore({str(tmp_path)!r}).writer('cross')\n"
        "w.write(b'abc'); print('ready', flush=True); sys.stdin.readline()\n"
    )
    root = Path(__file__).resolve().parents[2]
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        s = ContentStore(tmp_path)
        with pytest.raises(Unavailable):
            s.writer("cross")
    finally:
        p.kill()  # killed, as a daemon may be: the lock goes with it, the bytes stay
        p.wait()
    w = s.writer("cross")
    assert w.offset == 3
    w.close()
    s.close()


def test_concurrent_ingests_of_one_blob_all_succeed_once(store: ContentStore) -> None:
    import threading

    data = os.urandom(1 << 20)
    results, errors = [], []

    def run(i: int) -> None:
        try:
            results.append(store.ingest(io.BytesIO(data), dg(data), len(data), ref=f"r{i}"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {r.digest for r in results} == {dg(data)}
    assert list(store.blobs.digests()) == [dg(data)]
    assert store.read(dg(data)) == data
    assert store.statuses() == []


def test_a_resuming_writer_may_announce_what_the_first_did_not(store: ContentStore) -> None:
    data = b"announced late"
    w = store.writer("late")
    w.write(data[:4])
    w.close()
    w = store.writer("late", dg(data), len(data))
    assert (w.offset, w.total, w.expected) == (4, len(data), dg(data))
    w.close()
    st = store.status("late")
    assert (st.total, st.expected) == (len(data), dg(data))
    w = store.writer("late", dg(b"other content"))  # announced for other content: restart
    assert w.offset == 0
    w.close()


def test_a_torn_ingest_is_still_usable(store: ContentStore) -> None:
    w = store.writer("torn", size=10)
    w.write(b"12345")
    path = w.path
    w.close()
    (path / "total").write_text("not a number")
    (path / "startedat").write_text("")
    [st] = store.statuses()
    assert (st.offset, st.total) == (5, 0)
    w = store.writer("torn")
    w.write(b"67890")
    assert w.commit().size == 10
