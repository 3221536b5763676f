"""RFC 3339 times with nanoseconds, as Go's time.RFC3339Nano writes and reads them.

docker's json-file logs and the shim's exit file carry times in this form:
`2026-11-30T10:00:00.123456789Z`, always UTC, with trailing zeros of the fraction dropped (Go's
`.999999999` layout: `...:00.1234Z`, or no fraction at all on a whole second). Times inside the
shim are integers of nanoseconds since the epoch (`time.time_ns()`), so nothing is lost to
float rounding.

Written by hand instead of through `datetime`: a log copy loop formats one time per line, and
a log reader with `since` parses one per line.
"""

from __future__ import annotations

import time

_NS = 1_000_000_000
# (second, "YYYY-MM-DDTHH:MM:SS") of the last formatted time: lines arrive many per second.
# One tuple, replaced whole, so threads racing on it only ever recompute.
_last: tuple[int, str] = (-1, "")


def rfc3339_nano(ns: int) -> str:
    """Format nanoseconds since the epoch as Go's RFC3339Nano in UTC."""
    global _last
    sec, frac = divmod(ns, _NS)
    cached_sec, prefix = _last
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _last = (sec, prefix)
    if frac:
        return f"{prefix}.{frac:09d}".rstrip("0") + "Z"
    return prefix + "Z"


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any offset, 0-9 fraction digits).

    Raises ValueError on anything else.
    """
    s = text.strip()
    try:
        if len(s) < 20 or s[4] != "-" or s[7] != "-" or s[10] not in "Tt " or s[13] != ":":
            raise ValueError
        if s[16] != ":":
            raise ValueError
        y, mo, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
        h, mi, se = int(s[11:13]), int(s[14:16]), int(s[17:19])
        rest = s[19:]
        frac = 0
        if rest.startswith("."):
            i = 1
            while i < len(rest) and rest[i].isdigit():
                i += 1
            digits = rest[1:i]
            if not digits or len(digits) > 9:
                raise ValueError
            frac = int(digits.ljust(9, "0"))
            rest = rest[i:]
        if rest in ("Z", "z"):
            offset = 0
        elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
            offset = (int(rest[1:3]) * 60 + int(rest[4:6])) * 60
            if rest[0] == "-":
                offset = -offset
        else:
            raise ValueError
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and se <= 60):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset
    return secs * _NS + frac
