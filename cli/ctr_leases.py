"""pyctr leases: ls, create, rm, as ctr has them.

    pyctr leases create --id pull-1 --expires 1h team=a     # prints the id
    pyctr leases ls
    pyctr leases rm pull-1 [--sync]

A lease keeps what it holds from the garbage collector; with `--expires` it goes by
itself (the `containerd.io/gc.expire` label).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from cli import output

leases_app = typer.Typer(help="Manage leases.", no_args_is_help=True, rich_markup_mode=None)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> timedelta:
    """A Go duration ("24h", "1h30m", "90s", "0")."""
    if text == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise typer.BadParameter(
            f"invalid duration {text!r} (e.g. 24h, 30m)", param_hint="--expires"
        )
    return timedelta(seconds=seconds)


def _rfc3339(t: datetime) -> str:
    """Local time as Go's time.RFC3339 prints it ("Z" for UTC)."""
    return t.astimezone().isoformat(timespec="seconds").replace("+00:00", "Z")


@leases_app.command("ls")
def leases_ls(
    ctx: typer.Context,
    filters: Annotated[list[str] | None, typer.Argument(metavar="[FILTER]...")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the ids.")] = False,
) -> None:
    """List leases (alias: list): ID CREATED AT LABELS."""
    from cli.ctr import connect

    with connect(ctx) as client:
        found = client.leases().list(*(filters or []))
    if quiet:
        for lease in found:
            print(lease.id)
        return
    rows = [
        (
            lease.id,
            _rfc3339(lease.created_at) if lease.created_at else "",
            output.labels(lease.labels) or "-",
        )
        for lease in found
    ]
    print(output.table(["id", "created at", "labels"], rows))


leases_app.command("list", hidden=True)(leases_ls)


@leases_app.command("create")
def leases_create(
    ctx: typer.Context,
    labels: Annotated[list[str] | None, typer.Argument(metavar="[KEY=VALUE]...")] = None,
    lease_id: Annotated[str, typer.Option("--id", help="The id (default: generated).")] = "",
    expires: Annotated[
        str, typer.Option("--expires", "-x", help="Expire after this long (0: never).")
    ] = "24h",
) -> None:
    """Create a lease; prints its id."""
    from cli.ctr import connect, parse_labels

    values = parse_labels(labels or [])
    ttl = parse_duration(expires)
    if ttl:
        at = datetime.now(UTC) + ttl
        values["containerd.io/gc.expire"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    with connect(ctx) as client:
        lease = client.leases().create(lease_id, values)
    print(lease.id)


@leases_app.command("rm")
def leases_rm(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(metavar="ID...")],
    sync: Annotated[
        bool, typer.Option("--sync", help="Return after the garbage collector has run.")
    ] = False,
) -> None:
    """Delete leases (aliases: delete, dl); prints each id deleted."""
    from cli.ctr import connect, warn
    from containerd_py import errdefs

    failed = False
    with connect(ctx) as client:
        for i, lease_id in enumerate(ids):
            try:
                client.leases().delete(lease_id, sync=sync and i == len(ids) - 1)
            except errdefs.PyContainerdError as e:
                warn(f"unable to delete lease {lease_id}: {e}")
                failed = True
                continue
            print(lease_id, flush=True)
    if failed:
        raise typer.Exit(1)


for _alias in ("delete", "dl"):
    leases_app.command(_alias, hidden=True)(leases_rm)
