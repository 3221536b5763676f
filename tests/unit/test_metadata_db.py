"""The metadata database: settings, migrations (one test each), transactions, threads, and
the collector's lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from containerd_py.errdefs import FailedPrecondition, Internal
from containerd_py.metadata import db as dbmod
from containerd_py.metadata.db import MIGRATIONS, GCLock, MetadataDB, run_script


@pytest.fixture
def db(tmp_path: Path):
    d = MetadataDB(tmp_path / "meta.db")
    try:
        yield d
    finally:
        d.close()


def tables(c: sqlite3.Connection) -> set[str]:
    return {
        n
        for (n,) in c.execute("SELECT name FROM sqlite_master WHERE type='table'")
        if not n.startswith("sqlite_")
    }


def test_settings(db: MetadataDB) -> None:
    c = db.conn()
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_migration_1_creates_the_schema(tmp_path: Path) -> None:
    d = MetadataDB(tmp_path / "m.db", MIGRATIONS[:1])
    assert d.version == 1
    assert tables(d.conn()) == {
        "namespaces",
        "containers",
        "images",
        "content",
        "leases",
        "lease_resources",
        "snapshots",
    }
    d.close()


def test_every_migration_is_listed_in_order() -> None:
    versions = [v for v, _ in MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))


def test_migrations_run_once_and_in_order(tmp_path: Path) -> None:
    calls = []

    def m(n: int):
        def fn(c: sqlite3.Connection) -> None:
            calls.append(n)
            c.execute(f"CREATE TABLE t{n} (x)")

        return fn

    path = tmp_path / "m.db"
    MetadataDB(path, [(1, m(1))]).close()
    d = MetadataDB(path, [(1, m(1)), (2, m(2)), (3, m(3))])
    assert calls == [1, 2, 3] and d.version == 3
    d.close()
    MetadataDB(path, [(1, m(1)), (2, m(2)), (3, m(3))]).close()
    assert calls == [1, 2, 3]


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    def ok(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE a (x)")

    def broken(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE b (x)")
        raise RuntimeError("boom")

    path = tmp_path / "m.db"
    with pytest.raises(RuntimeError):
        MetadataDB(path, [(1, ok), (2, broken)])
    d = MetadataDB(path, [])
    assert d.version == 0 and tables(d.conn()) == set()
    d.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    MetadataDB(path, [(1, lambda c: None), (2, lambda c: None)]).close()
    with pytest.raises(FailedPrecondition, match="newer"):
        MetadataDB(path, [(1, lambda c: None)])


def test_bad_migration_lists_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MetadataDB(tmp_path / "m.db", [(2, lambda c: None), (1, lambda c: None)])


def test_a_file_that_is_not_a_database_is_an_internal_error(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(Internal, match="cannot open"):
        MetadataDB(path)


def test_run_script_keeps_the_transaction(tmp_path: Path) -> None:
    c = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    c.execute("BEGIN")
    run_script(c, "CREATE TABLE a (x);\nINSERT INTO a VALUES ('1;2');\n")
    c.execute("ROLLBACK")
    assert tables(c) == set()
    with pytest.raises(ValueError):
        run_script(c, "CREATE TABLE b (x")


def test_transaction_commits_rolls_back_and_nests(db: MetadataDB) -> None:
    t = 1
    with db.transaction() as c:
        c.execute("INSERT INTO namespaces VALUES ('a', '{}', ?, ?)", (t, t))
        with db.transaction() as c2:
            assert c2 is c
            c2.execute("INSERT INTO namespaces VALUES ('b', '{}', ?, ?)", (t, t))
    with pytest.raises(RuntimeError), db.transaction() as c:
        c.execute("INSERT INTO namespaces VALUES ('c', '{}', ?, ?)", (t, t))
        raise RuntimeError
    names = [n for (n,) in db.conn().execute("SELECT name FROM namespaces ORDER BY name")]
    assert names == ["a", "b"]


def test_foreign_keys_are_enforced(db: MetadataDB) -> None:
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as c:
        c.execute("INSERT INTO leases VALUES ('no-such-ns', 'l', '{}', 1, NULL)")


def test_one_connection_per_thread(db: MetadataDB) -> None:
    seen = []

    def run() -> None:
        seen.append(db.conn())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen[0] is not db.conn()
    assert db.conn() is db.conn()


def test_concurrent_writers_from_threads(db: MetadataDB) -> None:
    def run(i: int) -> None:
        for j in range(20):
            with db.transaction() as c:
                c.execute("INSERT INTO namespaces VALUES (?, '{}', 1, 1)", (f"n{i}-{j}",))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.conn().execute("SELECT COUNT(*) FROM namespaces").fetchone()[0] == 120


def test_closed_database_refuses_new_connections(tmp_path: Path) -> None:
    d = MetadataDB(tmp_path / "m.db")
    d.close()
    with pytest.raises(Internal):
        d.conn()


def test_gc_lock_excludes_mutators_and_is_reentrant() -> None:
    lock = GCLock()
    order = []
    with lock.exclusive():
        with lock.shared(), lock.exclusive():  # the collector calling the stores
            pass

        def mutator() -> None:
            with lock.shared():
                order.append("mutator")

        t = threading.Thread(target=mutator)
        t.start()
        time.sleep(0.05)
        order.append("gc done")
    t.join()
    assert order == ["gc done", "mutator"]

    with lock.shared(), lock.shared():
        pass
    with lock.shared(), pytest.raises(RuntimeError), lock.exclusive():
        pass


def test_gc_lock_waits_for_mutators() -> None:
    lock = GCLock()
    order = []
    entered = threading.Event()

    def mutator() -> None:
        with lock.shared():
            entered.set()
            time.sleep(0.05)
            order.append("mutator")

    t = threading.Thread(target=mutator)
    t.start()
    entered.wait()
    with lock.exclusive():
        order.append("gc")
    t.join()
    assert order == ["mutator", "gc"]


def test_schema_comment_names_every_table() -> None:
    doc = dbmod.__doc__ or ""
    for table in ("namespaces", "containers", "images", "content", "leases", "snapshots"):
        assert f"\n    {table}" in doc


def test_a_database_locked_by_another_process_is_unavailable(tmp_path: Path) -> None:
    from containerd_py.errdefs import Unavailable

    d = MetadataDB(tmp_path / "m.db")
    other = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    d.conn().execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(Unavailable, match="busy"), d.transaction():
            pass
    finally:
        other.execute("ROLLBACK")
        other.close()
    with d.transaction():
        pass
    d.close()
