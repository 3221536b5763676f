"""Helpers for the pull/push tests: daemons configured for test registries, pyctr runs,
and what a test checks afterwards (content, leases, the registry's access log).

    with daemon_factory(tmp) as daemons:
        d = daemons("a", certs_dir=reg.certs_dir)   # auth file and certs dir private
        out = pyctr(d, "images", "pull", "--plain-http", ref)
        assert blob_gets(reg, digest) == 1
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from containerd_py.runtime.task_manager import CGROUP_PARENT_ENV
from tests.daemon import ROOT, Daemon
from tests.integration.test_daemon_tasks import cleanup_tasks
from tests.registry import RegistryServer
from tests.runtimes import CGROUP_PARENT, remove_cgroup

PYCTR_TIMEOUT = 180
USER_AGENT = "pycontainerd/"


def daemon_config(
    tmp: Path,
    name: str,
    *,
    auth_file: Path | None = None,
    certs_dir: Path | None = None,
    insecure: Sequence[str] = (),
) -> Path:
    """A config whose registry settings never reach the host's (~/.docker, /etc/pydocker)."""
    auth = auth_file or tmp / f"{name}-auth.json"
    certs = certs_dir or tmp / f"{name}-certs.d"
    lines = [
        "[registry]",
        f'auth_file = "{auth}"',
        f'certs_dir = "{certs}"',
        "insecure = [" + ", ".join(f'"{h}"' for h in insecure) + "]",
    ]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


DaemonFactory = Callable[..., Daemon]


@contextmanager
def daemon_factory(tmp: Path) -> Iterator[DaemonFactory]:
    """factory(name, auth_file=, certs_dir=, insecure=) -> a started daemon; at the end every
    one is stopped and what its tasks left (shims, cgroups) is cleaned up."""
    started: list[tuple[Daemon, str]] = []

    def factory(name: str = "a", **registry: object) -> Daemon:
        cfg = daemon_config(tmp, name, **registry)  # type: ignore[arg-type]
        parent = f"{CGROUP_PARENT}/{tmp.name}-{name}"
        env = dict(os.environ, **{CGROUP_PARENT_ENV: parent})
        d = Daemon(tmp, name=name, args=["--config", str(cfg)], env=env)
        started.append((d, parent))
        return d.start()

    try:
        yield factory
    finally:
        for d, parent in started:
            d.close()
            cleanup_tasks(d.state)
            remove_cgroup(parent)


def pyctr(
    d: Daemon,
    *args: str,
    ns: str = "default",
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "cli.ctr", "--address", d.address, "-n", ns, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PYCTR_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if check:
        assert r.returncode == 0, (
            f"pyctr {' '.join(args)}: exit {r.returncode}\n{r.stderr}\n{d.logs_tail()}"
        )
    return r


def fails(d: Daemon, *args: str, ns: str = "default") -> str:
    """Runs pyctr expecting a failure; returns its stderr, which must be one line."""
    r = pyctr(d, *args, ns=ns, check=False)
    assert r.returncode != 0, f"pyctr {' '.join(args)} succeeded:\n{r.stdout}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"not one line:\n{r.stderr}"
    assert lines[0].startswith("pyctr: "), lines[0]
    return lines[0]


def import_busybox(d: Daemon, tmp: Path, ns: str = "default") -> str:
    """mkimage's busybox imported as docker.io/library/busybox:latest; its manifest digest."""
    from mkimage import write_oci_archive

    archive = tmp / "busybox.tar"
    if not archive.exists():
        write_oci_archive(archive)
    pyctr(d, "images", "import", str(archive), ns=ns)
    with d.client(ns) as c:
        return c.images().get("docker.io/library/busybox:latest").target.digest


def collect(d: Daemon, ns: str = "default") -> None:
    """Run the garbage collector now (a lease deleted with sync collects before answering)."""
    c = d.client(ns)
    try:
        lease = c.leases().create()
        c.leases().delete(lease.id, sync=True)
    finally:
        c.close()


def content_digests(d: Daemon, ns: str = "default") -> set[str]:
    c = d.client(ns)
    try:
        return {i.digest for i in c.content().list()}
    finally:
        c.close()


def image_names(d: Daemon, ns: str = "default") -> list[str]:
    c = d.client(ns)
    try:
        return [i.name for i in c.images().list()]
    finally:
        c.close()


_ACCESS = re.compile(
    r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.1" (\d+) \S+ "[^"]*" "([^"]*)"'
)


def access_log(reg: RegistryServer, agent: str = USER_AGENT) -> list[tuple[str, str, int]]:
    """(method, path, status) of the requests the registry served to AGENT, in order."""
    out = []
    for m in _ACCESS.finditer(reg.logs()):
        if m.group(4).startswith(agent):
            out.append((m.group(1), m.group(2), int(m.group(3))))
    return out


def blob_gets(reg: RegistryServer, digest: str) -> int:
    """How many times we fetched a blob (GET of /v2/<repo>/blobs/<digest>)."""
    return sum(
        1
        for method, path, _ in access_log(reg)
        if method == "GET" and "/blobs/" in path and path.endswith(digest)
    )
