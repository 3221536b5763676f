"""The server in-process, with a namespace store injected through the constructor: the
seam through which tests (and other stores) plug in without the SQLite database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from containerd_py import errdefs
from containerd_py.client import Client
from containerd_py.config import Config
from containerd_py.server import Server


@dataclass
class Record:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


class DictStore:
    """A NamespaceStore in a dict (containerd_py.services.namespaces.NamespaceStore)."""

    def __init__(self) -> None:
        self.data: dict[str, Record] = {}
        self.calls: list[str] = []

    def get(self, name: str) -> Record:
        self.calls.append(f"get {name}")
        if name not in self.data:
            raise errdefs.NotFound(f"no {name}")
        return self.data[name]

    def list(self, *filters: str) -> list[Record]:
        self.calls.append("list")
        return sorted(self.data.values(), key=lambda r: r.name)

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> Record:
        self.calls.append(f"create {name}")
        if name in self.data:
            raise errdefs.AlreadyExists(f"{name} exists")
        self.data[name] = Record(name, dict(labels or {}))
        return self.data[name]

    def update(
        self, name: str, labels: Mapping[str, str], fieldpaths: Sequence[str] | None = None
    ) -> Record:
        self.calls.append(f"update {name} {list(fieldpaths or [])}")
        self.get(name).labels = dict(labels)
        return self.data[name]

    def delete(self, name: str) -> None:
        self.calls.append(f"delete {name}")
        self.get(name)
        del self.data[name]


@pytest.fixture
def server(short_tmp: Path):
    store = DictStore()
    config = Config().with_overrides(
        address=str(short_tmp / "s.sock"),
        root=str(short_tmp / "root"),
        state=str(short_tmp / "state"),
    )
    srv = Server(config, namespace_store=store)
    srv.start()
    try:
        yield srv, store
    finally:
        srv.stop(grace=1)


def test_an_injected_store_serves_the_namespaces_api(server) -> None:
    srv, store = server
    with Client(srv.address) as c, c.events('topic~="^/namespaces/"') as events:
        c.namespaces().create("a", {"x": "1"})
        assert [n.name for n in c.namespaces().list()] == ["a"]
        with pytest.raises(errdefs.NotFound, match="no b"):
            c.namespaces().delete("b")
        c.namespaces().delete("a")
        assert [next(events).topic for _ in range(2)] == [
            "/namespaces/create",
            "/namespaces/delete",
        ]
    assert store.calls == ["create a", "list", "delete b", "get b", "delete a", "get a"]
    assert not (srv.config.root / "metadata.db").exists()  # no database was opened
    plugin_ids = {p.id for p in srv.deps.plugins}
    assert "sqlite" not in plugin_ids and "namespaces" in plugin_ids


def test_stop_is_idempotent_and_removes_the_socket(server) -> None:
    srv, _ = server
    assert Path(srv.address).exists()
    srv.stop(grace=1)
    srv.stop(grace=1)
    assert not Path(srv.address).exists()
