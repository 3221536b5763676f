"""The gRPC API (proto/ → containerd_py/api/): generated code is current and importable,
services have the RPCs the daemon and the shim implement, and the API rules of STYLE.md §4
hold (versioned pycontainerd.* packages, one service per file, <Rpc>Request/<Rpc>Response).
"""

from __future__ import annotations

import filecmp
import importlib
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
API = ROOT / "containerd_py" / "api"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

PROTOS = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
# containerd_py/api/types/v1/mount.proto → containerd_py.api.types.v1.mount_pb2
PB2_MODULES = [p.removesuffix(".proto").replace("/", ".") + "_pb2" for p in PROTOS]
GRPC_MODULES = [m + "_grpc" for m in PB2_MODULES]

# Every service, with its RPCs and their streaming shape (client streams, server streams).
UNARY = (False, False)
SERVER_STREAM = (False, True)
CLIENT_STREAM = (True, False)
BIDI = (True, True)
SERVICES: dict[str, dict[str, tuple[bool, bool]]] = {
    "pycontainerd.services.namespaces.v1.Namespaces": dict.fromkeys(
        ["Get", "List", "Create", "Update", "Delete"], UNARY
    ),
    "pycontainerd.services.containers.v1.Containers": {
        **dict.fromkeys(["Get", "List", "Create", "Update", "Delete"], UNARY),
        "ListStream": SERVER_STREAM,
    },
    "pycontainerd.services.images.v1.Images": {
        **dict.fromkeys(["Get", "List", "Create", "Update", "Delete"], UNARY),
        "Pull": SERVER_STREAM,
        "Push": SERVER_STREAM,
        "Import": CLIENT_STREAM,
        "Export": SERVER_STREAM,
    },
    "pycontainerd.services.content.v1.Content": {
        **dict.fromkeys(["Info", "Update", "Delete", "Status", "ListStatuses", "Abort"], UNARY),
        "List": SERVER_STREAM,
        "Read": SERVER_STREAM,
        "Write": BIDI,
    },
    "pycontainerd.services.snapshots.v1.Snapshots": {
        **dict.fromkeys(
            [
                "Prepare", "View", "Mounts", "Commit", "Remove", "Stat", "Update", "Usage",
                "Cleanup",
            ],
            UNARY,
        ),
        "List": SERVER_STREAM,
    },
    "pycontainerd.services.tasks.v1.Tasks": {
        **dict.fromkeys(
            [
                "Create", "Start", "Delete", "DeleteProcess", "Get", "List", "Kill", "Exec",
                "ResizePty", "CloseIO", "Pause", "Resume", "ListPids", "Checkpoint", "Update",
                "Metrics", "Wait",
            ],
            UNARY,
        ),
        "Attach": BIDI,
        "Logs": SERVER_STREAM,
    },
    "pycontainerd.services.events.v1.Events": {
        "Publish": UNARY,
        "Forward": UNARY,
        "Subscribe": SERVER_STREAM,
    },
    "pycontainerd.services.leases.v1.Leases": dict.fromkeys(
        ["Create", "Delete", "List", "AddResource", "DeleteResource", "ListResources"], UNARY
    ),
    "pycontainerd.services.version.v1.Version": {"Version": UNARY},
    "pycontainerd.services.transfer.v1.Transfer": dict.fromkeys(["Pull", "Push"], SERVER_STREAM),
    "pycontainerd.services.introspection.v1.Introspection": dict.fromkeys(
        ["Plugins", "Server"], UNARY
    ),
    "pycontainerd.runtime.task.v1.Task": {
        **dict.fromkeys(
            [
                "State", "Create", "Start", "Delete", "Pids", "Pause", "Resume", "Checkpoint",
                "Kill", "Exec", "ResizePty", "CloseIO", "Update", "Wait", "Stats", "Connect",
                "Shutdown",
            ],
            UNARY,
        ),
        "Attach": BIDI,
    },
    "pycontainerd.runtime.events.v1.Events": {"Forward": UNARY},
}  # fmt: skip

# Streamed answers named after what they carry rather than <Rpc>Response: progress
# reports and event envelopes.
IMAGES = "pycontainerd.services.images.v1"
STREAMED_NOUNS = {
    (f"{IMAGES}.Images", "Pull"): f"{IMAGES}.PullProgress",
    (f"{IMAGES}.Images", "Push"): f"{IMAGES}.PushProgress",
    ("pycontainerd.services.events.v1.Events", "Subscribe"): "pycontainerd.types.v1.Envelope",
}

# What a shim process may load: its own API, the shared types and the event payloads,
# never the daemon's services (one shim per container: import cost counts).
SHIM_MODULES = [
    "containerd_py.api.runtime.task.v1.shim_pb2_grpc",
    "containerd_py.api.runtime.task.v1.bootstrap_pb2",
    "containerd_py.api.runtime.events.v1.events_pb2_grpc",
    "containerd_py.api.events.v1.task_pb2",
]


def file_descriptors():
    return [importlib.import_module(m).DESCRIPTOR for m in PB2_MODULES]


def test_there_are_protos() -> None:
    assert len(PROTOS) >= 20, PROTOS


def pinned_grpc_tools() -> str:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d for d in extra["optional-dependencies"]["test"] if d.startswith("grpcio-tools==")]
    assert len(pins) == 1, "pin grpcio-tools==X in the test extra of pyproject.toml"
    return pins[0].split("==", 1)[1]


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None,
    reason="grpcio-tools is not installed (pip install -e '.[test]')",
)
def test_generated_code_is_current(tmp_path: Path) -> None:
    """The same check as `make proto-check`: regenerate and compare byte for byte."""
    have, pinned = importlib.metadata.version("grpcio-tools"), pinned_grpc_tools()
    assert have == pinned, (
        f"grpcio-tools {have} installed, {pinned} pinned: pip install -e '.[test]'"
    )
    outs = [f"--{kind}_out={tmp_path}" for kind in ("python", "pyi", "grpc_python")]
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", *outs, *PROTOS]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr

    def generated(root: Path) -> set[str]:
        return {
            p.relative_to(root).as_posix()
            for p in (root / "containerd_py" / "api").rglob("*")
            if p.name.endswith(GENERATED_SUFFIXES)
        }

    fresh, committed = generated(tmp_path), generated(ROOT)
    stale = sorted(fresh ^ committed)
    stale += sorted(
        f for f in fresh & committed if not filecmp.cmp(tmp_path / f, ROOT / f, shallow=False)
    )
    assert not stale, f"containerd_py/api is stale, run `make proto` and commit: {stale}"


def test_every_generated_dir_is_a_package() -> None:
    dirs = {p.parent for p in API.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)}
    for d in sorted(dirs):
        while d != API.parent:
            assert (d / "__init__.py").is_file(), f"{d.relative_to(ROOT)} has no __init__.py"
            d = d.parent


@pytest.mark.parametrize("module", PB2_MODULES + GRPC_MODULES)
def test_generated_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_services_have_the_expected_rpcs() -> None:
    found = {}
    for fd in file_descriptors():
        for svc in fd.services_by_name.values():
            found[svc.full_name] = {
                m.name: (m.client_streaming, m.server_streaming) for m in svc.methods
            }
    assert found == SERVICES


def test_grpc_stubs_and_servicers_exist() -> None:
    for name in SERVICES:
        short = name.rsplit(".", 1)[1]
        fd = next(fd for fd in file_descriptors() if name in _services(fd))
        grpc_mod = importlib.import_module(
            fd.name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc"
        )
        assert hasattr(grpc_mod, f"{short}Stub"), name
        assert hasattr(grpc_mod, f"{short}Servicer"), name
        assert hasattr(grpc_mod, f"add_{short}Servicer_to_server"), name


def _services(fd) -> set[str]:
    return {s.full_name for s in fd.services_by_name.values()}


def test_packages_are_versioned_and_follow_the_path() -> None:
    """containerd_py/api/services/tasks/v1/tasks.proto → package pycontainerd.services.tasks.v1."""
    for fd in file_descriptors():
        directory = fd.name.removeprefix("containerd_py/api/").rsplit("/", 1)[0]
        assert fd.package == "pycontainerd." + directory.replace("/", "."), fd.name
        assert re.fullmatch(r"v\d+", fd.package.rsplit(".", 1)[1]), fd.name


def test_one_service_per_file_and_only_where_services_live() -> None:
    for fd in file_descriptors():
        assert len(fd.services_by_name) <= 1, fd.name
        if fd.services_by_name:
            assert fd.name.startswith(("containerd_py/api/services/", "containerd_py/api/runtime/"))
        else:
            assert not fd.name.startswith("containerd_py/api/services/"), fd.name


def test_request_and_response_naming() -> None:
    """<Rpc>Request in, <Rpc>Response out, both declared beside the service."""
    for fd in file_descriptors():
        for svc in fd.services_by_name.values():
            for m in svc.methods:
                assert m.input_type.full_name == f"{fd.package}.{m.name}Request", (
                    svc.full_name,
                    m.name,
                )
                expected = STREAMED_NOUNS.get(
                    (svc.full_name, m.name), f"{fd.package}.{m.name}Response"
                )
                assert m.output_type.full_name == expected, (svc.full_name, m.name)


def test_streamed_nouns_are_streams() -> None:
    for svc, rpc in STREAMED_NOUNS:
        assert SERVICES[svc][rpc][1], (svc, rpc)


def test_protos_import_by_repo_path() -> None:
    """Imports read "containerd_py/api/..." (or the well-known types), so that generated
    code imports `from containerd_py.api... import x_pb2` with no path hacks."""
    for fd in file_descriptors():
        for dep in fd.dependencies:
            assert dep.name.startswith(("containerd_py/api/", "google/protobuf/")), (
                fd.name,
                dep.name,
            )


def test_shim_loads_no_daemon_service() -> None:
    """A shim's generated modules pull in runtime/, types/ and events/ only."""
    code = (
        "import importlib, sys\n"
        f"for m in {SHIM_MODULES!r}: importlib.import_module(m)\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('containerd_py.api')))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    loaded = run.stdout.split()
    assert loaded, "nothing imported"
    allowed = ("containerd_py.api.runtime", "containerd_py.api.types", "containerd_py.api.events")
    assert [m for m in loaded if not m.startswith(allowed)] == ["containerd_py.api"]


def test_dependency_floors_satisfy_the_generated_guards() -> None:
    """grpcio >= the tools version and protobuf >= the gencode version, so that the
    import-time version checks in the generated modules never fire for an installed tree."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def floor(name: str) -> tuple[int, ...]:
        spec = next(d for d in deps if re.match(rf"{name}\s*>=", d))
        return tuple(int(x) for x in re.search(r">=\s*([\d.]+)", spec).group(1).split("."))

    grpc_text = (API / "runtime/task/v1/shim_pb2_grpc.py").read_text()
    grpc_gen = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc_text).group(1)
    assert floor("grpcio") >= tuple(int(x) for x in grpc_gen.split("."))
    pb_text = (API / "runtime/task/v1/shim_pb2.py").read_text()
    pb_gen = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", pb_text).groups()
    assert floor("protobuf") >= tuple(int(x) for x in pb_gen)
    assert floor("grpcio") >= tuple(int(x) for x in pinned_grpc_tools().split("."))
