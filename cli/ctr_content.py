"""pyctr content: ls, rm, get (ctr's `content` commands), and the size and age formats the
image, snapshot and content tables share.

Sizes and ages are printed as ctr prints them: `content ls` with docker/go-units'
HumanSize ("1.037MB") and HumanDuration ("5 minutes"), the image and snapshot tables with
containerd's progress.Bytes ("1.0 MiB").
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from cli import output

content_app = typer.Typer(help="Manage content.", no_args_is_help=True, rich_markup_mode=None)

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def human_size(size: float) -> str:
    """go-units HumanSize: 4 significant digits, decimal units ("1.037MB", "512B")."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{_DECIMAL[i]}"


def progress_bytes(size: float) -> str:
    """containerd's progress.Bytes: one decimal, binary units ("1.0 MiB", "512.0 B")."""
    i = 0
    while size >= 1024 and i < len(_BINARY) - 1:
        size /= 1024
        i += 1
    return f"{size:02.1f} {_BINARY[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def labels_or_dash(labels: dict[str, str]) -> str:
    return output.labels(labels) or "-"


@content_app.command("ls")
def content_ls(
    ctx: typer.Context,
    filters: Annotated[list[str] | None, typer.Argument(metavar="[FILTER]...")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the digests.")] = False,
) -> None:
    """List the blobs of the namespace (alias: list), with their size on disk and age."""
    from cli.ctr import connect

    with connect(ctx) as client:
        infos = client.content().list(*(filters or []))
    if quiet:
        for info in infos:
            print(info.digest)
        return
    now = datetime.now(UTC)
    rows = [
        (
            i.digest,
            human_size(i.size),
            human_duration((now - i.created_at).total_seconds()),
            labels_or_dash(dict(i.labels)),
        )
        for i in infos
    ]
    print(output.table(["digest", "size", "age", "labels"], rows))


content_app.command("list", hidden=True)(content_ls)


@content_app.command("rm")
def content_rm(
    ctx: typer.Context,
    digests: Annotated[list[str], typer.Argument(metavar="DIGEST...")],
) -> None:
    """Remove blobs from the namespace (alias: delete). Nothing is printed, as with ctr."""
    from cli.ctr import connect, warn
    from containerd_py import errdefs

    failed = False
    with connect(ctx) as client:
        for digest in digests:
            try:
                client.content().delete(digest)
            except errdefs.PyContainerdError as e:
                warn(f"unable to delete {digest}: {e}")
                failed = True
    if failed:
        raise typer.Exit(1)


content_app.command("delete", hidden=True)(content_rm)


@content_app.command("get")
def content_get(
    ctx: typer.Context,
    digest: Annotated[str, typer.Argument(metavar="DIGEST")],
) -> None:
    """Write a blob's bytes to stdout."""
    from cli.ctr import connect

    with connect(ctx) as client:
        out = sys.stdout.buffer
        for chunk in client.content().chunks(digest):
            out.write(chunk)
        out.flush()
