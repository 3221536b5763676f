"""The daemon's storage, built once at start-up and shared by the services that need it.

    <root>/metadata.db             the metadata database (built by the server)
    <root>/content/                blobs and ingests (content.store)
    <root>/snapshots/overlay/      the overlay snapshotter (the default where it works)
    <root>/snapshots/native/       the native snapshotter
    <root>/tmp/                    spools of imports and exports (emptied at start-up)

The garbage collector runs over all of it: scheduled after deletions, and once at start-up
to clear what a crash left behind (orphan snapshots, unreferenced blobs).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from containerd_py.content.store import ContentStore
from containerd_py.gc_service import GCScheduler
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.gc import collect
from containerd_py.services.snapshots import Snapshotters, open_snapshotters

log = logging.getLogger(__name__)

# Ingests nobody leases and nobody wrote to for this long are dropped by the collector.
INGEST_MAX_AGE = timedelta(days=1)


@dataclass
class Storage:
    db: MetadataDB
    content: ContentStore
    snapshotters: Snapshotters
    gc: GCScheduler
    work_dir: Path

    def close(self) -> None:
        self.gc.close()
        self.snapshotters.close()


def open_storage(root: Path, db: MetadataDB) -> Storage:
    work_dir = root / "tmp"
    # Spools are anonymous files; anything left here is from a previous run.
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    content = ContentStore(root, db)
    snapshotters = open_snapshotters(root, db)
    gc = GCScheduler(
        lambda: collect(db, content.blobs, snapshotters.backends, ingest_max_age=INGEST_MAX_AGE)
    )
    storage = Storage(db, content, snapshotters, gc, work_dir)
    gc.schedule()
    log.info(
        "storage: content under %s, snapshotters %s (default %s)",
        content.blobs.root,
        ", ".join(sorted(snapshotters.backends)),
        snapshotters.default,
    )
    return storage
