"""The runc-style command-line grammar."""

from __future__ import annotations

import pytest

from oci_runtime.args import UsageError, parse
from oci_runtime.cli import COMMAND_TABLE, GLOBAL_FLAGS, parse_bytes, parse_signal


def p(*argv: str):
    return parse(list(argv), GLOBAL_FLAGS, COMMAND_TABLE)


def test_global_and_command_flags() -> None:
    a = p("--root", "/r", "--log-format=json", "create", "--bundle", "/b", "--pid-file=/p", "c1")
    assert (a.root, a.log_format, a.command, a.bundle, a.pid_file, a.id) == (
        "/r",
        "json",
        "create",
        "/b",
        "/p",
        "c1",
    )
    assert a.no_pivot is False


def test_defaults() -> None:
    a = p("state", "x")
    assert a.root == "/run/pyrunc" and a.log is None and a.debug is False


def test_exec_keeps_the_container_command() -> None:
    a = p("exec", "-e", "A=1", "--env", "B=2", "c1", "sh", "-c", "echo -e hi")
    assert a.env == ["A=1", "B=2"]
    assert a.args == ["sh", "-c", "echo -e hi"]


def test_ps_args_after_id() -> None:
    a = p("ps", "--format", "json", "c1", "-o", "pid")
    assert a.format == "json" and a.ps_args == ["-o", "pid"]


def test_kill_optional_signal() -> None:
    assert p("kill", "c1").signal is None
    assert p("kill", "--all", "c1", "KILL").signal == "KILL"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "no such command"),
        (["start"], "expected ID"),
        (["start", "a", "b"], "expected ID"),
        (["create", "--nope", "x"], "flag provided but not defined: --nope"),
        (["create", "--bundle"], "flag needs an argument"),
        (["exec", "--preserve-fds", "x", "c1", "sh"], "invalid value"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        p(*argv)


def test_signals() -> None:
    assert parse_signal("KILL") == 9
    assert parse_signal("sigterm") == 15
    assert parse_signal("9") == 9
    with pytest.raises(Exception, match="unknown signal"):
        parse_signal("SIGNOPE")


def test_sizes() -> None:
    assert parse_bytes("100M") == 100 << 20
    assert parse_bytes("1g") == 1 << 30
    assert parse_bytes("4096") == 4096
    assert parse_bytes("-1") == -1
