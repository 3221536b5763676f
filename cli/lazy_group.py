"""A typer group whose sub-apps are imported and turned into commands only when used.

typer builds the click command of every command of every sub-app before it parses a
single argument (about 45 ms for pyctr's ~90 commands); `pyctr run` needs one of them.
Here a group names its sub-apps as "module:attribute" and builds one when the command
line reaches it (or when help lists it):

    class RootGroup(LazyGroup):
        subcommands = {"images": Sub("cli.ctr_images:images_app"),
                       "i": Sub("cli.ctr_images:images_app", hidden=True)}

    app = typer.Typer(cls=RootGroup)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import typer.main
from typer.core import TyperGroup


@dataclass(frozen=True, slots=True)
class Sub:
    """A sub-app by where it lives: "module:attribute" naming a typer.Typer."""

    target: str
    hidden: bool = False

    def load(self) -> typer.Typer:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class LazyGroup(TyperGroup):
    subcommands: ClassVar[dict[str, Sub]] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        # Hidden aliases only once built: listing one would build it, to show nothing.
        names = list(super().list_commands(ctx))
        return names + [n for n, s in self.subcommands.items() if not s.hidden and n not in names]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in self.subcommands:
            sub = self.subcommands[cmd_name]
            # get_group, not get_command: always a group, and without the completion
            # options typer adds to a top-level app.
            cmd = typer.main.get_group(sub.load())
            cmd.name = cmd_name
            cmd.hidden = sub.hidden
            self.add_command(cmd, cmd_name)
        return cmd

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in self.subcommands:
            # An unknown name fails: typer suggests close names ("Did you mean 'images'?")
            # from the commands built so far, so build them all on this path.
            for name in self.subcommands:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)
