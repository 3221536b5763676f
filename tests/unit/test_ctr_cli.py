"""pyctr's argument handling and rendering, against a fake client (no daemon)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli import ctr, output
from containerd_py import errdefs
from containerd_py.client import Namespace

ROOT = Path(__file__).resolve().parents[2]


class FakeNamespaces:
    def __init__(self, store: dict[str, dict[str, str]]) -> None:
        self.store = store

    def list(self, *filters: str) -> list[Namespace]:
        return [Namespace(n, labels) for n, labels in sorted(self.store.items())]

    def get(self, name: str) -> Namespace:
        if name not in self.store:
            raise errdefs.NotFound(f"namespace {name!r} not found")
        return Namespace(name, self.store[name])

    def create(self, name: str, labels=None) -> Namespace:
        if name in self.store:
            raise errdefs.AlreadyExists(f"namespace {name!r} already exists")
        self.store[name] = dict(labels or {})
        return Namespace(name, self.store[name])

    def set_labels(self, name: str, labels) -> Namespace:
        current = self.get(name).labels
        for k, v in labels.items():
            if v:
                current[k] = v
            else:
                current.pop(k, None)
        return Namespace(name, current)

    def delete(self, name: str) -> None:
        self.get(name)
        if name == "busy":
            raise errdefs.FailedPrecondition("namespace 'busy' must be empty")
        del self.store[name]


class FakeClient:
    instances: list[FakeClient] = []
    store: dict[str, dict[str, str]] = {}

    def __init__(self, address: str, namespace: str, timeout: float) -> None:
        self.address, self.namespace, self.timeout = address, namespace, timeout
        FakeClient.instances.append(self)

    def namespaces(self) -> FakeNamespaces:
        return FakeNamespaces(FakeClient.store)

    def close(self) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    import containerd_py.client

    FakeClient.instances = []
    FakeClient.store = {"default": {}, "web": {"team": "a", "env": "prod"}, "busy": {}}
    monkeypatch.setattr(containerd_py.client, "Client", FakeClient)
    monkeypatch.delenv(ctr.NAMESPACE_ENV, raising=False)
    return FakeClient


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = ctr.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_namespaces_ls_is_a_ctr_table(fake, capsys) -> None:
    status, out, _ = run(capsys, "namespaces", "ls")
    assert status == 0
    assert out.splitlines() == [
        "NAME       LABELS",
        "busy",
        "default",
        "web        env=prod,team=a",
    ]
    assert run(capsys, "ns", "list", "-q")[1].split() == ["busy", "default", "web"]


def test_global_options_and_namespace_env(fake, capsys, monkeypatch) -> None:
    run(capsys, "--address", "/tmp/x.sock", "-n", "pydocker", "--timeout", "3", "ns", "ls")
    c = fake.instances[-1]
    assert (c.address, c.namespace, c.timeout) == ("/tmp/x.sock", "pydocker", 3.0)
    run(capsys, "ns", "ls")
    assert (fake.instances[-1].address, fake.instances[-1].namespace) == (
        "/run/pycontainerd/pycontainerd.sock",
        "default",
    )
    monkeypatch.setenv("CONTAINERD_NAMESPACE", "from-env")
    run(capsys, "ns", "ls")
    assert fake.instances[-1].namespace == "from-env"


def test_create_label_and_rm(fake, capsys) -> None:
    assert run(capsys, "ns", "create", "new", "a=1", "flag") == (0, "", "")
    assert fake.store["new"] == {"a": "1", "flag": "true"}
    status, out, _ = run(capsys, "ns", "label", "new", "a=2", "flag=")
    assert (status, out) == (0, "a=2\n")
    assert run(capsys, "ns", "label", "web")[1] == "env=prod\nteam=a\n"
    status, out, err = run(capsys, "ns", "rm", "new", "missing", "busy", "web")
    assert status == 1
    assert out.split() == ["new", "web"]  # the others were still removed
    assert err.splitlines() == [
        "pyctr: unable to delete missing: namespace 'missing' not found",
        "pyctr: unable to delete busy: namespace 'busy' must be empty",
    ]


def test_errors_are_one_line(fake, capsys) -> None:
    status, out, err = run(capsys, "ns", "create", "web")
    assert (status, out, err) == (1, "", "pyctr: namespace 'web' already exists\n")
    status, _, err = run(capsys, "ns", "create", "x", "=v")
    assert status == 2
    assert err.startswith("pyctr: ") and err.count("\n") == 1
    assert "has no key" in err
    for args in (["nope"], ["ns", "rm"], ["--timeout", "x", "version"], ["ns", "ls", "--bad"]):
        status, _, err = run(capsys, *args)
        assert status == 2, args
        assert err.startswith("pyctr: ") and err.count("\n") == 1, err


def test_bare_commands_print_help(fake, capsys) -> None:
    status, out, _ = run(capsys)
    assert status == 0 and "Usage: pyctr" in out and "namespaces" in out
    status, out, _ = run(capsys, "ns")
    assert status == 0 and "Usage: pyctr ns" in out and "create" in out


def test_table_and_time_rendering() -> None:
    assert output.table(["a", "longer"], [("x", "1"), ("yyyyyy", "")]) == (
        "A         LONGER\nx         1\nyyyyyy"
    )
    assert output.labels({"b": "2", "a": "1"}) == "a=1,b=2"
    t = datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)
    assert output.go_time(t) == "2024-01-02 03:04:05.12 +0000 UTC"
    assert output.go_time(t.replace(microsecond=0)) == "2024-01-02 03:04:05 +0000 UTC"


def test_help_does_not_import_grpc() -> None:
    code = (
        "import sys; from cli import ctr\n"
        "try:\n    ctr.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'grpc' not in sys.modules, 'grpc imported'\n"
        "assert 'containerd_py.api' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Usage: pyctr" in r.stdout
