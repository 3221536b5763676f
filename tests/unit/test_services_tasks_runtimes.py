"""Which runtime binary a task's shim is told to drive: the task's options, the container's,
its runtime name through the daemon's runtimes table (config file), or a path."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2

from containerd_py.api.types.v1 import runtime_pb2
from containerd_py.config import Config, ConfigError
from containerd_py.metadata.containers import Container, RuntimeInfo, TypedValue
from containerd_py.services.tasks import runtime_binaries, runtime_options

SECTION = "io.pycontainerd.runtime.v1.task"


def packed(binary: str) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(runtime_pb2.RuntimeOptions(binary_name=binary))
    return a


def container(name: str, options: str = "") -> Container:
    typed = None
    if options:
        p = packed(options)
        typed = TypedValue(p.type_url, p.value)
    return Container("c", RuntimeInfo(name, typed))


def test_default_table_names_the_known_runtimes() -> None:
    table = runtime_binaries({})
    assert table == {"pyrunc": "pyrunc", "runc": "runc", "crun": "crun"}
    assert runtime_options(container("runc"), None, table).binary_name == "runc"
    assert runtime_options(container("/opt/bin/crun"), None, table).binary_name == "/opt/bin/crun"
    # A name the table does not know is left to the shim's default (pyrunc).
    assert runtime_options(container("io.containerd.runc.v2"), None, table).binary_name == ""


def test_config_maps_a_name_to_a_binary() -> None:
    cfg = Config.from_dict(
        {
            "plugins": {
                SECTION: {
                    "runtimes": {
                        "pyrunc": {"binary_name": "runc"},
                        "fast": {"binary_name": "/usr/bin/crun"},
                    }
                }
            }
        }
    )
    table = runtime_binaries(cfg.plugins)
    assert runtime_options(container("pyrunc"), None, table).binary_name == "runc"
    assert runtime_options(container("fast"), None, table).binary_name == "/usr/bin/crun"
    assert runtime_options(container("crun"), None, table).binary_name == "crun"
    # Options the container or the task carry win over the name.
    assert runtime_options(container("pyrunc", "crun"), None, table).binary_name == "crun"
    task_opts = packed("pyrunc")
    assert runtime_options(container("pyrunc", "crun"), task_opts, table).binary_name == "pyrunc"


def test_toml_section_as_an_operator_writes_it(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[plugins."{SECTION}".runtimes.pyrunc]\nbinary_name = "runc"\n')
    assert runtime_binaries(Config.load(path).plugins)["pyrunc"] == "runc"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("oops", "must be a table"),
        ({"runtimes": []}, "runtimes] must be a table"),
        ({"runtimes": {"x": {}}}, "runtimes.x] needs a binary_name"),
        ({"runtimes": {"x": {"binary_name": 3}}}, "runtimes.x] needs a binary_name"),
        ({"runtimes": {"x": "runc"}}, "runtimes.x] needs a binary_name"),
    ],
)
def test_bad_sections_are_config_errors(section: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        runtime_binaries({SECTION: section})
