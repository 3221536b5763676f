"""Which OCI runtime the shim drives in the daemon, shim and pyctr tests: one switch.

    PYCONTAINERD_TEST_RUNTIME=runc python3 -m pytest tests/integration/test_daemon_tasks.py

Unset (the default run), tests that take a runtime parameter run on both pyrunc and runc
(`runtimes_under_test()`), and the others on pyrunc. Set to pyrunc, runc or crun, every
such test runs on that runtime alone.
"""

from __future__ import annotations

import os

from tests.runtimes import runtime_available

ENV = "PYCONTAINERD_TEST_RUNTIME"
CHOICES = ("pyrunc", "runc", "crun")
DEFAULT_PAIR = ("pyrunc", "runc")


def chosen() -> str | None:
    """The runtime the switch names; None when unset. A bad value stops the run."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if value not in CHOICES:
        raise SystemExit(f"{ENV}={value!r}: expected one of {', '.join(CHOICES)}")
    return value


def default_runtime() -> str:
    """What a test that names no runtime runs on."""
    return chosen() or "pyrunc"


def runtimes_under_test() -> list[str]:
    """Parameters for tests that run on several runtimes (unavailable ones are skipped)."""
    import pytest

    one = chosen()
    names = [one] if one else list(DEFAULT_PAIR)
    params = []
    for name in names:
        ok, why = runtime_available(name)
        marks = () if ok else (pytest.mark.skip(reason=why),)
        params.append(pytest.param(name, id=name, marks=marks))
    return params
