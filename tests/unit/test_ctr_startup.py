"""pyctr's start-up: the fast launcher, what each command imports, and the plain parameter
coercion that keeps pydantic out (with the same values as typer's own coercion)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oci_runtime import launcher

ROOT = Path(__file__).resolve().parents[2]
PYCTR_ENTRY = "cli.ctr:main"
PYCTR_PACKAGES = ("typer", "grpc", "google.protobuf")  # as the Makefile installs it
# Never needed by a command that parses well-formed arguments and talks to the daemon
# (typer loads rich for rich help and pretty tracebacks, which pyctr turns off).
HEAVY = ("pydantic", "pydantic_core", "rich")


def run_isolated(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` in the interpreter a pyctr launcher starts: -IS, the launcher's sys.path."""
    paths = launcher.search_path(PYCTR_ENTRY, PYCTR_PACKAGES)
    prelude = f"import sys\nsys.path[:0] = {paths!r}\n"
    return subprocess.run(
        [sys.executable, "-IS", "-c", prelude + code, *args],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the launcher -----------------------------------------------------------------------


def test_pyrunc_launcher_is_unchanged_by_default() -> None:
    text = launcher.launcher_text()
    assert text.splitlines() == [
        f"#!{sys.executable} -IS",
        "import sys",
        f"sys.path[:0] = {[str(ROOT)]!r}",
        "from oci_runtime.cli import main",
        "sys.exit(main())",
    ]


def test_pyctr_launcher_path_holds_the_tree_and_site_packages() -> None:
    import grpc
    import typer

    paths = launcher.search_path(PYCTR_ENTRY, PYCTR_PACKAGES)
    assert paths[0] == str(ROOT)
    assert str(Path(typer.__file__).parents[1]) in paths
    assert str(Path(grpc.__file__).parents[1]) in paths
    assert len(paths) == len(set(paths))


def test_written_pyctr_launcher_runs_isolated(tmp_path: Path, short_tmp: Path) -> None:
    dest = tmp_path / "pyctr"
    assert launcher.main([str(dest), PYCTR_ENTRY, *PYCTR_PACKAGES]) == 0
    assert os.access(dest, os.X_OK)
    assert dest.read_text().startswith(f"#!{sys.executable} -IS\n")
    assert [p.name for p in tmp_path.iterdir()] == ["pyctr"]  # no temporary file left
    # An environment that would break a script relying on it: -I ignores it.
    env = dict(os.environ, PYTHONPATH="/nonexistent", PYTHONHOME="/nonexistent")
    r = subprocess.run([dest, "--help"], cwd="/", env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: pyctr [OPTIONS] COMMAND [ARGS]...")
    # grpc and the generated modules import too: the call fails only for want of a daemon.
    address = str(short_tmp / "none.sock")
    r = subprocess.run([dest, "-a", address, "ns", "ls"], cwd="/", capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.startswith(f"pyctr: cannot connect to pycontainerd at {address}: ")
    assert r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cli.ctr"], "entry point 'cli.ctr' is not MODULE:FUNCTION"),
        (["cli.ctr:"], "entry point 'cli.ctr:' is not MODULE:FUNCTION"),
        (["nosuchpkg.mod:main"], "nosuchpkg is not installed"),
        (["cli.ctr:main", "typer", "nosuchpkg"], "nosuchpkg is not installed"),
    ],
)
def test_bad_launcher_requests_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    dest = tmp_path / "pyctr"
    assert launcher.main([str(dest), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"launcher: {message}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_launcher_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.main([]) == 2
    assert capsys.readouterr().err.startswith("usage: python -m oci_runtime.launcher DEST")


# -- what the commands import -----------------------------------------------------------

IMPORTS = """
import json
from cli import ctr
status = ctr.main(sys.argv[1:])
print(json.dumps([status, sorted(sys.modules)]))
"""


def imports_of(*args: str) -> tuple[int, set[str]]:
    r = run_isolated(IMPORTS, *args)
    assert r.stdout, r.stderr
    status, modules = json.loads(r.stdout.splitlines()[-1])
    return status, set(modules)


def services(modules: set[str]) -> set[str]:
    prefix = "containerd_py.api.services."
    return {m.split(".")[3] for m in modules if m.startswith(prefix) and m.endswith("_pb2")}


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_help_imports_neither_grpc_nor_pydantic() -> None:
    status, modules = imports_of("--help")
    assert status == 0
    assert heavy(modules) == set()
    assert not any(m == "grpc" or m.startswith("containerd_py.api") for m in modules)


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (["version"], {"version"}),
        (["ns", "ls", "-q"], {"namespaces"}),
        (["tasks", "ls"], {"tasks"}),
        (["images", "ls"], {"images"}),
        (["run", "--rm", "--env", "A=1", "--memory-limit", "1g", "IMG", "x", "true"], {"images"}),
    ],
)
def test_commands_import_only_the_services_they_call(
    short_tmp: Path, args: list[str], wanted: set[str]
) -> None:
    # No daemon: each command gets as far as its first call, having parsed all its options.
    status, modules = imports_of("--address", str(short_tmp / "none.sock"), *args)
    assert status == 1
    assert heavy(modules) == set()
    assert services(modules) == wanted
    assert "importlib.metadata" not in modules or args == ["version"]


# -- plain coercion against typer's own -------------------------------------------------

# Each command line reaches `connect`, which records the parsed values of every level.
CASES = [
    ["--address", "/tmp/x.sock", "-n", "web", "--timeout", "2.5", "ns", "ls", "-q", "a==b", "c"],
    ["ns", "create", "web", "a=1", "b"],
    ["ns", "rm", "a", "b"],
    ["version"],
    ["--timeout", "7", "events", 'topic=="/tasks/exit"'],
    ["run", "--rm", "--env", "A=1", "--env", "B=2", "--memory-limit", "64m", "--cgroup", "/a/b",
     "--runtime", "runc", "--snapshotter", "native", "IMG", "id", "sh", "-c", "echo hi"],
    ["run", "-d", "-t", "--cgroup", "", "IMG", "id"],
    ["tasks", "kill", "-s", "KILL", "-a", "c1"],
    ["t", "ls", "-q"],
    ["tasks", "rm", "-f", "c1"],
    ["images", "ls", "-q", "name~=busy"],
    ["i", "rm", "--sync", "a", "b"],
    ["snapshots", "--snapshotter", "native", "ls"],
    ["leases", "ls"],
    ["content", "ls", "-q"],
    ["containers", "create", "--label", "a=b", "--label", "c", "IMG", "c1", "--", "sh", "-c", "x"],
    ["c", "ls", "-q"],
]  # fmt: skip

PARSED = """
import json
import typer
from cli import ctr, plain_params

class Reached(Exception):
    pass

def connect(ctx):
    levels = []
    while ctx is not None:
        levels.append({k: list(v) if isinstance(v, tuple) else v for k, v in ctx.params.items()})
        ctx = ctx.parent
    raise Reached(levels)

ctr.connect = connect
if sys.argv[1] == "plain":
    assert plain_params.install()
seen = []
for argv in json.loads(sys.argv[2]):
    try:
        typer.main.get_command(ctr.app).main(argv, prog_name="pyctr", standalone_mode=False)
    except Reached as e:
        seen.append(e.args[0])
    except Exception as e:
        seen.append(f"{type(e).__name__}: {e}")
    else:
        seen.append(None)
print(json.dumps([seen, sorted(m for m in sys.modules if m.split(".")[0] == "pydantic")]))
"""


def parsed(mode: str) -> tuple[list, list[str]]:
    r = run_isolated(PARSED, mode, json.dumps(CASES))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_plain_coercion_gives_typers_values_without_pydantic() -> None:
    typers, typer_modules = parsed("typer")
    plain, plain_modules = parsed("plain")
    unreached = [(c, p) for c, p in zip(CASES, plain, strict=True) if not isinstance(p, list)]
    assert unreached == []
    assert plain == typers
    assert plain_modules == []
    assert typer_modules  # the comparison is with pydantic's coercion, not with itself
    run_level = plain[5][0]
    assert run_level["env"] == ["A=1", "B=2"] and run_level["cgroup"] == "/a/b"
    assert plain[0][-1] == {"address": "/tmp/x.sock", "namespace": "web", "timeout": 2.5}


def test_plain_coercion_of_bad_and_odd_values() -> None:
    from typer.models import OptionInfo

    from cli.plain_params import plain_coercion

    class Param:
        multiple, nargs = False, 1

    def coerce(annotation: type, value: object) -> object:
        coercer = plain_coercion(annotation, OptionInfo())
        assert coercer is not None
        return coercer.coerce(value, param=Param(), ctx=None)

    assert coerce(float, " 2.5 ") == 2.5
    assert coerce(int, "7") == 7
    assert coerce(str, b"caf\xc3\xa9") == "café"
    assert [coerce(bool, w) for w in ("yes", "0", "", "On")] == [True, False, False, True]
    assert coerce(str, None) is None
    for annotation, value in ((float, "x"), (int, "1.5"), (bool, "maybe")):
        with pytest.raises(Exception, match="is not a valid"):
            coerce(annotation, value)
    # What plain coercion leaves to typer.
    assert plain_coercion(Path, OptionInfo()) is None
    assert plain_coercion(int, OptionInfo(min=1)) is None
    assert plain_coercion(str, OptionInfo(parser=str.upper)) is None
