"""What overlay and native share: one directory per snapshot and crash-safe bookkeeping.

Layout: `<root>/metadata.db` (see storage.py) and `<root>/snapshots/<id>/` with `fs/` (the
snapshot's own files) and, for overlay's active snapshots, `work/`.

Crash safety follows containerd's overlay snapshotter: a new snapshot is built in a
`new-*` temporary directory and renamed to its id inside the database transaction that
records it; a removed one is renamed to `rm-*` inside the transaction that forgets it and
deleted after. A kill at any point leaves either a recorded snapshot with its directory or
a directory nobody records, which `cleanup()` deletes.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from containerd_py import filters
from containerd_py.metadata.common import validate_labels
from containerd_py.snapshots import fs
from containerd_py.snapshots.mount import Mount
from containerd_py.snapshots.snapshotter import Info, Kind, Usage
from containerd_py.snapshots.storage import MetaStore, Snapshot

log = logging.getLogger(__name__)


def adapt_info(info: Info) -> filters.Adaptor:
    """Filter fields of a snapshot, as containerd's: kind, name, parent, labels."""
    return filters.adapt(
        {"kind": info.kind.value, "name": info.name, "parent": info.parent}, info.labels
    )


class DirSnapshotter:
    """A snapshotter whose snapshots are directories; subclasses say how to fill and mount."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.snapshots_dir = self.root / "snapshots"
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # snapshot trees hold setuid files and device nodes
        self.ms = MetaStore(str(self.root / "metadata.db"))

    # -- what subclasses provide -------------------------------------------------------

    def _populate(self, tmp: Path, s: Snapshot) -> None:
        raise NotImplementedError

    def _mounts(self, s: Snapshot) -> list[Mount]:
        raise NotImplementedError

    # -- paths ----------------------------------------------------------------------

    def _dir(self, sid: int) -> Path:
        return self.snapshots_dir / str(sid)

    def fs_path(self, sid: int) -> Path:
        return self._dir(sid) / "fs"

    # -- the protocol ---------------------------------------------------------------

    def stat(self, key: str) -> Info:
        return self.ms.info(self.ms.conn(), key)

    def update(self, info: Info, fieldpaths: Sequence[str] | None = None) -> Info:
        with self.ms.transaction() as c:
            return self.ms.update(c, info, fieldpaths)

    def usage(self, key: str) -> Usage:
        c = self.ms.conn()
        s = self.ms.snapshot(c, key)
        if s.kind is Kind.COMMITTED:
            return self.ms.usage(c, key)
        return fs.disk_usage(str(self.fs_path(s.id)))

    def mounts(self, key: str) -> list[Mount]:
        return self._mounts(self.ms.snapshot(self.ms.conn(), key))

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        with self.ms.transaction() as c:
            s = self.ms.snapshot(c, key)
            # The usage is taken once, here: a committed tree is never written again.
            usage = fs.disk_usage(str(self.fs_path(s.id))) if s.kind is Kind.ACTIVE else Usage(0, 0)
            self.ms.commit(c, key, name, usage, labels)

    def remove(self, key: str) -> None:
        gone: Path | None = None
        with self.ms.transaction() as c:
            s = self.ms.remove(c, key)
            src = self._dir(s.id)
            if src.exists():
                gone = self.snapshots_dir / f"rm-{s.id}"
                os.rename(src, gone)
        if gone is not None:
            try:
                fs.remove_tree(str(gone))
            except OSError as e:
                # The snapshot is gone; its leftovers go at the next cleanup().
                log.error("snapshot %r removed, but not its directory %s: %s", key, gone, e)

    def walk(self, *filter_strings: str) -> Iterator[Info]:
        flt = filters.parse(*filter_strings)
        for info in self.ms.infos(self.ms.conn()):
            if flt.match(adapt_info(info)):
                yield info

    def cleanup(self) -> None:
        """Delete directories no snapshot owns: leftovers of crashes and failed removals."""
        with self.ms.transaction() as c:
            known = {str(i) for i in self.ms.ids(c)}
            for entry in os.scandir(self.snapshots_dir):
                if entry.name in known:
                    continue
                log.info("snapshots: removing orphan %s", entry.path)
                try:
                    fs.remove_tree(entry.path)
                except OSError as e:
                    log.error("snapshots: cannot remove %s: %s", entry.path, e)

    def close(self) -> None:
        self.ms.close()

    # -- internals ------------------------------------------------------------------

    def _create(
        self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        labels = validate_labels(labels)
        tmp: Path | None = None
        try:
            with self.ms.transaction() as c:
                # Made inside the transaction, so a concurrent cleanup() cannot take it for
                # an orphan.
                tmp = Path(tempfile.mkdtemp(prefix="new-", dir=self.snapshots_dir))
                s = self.ms.create(c, kind, key, parent, labels)
                self._populate(tmp, s)
                target = self._dir(s.id)
                if target.exists():
                    # Left by a crash after a rename whose transaction never committed: the
                    # id was handed out again and the directory is an orphan.
                    fs.remove_tree(str(target))
                os.chmod(tmp, 0o755)
                os.rename(tmp, target)
                tmp = None
                return self._mounts(s)
        finally:
            if tmp is not None:
                fs.remove_tree(str(tmp))
