"""pyctr snapshots (alias snapshot): ls, usage, rm, prepare, view, mounts, commit, info.

    pyctr snapshots [--snapshotter native] ls
    pyctr snapshots prepare --target /mnt work sha256:...    # prints the mount commands
    pyctr snapshots mounts /mnt work
    pyctr snapshots commit done work
    pyctr snapshots usage [KEY]...

Mounts print as ctr prints them, one `mount -t TYPE SOURCE TARGET -o OPTIONS` per line,
ready for a shell.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

from cli import output
from cli.ctr_content import progress_bytes

snapshots_app = typer.Typer(help="Manage snapshots.", no_args_is_help=True, rich_markup_mode=None)


@snapshots_app.callback()
def snapshots_options(
    ctx: typer.Context,
    snapshotter: Annotated[
        str,
        typer.Option(
            "--snapshotter",
            envvar="CONTAINERD_SNAPSHOTTER",
            help="Snapshotter to use (default: the daemon's).",
        ),
    ] = "",
) -> None:
    ctx.meta["snapshotter"] = snapshotter


def _service(ctx: typer.Context, client: Any) -> Any:
    return client.snapshots(ctx.meta.get("snapshotter", ""))


def mount_lines(target: str, mounts: list[Any]) -> list[str]:
    return [
        f"mount -t {m.type} {m.source} {os.path.normpath(os.path.join(target, m.target))}"
        f" -o {','.join(m.options)}".rstrip()
        for m in mounts
    ]


def _labels(args: list[str] | None) -> dict[str, str]:
    from cli.ctr import parse_labels

    return parse_labels(args or [])


@snapshots_app.command("ls")
def snapshots_ls(
    ctx: typer.Context,
    filters: Annotated[list[str] | None, typer.Argument(metavar="[FILTER]...")] = None,
) -> None:
    """List snapshots (alias: list): KEY PARENT KIND."""
    from cli.ctr import connect

    with connect(ctx) as client:
        found = _service(ctx, client).list(*(filters or []))
    rows = [(s.name, s.parent, s.kind) for s in sorted(found, key=lambda s: s.name)]
    print(output.table(["key", "parent", "kind"], rows))


snapshots_app.command("list", hidden=True)(snapshots_ls)


@snapshots_app.command("usage")
def snapshots_usage(
    ctx: typer.Context,
    keys: Annotated[list[str] | None, typer.Argument(metavar="[KEY]...")] = None,
) -> None:
    """Disk usage of snapshots (all when no KEY): KEY SIZE INODES."""
    from cli.ctr import connect

    with connect(ctx) as client:
        service = _service(ctx, client)
        names = keys or sorted(s.name for s in service.list())
        rows = []
        for key in names:
            u = service.usage(key)
            rows.append((key, progress_bytes(u.size), u.inodes))
    print(output.table(["key", "size", "inodes"], rows))


@snapshots_app.command("rm")
def snapshots_rm(
    ctx: typer.Context,
    keys: Annotated[list[str], typer.Argument(metavar="KEY...")],
) -> None:
    """Remove snapshots (aliases: delete, del, remove)."""
    from cli.ctr import connect, warn
    from containerd_py import errdefs

    failed = False
    with connect(ctx) as client:
        service = _service(ctx, client)
        for key in keys:
            try:
                service.remove(key)
            except errdefs.PyContainerdError as e:
                warn(f"failed to remove {key!r}: {e}")
                failed = True
    if failed:
        raise typer.Exit(1)


for _alias in ("delete", "del", "remove"):
    snapshots_app.command(_alias, hidden=True)(snapshots_rm)


TargetOption = Annotated[
    str, typer.Option("--target", "-t", help="Print the mount commands for this directory.")
]
LabelOption = Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE label.")]


@snapshots_app.command("prepare")
def snapshots_prepare(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY")],
    parent: Annotated[str, typer.Argument(metavar="[PARENT]")] = "",
    target: TargetOption = "",
    labels: LabelOption = None,
) -> None:
    """Make an active (writable) snapshot on PARENT."""
    from cli.ctr import connect

    with connect(ctx) as client:
        mounts = _service(ctx, client).prepare(key, parent, _labels(labels))
    if target:
        print("\n".join(mount_lines(target, mounts)))


@snapshots_app.command("view")
def snapshots_view(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY")],
    parent: Annotated[str, typer.Argument(metavar="[PARENT]")] = "",
    target: TargetOption = "",
    labels: LabelOption = None,
) -> None:
    """Make a read-only view of PARENT."""
    from cli.ctr import connect

    with connect(ctx) as client:
        mounts = _service(ctx, client).view(key, parent, _labels(labels))
    if target:
        print("\n".join(mount_lines(target, mounts)))


@snapshots_app.command("mounts")
def snapshots_mounts(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="TARGET")],
    key: Annotated[str, typer.Argument(metavar="KEY")],
) -> None:
    """Print the commands that mount snapshot KEY at TARGET (alias: m, mount)."""
    from cli.ctr import connect

    with connect(ctx) as client:
        mounts = _service(ctx, client).mounts(key)
    print("\n".join(mount_lines(target, mounts)))


for _alias in ("m", "mount"):
    snapshots_app.command(_alias, hidden=True)(snapshots_mounts)


@snapshots_app.command("commit")
def snapshots_commit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    key: Annotated[str, typer.Argument(metavar="KEY")],
    labels: LabelOption = None,
) -> None:
    """Commit the active snapshot KEY as the committed snapshot NAME."""
    from cli.ctr import connect

    with connect(ctx) as client:
        _service(ctx, client).commit(name, key, _labels(labels))


@snapshots_app.command("info")
def snapshots_info(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY")],
) -> None:
    """Print a snapshot's info as JSON."""
    from cli.ctr import connect

    with connect(ctx) as client:
        s = _service(ctx, client).stat(key)
    doc = {
        "Kind": s.kind,
        "Name": s.name,
        "Parent": s.parent or None,
        "Labels": dict(s.labels) or None,
        "Created": s.created_at.isoformat().replace("+00:00", "Z") if s.created_at else None,
        "Updated": s.updated_at.isoformat().replace("+00:00", "Z") if s.updated_at else None,
    }
    print(json.dumps({k: v for k, v in doc.items() if v is not None}, indent=4))
