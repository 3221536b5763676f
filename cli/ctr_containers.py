"""pyctr containers (aliases container, c): create, ls, info, rm, as ctr has them.

    pyctr containers create docker.io/library/busybox:latest web --label app=web -- sh -c 'echo hi'
    pyctr containers ls
    pyctr containers info web
    pyctr containers rm web            # the record and its snapshot

`create` makes a record only (no task): an active snapshot named after the container on
the unpacked image, and a spec from the image config over our default spec.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli import output

containers_app = typer.Typer(help="Manage containers.", no_args_is_help=True, rich_markup_mode=None)


@containers_app.command("create")
def containers_create(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE")],
    container_id: Annotated[str, typer.Argument(metavar="ID")],
    command: Annotated[
        list[str] | None, typer.Argument(metavar="[COMMAND [ARG]...]", help="Replaces Cmd.")
    ] = None,
    snapshotter: Annotated[
        str,
        typer.Option(
            "--snapshotter", envvar="CONTAINERD_SNAPSHOTTER", help="Default: the daemon's."
        ),
    ] = "",
    labels: Annotated[
        list[str] | None, typer.Option("--label", help="KEY=VALUE label for the container.")
    ] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE variable.")] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="OCI runtime to run it with.")] = (
        "pyrunc"
    ),
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a terminal.")] = False,
) -> None:
    """Create a container from an unpacked image."""
    from cli.ctr import connect, parse_labels

    with connect(ctx) as client:
        client.new_container(
            container_id,
            image,
            snapshotter=snapshotter,
            labels=parse_labels(labels or []),
            runtime=runtime,
            args=command or None,
            env=env or (),
            terminal=tty,
        )


@containers_app.command("ls")
def containers_ls(
    ctx: typer.Context,
    filters: Annotated[list[str] | None, typer.Argument(metavar="[FILTER]...")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the ids.")] = False,
) -> None:
    """List containers (alias: list): CONTAINER IMAGE RUNTIME."""
    from cli.ctr import connect

    with connect(ctx) as client:
        found = client.containers().list(*(filters or []))
    if quiet:
        for c in found:
            print(c.id)
        return
    rows = [(c.id, c.image or "-", c.runtime) for c in found]
    print(output.table(["container", "image", "runtime"], rows))


containers_app.command("list", hidden=True)(containers_ls)


def info_json(c: Any) -> dict[str, Any]:
    """The record as `ctr containers info` prints it (Go field names, spec decoded)."""
    from google.protobuf import json_format

    def typed(value: Any) -> Any:
        if value is None:
            return None
        return {"type_url": value.type_url, "value": json_format.MessageToDict(value).get("value")}

    spec: Any = None
    if c.spec is not None:
        try:
            spec = json.loads(c.spec)
        except ValueError:
            spec = c.spec.decode(errors="replace")
    return {
        "ID": c.id,
        "Labels": dict(c.labels) or None,
        "Image": c.image,
        "Runtime": {"Name": c.runtime, "Options": typed(c.runtime_options)},
        "SnapshotKey": c.snapshot_key,
        "Snapshotter": c.snapshotter,
        "CreatedAt": c.created_at.isoformat().replace("+00:00", "Z") if c.created_at else None,
        "UpdatedAt": c.updated_at.isoformat().replace("+00:00", "Z") if c.updated_at else None,
        "Extensions": {k: typed(v) for k, v in c.extensions.items()} or None,
        "SandboxID": c.sandbox,
        "Spec": spec,
    }


@containers_app.command("info")
def containers_info(
    ctx: typer.Context,
    container_id: Annotated[str, typer.Argument(metavar="ID")],
    spec_only: Annotated[bool, typer.Option("--spec", help="Print only the spec.")] = False,
) -> None:
    """Print a container's record as JSON."""
    from cli.ctr import connect

    with connect(ctx) as client:
        c = client.containers().get(container_id)
    doc = info_json(c)
    print(json.dumps(doc["Spec"] if spec_only else doc, indent=4))


@containers_app.command("rm")
def containers_rm(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(metavar="ID...")],
    keep_snapshot: Annotated[
        bool, typer.Option("--keep-snapshot", help="Do not remove the snapshot.")
    ] = False,
) -> None:
    """Delete containers and their snapshots (aliases: delete, del, remove)."""
    from cli.ctr import connect, warn
    from containerd_py import errdefs

    failed = False
    with connect(ctx) as client:
        for cid in ids:
            try:
                client.delete_container(cid, cleanup_snapshot=not keep_snapshot)
            except errdefs.PyContainerdError as e:
                warn(f"failed to delete container {cid!r}: {e}")
                failed = True
    if failed:
        raise typer.Exit(1)


for _alias in ("delete", "del", "remove"):
    containers_app.command(_alias, hidden=True)(containers_rm)
