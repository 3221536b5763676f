"""Which OCI runtime the shim drives in the daemon, shim and pyctr tests: one switch.

    PYCONTAINERD_TEST_RUNTIME=runc python3 -m pytest tests/integration/test_daemon_tasks.py

Unset (the default run), tests that take a runtime parameter run on both pyrunc and runc
(`runtimes_under_test()`), and the others on pyrunc. Set to pyrunc, runc or crun, every
such test runs on that runtime alone, and so do the tests that name no runtime: the test
daemons (`task_daemon` in test_daemon_tasks.py) get a config file whose runtimes table runs
the name "pyrunc", which clients and pyctr pick by default, with the chosen binary (the
daemon's `[plugins."io.pycontainerd.runtime.v1.task".runtimes.<name>]`, see
containerd_py/services/tasks.py).

Only the daemon, shim and pyctr tests follow the switch. The `runtime` fixture of
tests/conftest.py (pyrunc, runc and crun side by side) is the differential tests' and the
shim core's, and stays as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.runtimes import runtime_available

ENV = "PYCONTAINERD_TEST_RUNTIME"
CHOICES = ("pyrunc", "runc", "crun")
DEFAULT_PAIR = ("pyrunc", "runc")


def chosen() -> str | None:
    """The runtime the switch names; None when unset; ValueError for a bad value (the run
    stops at start-up with it: tests/conftest.py checks)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(CHOICES)}")
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


def daemon_args(tmp: Path) -> list[str]:
    """Command-line arguments for a test daemon: `--config FILE` mapping the default runtime
    name to the chosen binary, or none when the switch is unset or names pyrunc."""
    one = chosen()
    if one is None or one == "pyrunc":
        return []
    path = tmp / "runtime.toml"
    path.write_text(
        f'[plugins."io.pycontainerd.runtime.v1.task".runtimes.pyrunc]\nbinary_name = "{one}"\n'
    )
    return ["--config", str(path)]
