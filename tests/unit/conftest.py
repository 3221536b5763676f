"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def stack(short_tmp: Path) -> Iterator[object]:
    """The daemon's storage services in-process over a unix socket (tests/unit/services_stack.py).

    Imported here, not at module level: most unit tests never load grpc.
    """
    from tests.unit.services_stack import Stack

    s = Stack(short_tmp)
    try:
        yield s
    finally:
        s.close()
