"""config.json parsing: every wrong type or meaning gets a one-line error naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from oci_runtime.default_spec import default_spec
from oci_runtime.spec import SpecError, load_bundle, parse, parse_process


def base() -> dict:
    return default_spec(["true"], terminal=False)


def with_(path: str, value):
    cfg = base()
    node = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {}) if not k.isdigit() else node[int(k)]
    last = keys[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return cfg


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("process.args", "true", "process.args: expected array, got string"),
        ("process.args", [], "process.args: must not be empty"),
        ("process.args", ["sh", 1], "process.args[1]: expected string, got integer"),
        ("process.terminal", "yes", "process.terminal: expected boolean, got string"),
        ("process.user.uid", "0", "process.user.uid: expected integer, got string"),
        ("process.user.uid", True, "process.user.uid: expected integer, got boolean"),
        ("process.cwd", "relative", "process.cwd: must be an absolute path"),
        ("process.env", {"A": "b"}, "process.env: expected array, got object"),
        (
            "process.rlimits",
            [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}],
            "process.rlimits[0].type: unknown rlimit",
        ),
        (
            "process.capabilities.bounding",
            ["CAP_FLY"],
            "process.capabilities.bounding: unknown capability 'CAP_FLY'",
        ),
        ("root", {"readonly": True}, "root.path: required"),
        ("root.readonly", "true", "root.readonly: expected boolean, got string"),
        ("hostname", 7, "hostname: expected string, got integer"),
        ("mounts", {}, "mounts: expected array, got object"),
        ("mounts", [{"type": "tmpfs"}], "mounts[0].destination: required"),
        ("mounts", [{"destination": "tmp"}], "mounts[0].destination: must be absolute"),
        (
            "linux.namespaces",
            [{"type": "pidx"}],
            "linux.namespaces[0].type: unknown namespace type 'pidx'",
        ),
        (
            "linux.namespaces",
            [{"type": "pid"}, {"type": "pid"}],
            "linux.namespaces[1].type: duplicate namespace 'pid'",
        ),
        (
            "linux.namespaces",
            [{"type": "network", "path": "/nonexistent/ns"}],
            "linux.namespaces[0].path: /nonexistent/ns: no such namespace file",
        ),
        (
            "linux.uidMappings",
            [{"containerID": 0, "hostID": 1000, "size": 1}],
            "linux.uidMappings: mappings given without a user namespace",
        ),
        ("linux.rootfsPropagation", "sideways", "linux.rootfsPropagation: unknown propagation"),
        ("linux.resources.memory", {"limit": "1g"}, "linux.resources.memory.limit"),
        ("linux.sysctl", {"net.ipv4.ip_forward": 1}, "linux.sysctl.net.ipv4.ip_forward"),
        ("linux.seccomp", {"defaultAction": "SCMP_ACT_NOPE"}, "linux.seccomp.defaultAction"),
        ("hooks.prestart", [{"args": ["x"]}], "hooks.prestart[0].path: required"),
        (
            "hooks.poststop",
            [{"path": "/bin/true", "timeout": 0}],
            "hooks.poststop[0].timeout: must be positive",
        ),
        ("annotations", {"a": 1}, "annotations.a: expected string, got integer"),
        ("ociVersion", "2.0.0", "ociVersion: unsupported version"),
    ],
)
def test_bad_field_is_named(path: str, value, message: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        parse(with_(path, value), tmp_path)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_default_spec_parses(tmp_path: Path) -> None:
    spec = parse(base(), tmp_path)
    assert spec.process is not None
    assert spec.process.args == ("true",)
    assert spec.rootfs == str(tmp_path / "rootfs")
    assert [n.type for n in spec.namespaces] == ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    assert spec.root_readonly is True


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    cfg = base()
    cfg["vendorThing"] = {"x": [1, 2]}
    cfg["process"]["futureField"] = 3
    assert parse(cfg, tmp_path).process is not None


def test_user_namespace_needs_both_mappings(tmp_path: Path) -> None:
    cfg = base()
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    with pytest.raises(SpecError, match="needs uid and gid mappings"):
        parse(cfg, tmp_path)
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    spec = parse(cfg, tmp_path)
    assert spec.uid_mappings[0].host_id == 1000


def test_load_bundle_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_bundle(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SpecError, match="invalid JSON"):
        load_bundle(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(base()))
    with pytest.raises(SpecError, match=r"root\.path: .*not a directory"):
        load_bundle(tmp_path)
    (tmp_path / "rootfs").mkdir()
    assert load_bundle(tmp_path).bundle == str(tmp_path)


def test_parse_process_for_exec() -> None:
    proc = parse_process(
        {"args": ["sh"], "cwd": "/", "user": {"uid": 5, "gid": 6, "additionalGids": [7]}}
    )
    assert (proc.user.uid, proc.user.gid, proc.user.additional_gids) == (5, 6, (7,))
    with pytest.raises(SpecError, match=r"process\.args"):
        parse_process({"cwd": "/"})


def test_parse_does_not_mutate_input(tmp_path: Path) -> None:
    cfg = base()
    before = copy.deepcopy(cfg)
    parse(cfg, tmp_path)
    assert cfg == before
