"""Shared fixtures: markers that skip with a reason, short /tmp dirs for sockets, busybox
bundles, and OCI runtimes (pyrunc, runc, crun) that always clean up after themselves."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.registry import (  # noqa: F401  (fixtures, registered for every test)
    registry,
    registry_basic,
    registry_factory,
    registry_plain,
    registry_tls,
    registry_token,
)
from tests.runtimes import (
    RUNTIMES,
    Runtime,
    busybox_rootfs,
    make_bundle,
    remove_cgroup_parent,
    runtime_available,
)


def pytest_configure(config: pytest.Config) -> None:
    from tests.task_runtime import chosen

    try:
        chosen()  # PYCONTAINERD_TEST_RUNTIME, the daemon and shim tests' runtime switch
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    v1 = (
        Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    )
    for item in items:
        if "root" in item.keywords and not is_root:
            item.add_marker(pytest.mark.skip(reason="needs root"))
        if "cgroup_v1" in item.keywords and not v1:
            item.add_marker(pytest.mark.skip(reason="needs a cgroup v1 host"))


@pytest.fixture
def short_tmp():
    """A short directory under /tmp: unix socket paths must stay under 108 bytes."""
    import tempfile

    d = tempfile.mkdtemp(prefix="pyt-", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _cgroup_parent():
    """The tests' cgroup parent (/pytest-<pid> in each hierarchy) goes when the session ends."""
    yield
    remove_cgroup_parent()


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One busybox root filesystem for the session; bundles use it read-only."""
    return busybox_rootfs(tmp_path_factory.mktemp("busybox"))


@pytest.fixture
def bundle(rootfs_template: Path, tmp_path: Path):
    """A bundle factory: bundle(args, **edits) -> Path; config.json edited through edits."""

    def factory(args: list[str] | None = None, *, writable: bool = False, edit=None) -> Path:
        return make_bundle(tmp_path, rootfs_template, args, writable=writable, edit=edit)

    return factory


def _runtime_fixture(name: str, short: Path):
    rt = Runtime(name, short)
    try:
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest, short_tmp: Path):
    """Each OCI runtime in turn: the differential tests run the same body against all."""
    name = request.param
    ok, why = runtime_available(name)
    if not ok:
        pytest.skip(why)
    yield from _runtime_fixture(name, short_tmp)


@pytest.fixture
def pyrunc(short_tmp: Path):
    yield from _runtime_fixture("pyrunc", short_tmp)
