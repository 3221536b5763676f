"""containerd_py/runtime/cgroup_parent.py: which parent a task leaves that is the daemon's
to remove, and its removal over fake v1 and v2 trees: only where it is empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from containerd_py.runtime.cgroup_parent import default_parent, remove_if_empty
from tests.unit.test_cgroups import fake_v1_mountinfo


@pytest.mark.parametrize(
    ("path", "namespace", "task_id", "parent"),
    [
        ("/default/web", "default", "web", "/default"),
        ("/k8s.io/abc", "k8s.io", "abc", "/k8s.io"),
        ("/default/other", "default", "web", None),  # another task's path
        ("/mine/web", "default", "web", None),  # the caller's own parent
        ("/pytest-1/x/default-web", "default", "web", None),  # PYCONTAINERD_CGROUP_PARENT
        ("default/web", "default", "web", None),  # relative: the runtime's choice
        (None, "default", "web", None),
        ("", "default", "web", None),
    ],
)
def test_default_parent(path: object, namespace: str, task_id: str, parent: str | None) -> None:
    assert default_parent(path, namespace, task_id) == parent


def test_v1_removes_the_empty_parent_in_every_hierarchy(tmp_path: Path) -> None:
    text = fake_v1_mountinfo(
        tmp_path,
        {"cpu,cpuacct": "rw,cpu,cpuacct", "memory": "rw,memory", "systemd": "rw,name=systemd"},
        unified=True,
    )
    for h in ("cpu,cpuacct", "memory", "systemd", "unified"):
        (tmp_path / h / "default").mkdir(parents=True)
    # Another task still runs in the namespace, seen in one hierarchy only.
    (tmp_path / "memory/default/other").mkdir()
    removed = remove_if_empty("/default", root=str(tmp_path), mountinfo=text)
    assert sorted(removed) == sorted(
        f"{tmp_path}/{h}/default" for h in ("cpu,cpuacct", "systemd", "unified")
    )
    assert (tmp_path / "memory/default/other").is_dir()
    (tmp_path / "memory/default/other").rmdir()
    assert remove_if_empty("/default", root=str(tmp_path), mountinfo=text) == [
        f"{tmp_path}/memory/default"
    ]
    assert remove_if_empty("/default", root=str(tmp_path), mountinfo=text) == []  # gone: fine


def test_v2_removes_the_empty_parent(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "ns1/busy").mkdir(parents=True)
    (tmp_path / "ns2").mkdir()
    assert remove_if_empty("/ns1", root=str(tmp_path)) == []
    assert remove_if_empty("/ns2", root=str(tmp_path)) == [f"{tmp_path}/ns2"]
    assert (tmp_path / "ns1/busy").is_dir() and not (tmp_path / "ns2").exists()


def test_never_a_hierarchy_root(tmp_path: Path) -> None:
    text = fake_v1_mountinfo(tmp_path, {"memory": "rw,memory"})
    (tmp_path / "memory").mkdir()  # empty, as a fake: rmdir would take it
    for path in ("/", "", "/.."):
        assert remove_if_empty(path, root=str(tmp_path), mountinfo=text) == []
    assert (tmp_path / "memory").is_dir()
