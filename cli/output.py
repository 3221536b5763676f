"""Rendering for the CLIs: ctr-style tables and timestamps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

# ctr's tabwriter: columns separated by at least this many spaces.
PADDING = 4


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns, the header in capitals, no trailing spaces, as ctr prints."""
    lines = [[h.upper() for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i] + PADDING) for i, cell in enumerate(line[:-1])]
        out.append(("".join(cells) + line[-1]).rstrip())
    return "\n".join(out)


def labels(values: Mapping[str, str]) -> str:
    """Labels as ctr shows them: k=v pairs, sorted, comma-separated."""
    return ",".join(f"{k}={v}" for k, v in sorted(values.items()))


def go_time(t: datetime) -> str:
    """A time as Go's time.Time.String() prints it in UTC (what `ctr events` shows):
    2024-01-02 15:04:05.123456 +0000 UTC, without trailing zeros in the fraction."""
    t = t.astimezone(UTC)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"
