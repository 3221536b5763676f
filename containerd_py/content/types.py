"""Value types of the content store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Info:
    """A committed blob as one namespace sees it."""

    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Status:
    """An ingest in progress: what a resuming writer will continue from."""

    ref: str
    offset: int
    total: int  # 0 when unknown
    expected: str  # "" when unknown
    started_at: datetime
    updated_at: datetime


class Usage(NamedTuple):
    size: int
    count: int
