"""How pyctr shows a pull or push: ctr's progress table on a terminal, plain lines elsewhere.

On a terminal the table is redrawn in place (cursor up, clear to the end of the screen):

    127.0.0.1:5000/app:1:                     resolved       |++++++++++++++++++++++++++++++|
    manifest-sha256:6c3c62...:                done           |++++++++++++++++++++++++++++++|
    layer-sha256:1f2e3d...:                   downloading    |++++++++++--------------------| 3.0 MiB/9.0 MiB
    elapsed: 1.2 s                            total:  3.0 Mi (2.5 MiB/s)

Elsewhere (a pipe, a log file) each blob gets one line per state it reaches, so the output
can be read and grepped: `layer-sha256:...: downloading`, `layer-sha256:...: done`.
"""  # noqa: E501

from __future__ import annotations

import shutil
import time
from typing import TextIO

from cli.ctr_content import progress_bytes
from containerd_py.client import BlobProgress, TransferProgress

BAR_WIDTH = 40


class ProgressView:
    def __init__(
        self, out: TextIO, *, tty: bool, upload: bool = False, width: int | None = None
    ) -> None:
        self.out = out
        self.tty = tty
        self.width = width or shutil.get_terminal_size().columns
        self.moving = "uploading" if upload else "downloading"
        self.started = time.monotonic()
        self._printed: dict[str, str] = {}  # plain mode: the last state printed per blob
        self._lines = 0  # tty mode: lines of the table on screen
        self._status = ""

    # -- one message ----------------------------------------------------------------

    def update(self, p: TransferProgress) -> None:
        if self.tty:
            self._redraw(p)
        else:
            self._plain(p)

    def finish(self, p: TransferProgress) -> None:
        """The last message: the table (or the lines) complete, and the totals."""
        self.update(p)
        if self.tty:
            self._lines = 0  # leave the table on screen
        else:
            self.out.write(self._totals(p) + "\n")
        self.out.flush()

    # -- renderings -----------------------------------------------------------------

    def _word(self, b: BlobProgress) -> str:
        return self.moving if b.status == "transferring" else b.status

    def _plain(self, p: TransferProgress) -> None:
        if not self._printed:
            self._printed[""] = "resolved"
            self.out.write(f"{p.ref}: resolved\n")
        for b in p.blobs:
            word = self._word(b)
            key = b.descriptor.digest
            if self._printed.get(key) != word:
                self._printed[key] = word
                self.out.write(f"{b.kind}-{key}: {word}\n")
        if p.status != self._status:
            self._status = p.status
            if p.status.startswith("unpacking"):
                self.out.write(p.status + "\n")
        self.out.flush()

    def _redraw(self, p: TransferProgress) -> None:
        rows = [(f"{p.ref}:", "resolved", _bar(1, 1), "")]
        for b in p.blobs:
            size = b.descriptor.size
            offset = size if b.status in ("done", "exists", "mounted") else b.offset
            amount = ""
            if b.status == "transferring":
                amount = f"{progress_bytes(offset)}/{progress_bytes(size)}"
            rows.append(
                (f"{b.kind}-{b.descriptor.digest}:", self._word(b), _bar(offset, size), amount)
            )
        width = max(len(r[0]) for r in rows) + 2
        lines = [f"{r[0].ljust(width)}{r[1].ljust(15)}{r[2]} {r[3]}".rstrip() for r in rows]
        lines.append(self._totals(p))
        if p.status.startswith("unpacking"):
            lines.append(p.status)
        # A line the terminal wraps would throw the cursor-up count off: cut them.
        lines = [line[: self.width - 1] for line in lines]
        if self._lines:
            self.out.write(f"\x1b[{self._lines}A\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self._lines = len(lines)
        self.out.flush()

    def _totals(self, p: TransferProgress) -> str:
        moved = sum(
            b.descriptor.size if b.status == "done" else b.offset
            for b in p.blobs
            if b.status in ("done", "transferring", "failed")
        )
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = progress_bytes(moved / elapsed)
        return f"elapsed: {elapsed:.1f} s\ttotal: {progress_bytes(moved)} ({rate}/s)"


def _bar(offset: int, total: int) -> str:
    done = BAR_WIDTH if total <= 0 else min(BAR_WIDTH, BAR_WIDTH * offset // total)
    return "|" + "+" * done + "-" * (BAR_WIDTH - done) + "|"
