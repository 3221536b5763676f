"""Helpers every store shares: timestamps, labels, identifiers, tolerant row decoding."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from containerd_py.errdefs import InvalidArgument, NotFound

log = logging.getLogger("containerd_py.metadata")

# containerd's identifiers rule (pkg/identifiers): alphanumerics joined by single . _ -
_IDENTIFIER = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
MAX_IDENTIFIER = 76
# containerd's labels rule: key + value at most 4 KiB, keys non-empty.
MAX_LABEL = 4096

LABEL_GC_EXPIRE = "containerd.io/gc.expire"


class CorruptRow(Exception):
    """A row that does not decode: loaders log it and skip it."""


# What decoding a foreign or half-written row can raise; loaders catch exactly these.
DECODE_ERRORS = (CorruptRow, TypeError, ValueError, OverflowError, KeyError, AttributeError)


def now_ns() -> int:
    return time.time_ns()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_datetime(ns: int) -> datetime:
    # Integer arithmetic: a float of nanoseconds since 1970 cannot hold microseconds exactly.
    return _EPOCH + timedelta(microseconds=ns // 1000)


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US * 1000


def validate_identifier(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{kind} must not be empty")
    if len(value) > MAX_IDENTIFIER:
        raise InvalidArgument(f"{kind} {value!r} longer than {MAX_IDENTIFIER} characters")
    if not _IDENTIFIER.fullmatch(value):
        raise InvalidArgument(
            f"{kind} {value!r} must be alphanumerics separated by single '.', '_' or '-'"
        )
    return value


def validate_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (labels or {}).items():
        if not isinstance(k, str) or not k:
            raise InvalidArgument("label key must be a non-empty string")
        if not isinstance(v, str):
            raise InvalidArgument(f"label {k!r} must have a string value")
        if len(k) + len(v) > MAX_LABEL:
            raise InvalidArgument(f"label {k!r}: key and value longer than {MAX_LABEL} bytes")
        out[k] = v
    return out


def dump_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def load_labels(text: str | None) -> dict[str, str]:
    """Labels from a row; anything but a JSON object of strings is a corrupt row."""
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError) as e:
        raise CorruptRow(f"labels are not JSON: {e}") from e
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CorruptRow("labels are not an object of strings")
    return value


def apply_label_paths(
    current: Mapping[str, str], new: Mapping[str, str], fieldpaths: Sequence[str]
) -> dict[str, str] | None:
    """containerd's label update rules; None when no path concerns labels.

    "labels" replaces them all; "labels.<key>" sets that key from `new`, or deletes it when
    `new` lacks it.
    """
    out = dict(current)
    touched = False
    for path in fieldpaths:
        if path == "labels":
            out = dict(new)
            touched = True
        elif path.startswith("labels."):
            key = path[len("labels.") :]
            if key in new:
                out[key] = new[key]
            else:
                out.pop(key, None)
            touched = True
    return out if touched else None


def parse_expire(labels: Mapping[str, str]) -> int | None:
    """The `containerd.io/gc.expire` label (RFC 3339) as nanoseconds; None if absent or bad."""
    v = labels.get(LABEL_GC_EXPIRE)
    if not v:
        return None
    try:
        return from_datetime(datetime.fromisoformat(v.replace("Z", "+00:00")))
    except ValueError:
        log.info("ignoring invalid %s value %r", LABEL_GC_EXPIRE, v)
        return None


def ensure_namespace(c: sqlite3.Connection, namespace: str) -> None:
    """Writing into a namespace creates it, as containerd does."""
    validate_identifier("namespace", namespace)
    t = now_ns()
    c.execute(
        "INSERT OR IGNORE INTO namespaces(name, labels, created_at, updated_at)"
        " VALUES (?, '{}', ?, ?)",
        (namespace, t, t),
    )


def skip_corrupt(kind: str, key: object, err: Exception) -> None:
    log.warning("metadata: skipping corrupt %s record %r: %s", kind, key, err)


def not_found(kind: str, namespace: str, key: str) -> NotFound:
    return NotFound(f"{kind} {key!r} not found in namespace {namespace!r}")
