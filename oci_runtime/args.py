"""A small command-line parser shaped like runc's (urfave/cli): global flags, a command,
its flags, then positionals.

Why not argparse: pyrunc runs once per container operation and argparse with subcommands
costs more to import and build than a whole `pyrunc start` does. The grammar is regular
enough that a table does it: `--flag value`, `--flag=value`, `-f value`, boolean flags,
repeatable flags, and flag parsing that stops at the first positional for commands whose
trailing arguments belong to the container (`exec ID CMD...`, `ps ID PS-ARGS...`).
"""

from __future__ import annotations

import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class UsageError(Exception):
    pass


class Flag:
    __slots__ = ("convert", "default", "dest", "help", "kind", "names")

    # kind: "bool", "value", or "list" (repeatable value)
    def __init__(
        self,
        names: str,
        kind: str = "value",
        default: Any = None,
        help: str = "",
        convert: Any = None,
    ) -> None:
        self.names = tuple(names.split("|"))
        self.kind = kind
        self.dest = max(self.names, key=len).lstrip("-").replace("-", "_")
        self.default = [] if kind == "list" and default is None else default
        self.default = False if kind == "bool" and default is None else self.default
        self.help = help
        self.convert = convert


class Command:
    __slots__ = ("flags", "help", "name", "positionals", "rest")

    def __init__(
        self,
        name: str,
        help: str,
        positionals: tuple[str, ...] = ("id",),
        flags: tuple[Flag, ...] = (),
        rest: str | None = None,
    ) -> None:
        self.name = name
        self.help = help
        self.positionals = positionals
        self.flags = flags
        self.rest = rest  # name of the list that takes every argument after the positionals


def _lookup(flags: tuple[Flag, ...], name: str) -> Flag | None:
    for f in flags:
        if name in f.names:
            return f
    return None


def _take(flags: tuple[Flag, ...], argv: list[str], i: int, ns: dict[str, Any], where: str) -> int:
    """Parse the flag at argv[i] into ns; return the index after it."""
    arg = argv[i]
    name, eq, inline = arg.partition("=")
    f = _lookup(flags, name)
    if f is None:
        raise UsageError(f"flag provided but not defined: {name} ({where})")
    if f.kind == "bool":
        ns[f.dest] = inline.lower() not in ("false", "0") if eq else True
        return i + 1
    if eq:
        value = inline
    else:
        if i + 1 >= len(argv):
            raise UsageError(f"flag needs an argument: {name}")
        value = argv[i + 1]
        i += 1
    if f.convert is not None:
        try:
            value = f.convert(value)
        except ValueError:
            raise UsageError(f"invalid value {value!r} for flag {name}") from None
    if f.kind == "list":
        ns[f.dest] = [*ns[f.dest], value]
    else:
        ns[f.dest] = value
    return i + 1


def parse(
    argv: list[str], global_flags: tuple[Flag, ...], commands: dict[str, Command]
) -> types.SimpleNamespace:
    ns: dict[str, Any] = {f.dest: f.default for f in global_flags}
    ns["command"] = None
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] in ("-h", "--help"):
            ns["help"] = True
            return types.SimpleNamespace(**ns)
        i = _take(global_flags, argv, i, ns, "global")
    if i >= len(argv):
        return types.SimpleNamespace(**ns)
    name = argv[i]
    cmd = commands.get(name)
    if cmd is None:
        raise UsageError(f"no such command: {name}")
    ns["command"] = name
    ns.update({f.dest: f.default for f in cmd.flags})
    positionals: list[str] = []
    rest: list[str] = []
    i += 1
    while i < len(argv):
        arg = argv[i]
        if cmd.rest is not None and len(positionals) == len(cmd.positionals):
            rest = argv[i:]
            break
        if arg == "--":
            positionals.extend(argv[i + 1 :])
            break
        if arg in ("-h", "--help"):
            ns["help"] = True
            return types.SimpleNamespace(**ns)
        if arg.startswith("-") and arg != "-":
            i = _take(cmd.flags, argv, i, ns, name)
            continue
        positionals.append(arg)
        i += 1
    if cmd.rest is not None and len(positionals) > len(cmd.positionals):
        rest = positionals[len(cmd.positionals) :] + rest
        positionals = positionals[: len(cmd.positionals)]
    names = [p.rstrip("?") for p in cmd.positionals]
    required = sum(1 for p in cmd.positionals if not p.endswith("?"))
    if not required <= len(positionals) <= len(names):
        want = " ".join(p.upper() for p in cmd.positionals) or "no arguments"
        raise UsageError(f"{name}: expected {want}, got {len(positionals)} argument(s)")
    for i, pname in enumerate(names):
        ns[pname] = positionals[i] if i < len(positionals) else None
    if cmd.rest is not None:
        ns[cmd.rest] = rest
    return types.SimpleNamespace(**ns)


def usage(
    prog: str,
    global_flags: tuple[Flag, ...],
    commands: dict[str, Command],
    command: str | None = None,
) -> str:
    if command and command in commands:
        cmd = commands[command]
        pos = " ".join(p.upper() for p in cmd.positionals)
        rest = f" [{cmd.rest.upper()}...]" if cmd.rest else ""
        lines = [f"usage: {prog} {cmd.name} [flags] {pos}{rest}", "", cmd.help, ""]
        lines += [f"  {', '.join(f.names):28} {f.help}" for f in cmd.flags]
        return "\n".join(lines)
    lines = [f"usage: {prog} [global flags] COMMAND [flags] ARGS", "", "commands:"]
    lines += [f"  {c.name:12} {c.help}" for c in commands.values()]
    lines += ["", "global flags:"]
    lines += [f"  {', '.join(f.names):28} {f.help}" for f in global_flags]
    return "\n".join(lines)
