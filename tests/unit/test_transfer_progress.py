"""How pyctr renders a transfer's progress: a table redrawn in place with bars on a
terminal, one line per blob state elsewhere; and the tracker the daemon fills."""

from __future__ import annotations

import io
import threading

from cli.transfer_progress import BAR_WIDTH, ProgressView
from containerd_py.client import BlobProgress, Descriptor, TransferProgress
from containerd_py.distribution.progress import BlobKind, BlobStatus, Progress
from containerd_py.distribution.sources import label_key, repositories, with_repository
from containerd_py.images.manifest import Descriptor as OCIDescriptor

LAYER = "sha256:" + "1" * 64
CONFIG = "sha256:" + "2" * 64
MIB = 1 << 20


def _progress(status: str, offset: int, done: bool = False) -> TransferProgress:
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", LAYER, 4 * MIB)
    config = Descriptor("application/vnd.oci.image.config.v1+json", CONFIG, 100)
    return TransferProgress(
        "127.0.0.1:5000/app:1",
        "fetching",
        (
            BlobProgress(config, "config", "done", 100),
            BlobProgress(layer, "layer", status, offset),
        ),
        done=done,
    )


def test_terminal_table_is_redrawn_in_place_with_bars() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=True, width=250)
    view.update(_progress("transferring", MIB))
    first = out.getvalue()
    assert "\x1b[" not in first  # nothing to move over yet
    lines = first.splitlines()
    row = next(line for line in lines if line.startswith(f"layer-{LAYER}:"))
    assert "downloading" in row and "1.0 MiB/4.0 MiB" in row
    assert "|" + "+" * (BAR_WIDTH // 4) + "-" * (BAR_WIDTH * 3 // 4) + "|" in row
    assert lines[-1].startswith("elapsed: ")

    view.finish(_progress("done", 4 * MIB, done=True))
    redraw = out.getvalue()[len(first) :]
    # Cursor up over the whole table, clear, then the new table.
    assert redraw.startswith(f"\x1b[{len(lines)}A\x1b[J")
    row = next(line for line in redraw.splitlines() if line.startswith(f"layer-{LAYER}:"))
    assert "done" in row and "|" + "+" * BAR_WIDTH + "|" in row


def test_terminal_lines_are_cut_to_the_width() -> None:
    # A wrapped line would take two rows: the redraw would then climb one row short.
    out = io.StringIO()
    ProgressView(out, tty=True, width=60).update(_progress("transferring", MIB))
    assert max(len(line) for line in out.getvalue().splitlines()) == 59


def test_plain_output_is_one_line_per_state() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=False, upload=True)
    view.update(_progress("transferring", MIB))
    view.update(_progress("transferring", 2 * MIB))  # only the offset moved: no new line
    view.finish(_progress("done", 4 * MIB, done=True))
    lines = out.getvalue().splitlines()
    assert lines[:4] == [
        "127.0.0.1:5000/app:1: resolved",
        f"config-{CONFIG}: done",
        f"layer-{LAYER}: uploading",
        f"layer-{LAYER}: done",
    ]
    assert lines[4].startswith("elapsed: ") and "total: 4.0 MiB" in lines[4]
    assert "\x1b" not in out.getvalue()


def test_progress_snapshots_and_waits_for_changes() -> None:
    p = Progress()
    desc = OCIDescriptor("application/vnd.oci.image.layer.v1.tar+gzip", LAYER, 10)
    p.add(desc)
    p.add(desc)  # a blob reached twice keeps one record
    snap = p.snapshot()
    assert [(b.kind, b.status, b.offset) for b in snap.blobs] == [
        (BlobKind.LAYER, BlobStatus.WAITING, 0)
    ]
    assert not p.wait(snap.version, 0.01)
    t = threading.Thread(target=p.update, args=(LAYER, BlobStatus.TRANSFERRING, 4))
    t.start()
    assert p.wait(snap.version, 10)
    t.join()
    p.finish(LAYER, BlobStatus.DONE)
    assert p.snapshot().blobs[0].offset == 10


def test_distribution_source_labels_gather_repositories() -> None:
    host = "127.0.0.1:5000"
    labels = with_repository({}, host, "library/busybox")
    assert labels == {label_key(host): "library/busybox"}
    labels = with_repository(labels, host, "team/app")
    assert repositories(labels, host) == ["library/busybox", "team/app"]
    assert with_repository(labels, host, "team/app") == {}
    assert repositories(labels, "other:5000") == []
