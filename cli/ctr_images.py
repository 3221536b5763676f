"""pyctr images (aliases image, i): ls, import, export, rm, tag, usage, as ctr has them.

    pyctr images import busybox.tar            # OCI layout tar or docker-save tar
    pyctr images ls
    pyctr images tag docker.io/library/busybox:latest example.com/bb:1
    pyctr images export out.tar example.com/bb:1 [--format docker]
    pyctr images usage example.com/bb:1
    pyctr images rm example.com/bb:1

The archive travels over the gRPC stream (the daemon may be elsewhere); `--local` hands
the daemon a path on its own host instead.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output
from cli.ctr_content import labels_or_dash, progress_bytes

images_app = typer.Typer(help="Manage images.", no_args_is_help=True, rich_markup_mode=None)

SnapshotterOption = Annotated[
    str,
    typer.Option(
        "--snapshotter",
        envvar="CONTAINERD_SNAPSHOTTER",
        help="Snapshotter to unpack into (default: the daemon's).",
    ),
]


@images_app.command("ls")
def images_ls(
    ctx: typer.Context,
    filters: Annotated[list[str] | None, typer.Argument(metavar="[FILTER]...")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the names.")] = False,
) -> None:
    """List images (alias: list): REF TYPE DIGEST SIZE PLATFORMS LABELS."""
    from cli.ctr import connect, warn
    from containerd_py import errdefs

    with connect(ctx) as client:
        found = client.images().list(*(filters or []))
        if quiet:
            for image in found:
                print(image.name)
            return
        rows = []
        for image in found:
            size, platforms = "-", "-"
            try:
                summary = client.image_summary(image)
                size = progress_bytes(summary.size)
                platforms = ",".join(summary.platforms) or "-"
            except errdefs.PyContainerdError as e:
                # As ctr: an image whose content is gone is still listed.
                warn(f"failed calculating size for image {image.name}: {e}")
            rows.append(
                (
                    image.name,
                    image.target.media_type,
                    image.target.digest,
                    size,
                    platforms,
                    labels_or_dash(dict(image.labels)),
                )
            )
    print(output.table(["ref", "type", "digest", "size", "platforms", "labels"], rows))


images_app.command("list", hidden=True)(images_ls)


@images_app.command("import")
def images_import(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="A tar, or - for stdin.")],
    base_name: Annotated[
        str,
        typer.Option("--base-name", help="Name for images the archive names by tag or not at all."),
    ] = "",
    no_unpack: Annotated[
        bool, typer.Option("--no-unpack", help="Only store the content, do not unpack.")
    ] = False,
    snapshotter: SnapshotterOption = "",
    labels: Annotated[
        list[str] | None, typer.Option("--label", help="KEY=VALUE label for the images.")
    ] = None,
    platform: Annotated[
        str | None, typer.Option("--platform", help="Platform to import (default: the host's).")
    ] = None,
    all_platforms: Annotated[
        bool, typer.Option("--all-platforms", help="Import every platform's content.")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="FILE is a path on the daemon's host.")
    ] = False,
) -> None:
    """Import images from an OCI layout tar or a `docker save` tar."""
    import sys

    from cli.ctr import connect, parse_labels

    source = sys.stdin.buffer if file == "-" else file
    with connect(ctx) as client:
        imported = client.images().import_archive(
            source,
            daemon_path=local,
            base_name=base_name,
            unpack=not no_unpack,
            snapshotter=snapshotter,
            labels=parse_labels(labels or []),
            platform=platform,
            all_platforms=all_platforms,
        )
    for image in imported:
        if no_unpack:
            print(f"{image.name} ({image.target.digest})")
        else:
            # The daemon unpacked before answering; the line keeps ctr's shape.
            print(f"unpacking {image.name} ({image.target.digest})...done")


@images_app.command("export")
def images_export(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="Where to write, or - for stdout.")],
    names: Annotated[list[str], typer.Argument(metavar="IMAGE...")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="oci (an OCI layout tar) or docker (a docker-save tar)."),
    ] = "oci",
    platform: Annotated[
        str | None, typer.Option("--platform", help="Platform to export (default: the host's).")
    ] = None,
    all_platforms: Annotated[
        bool, typer.Option("--all-platforms", help="Export every platform present.")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="FILE is a path on the daemon's host.")
    ] = False,
) -> None:
    """Export images to a tar file."""
    import sys

    from cli.ctr import connect

    if fmt not in ("oci", "docker"):
        raise typer.BadParameter(f"{fmt!r} is not oci or docker", param_hint="--format")
    out = sys.stdout.buffer if file == "-" else file
    with connect(ctx) as client:
        client.images().export(
            names,
            out,
            format=fmt,
            daemon_path=local,
            platform=platform,
            all_platforms=all_platforms,
        )
    if file == "-":
        sys.stdout.buffer.flush()


@images_app.command("rm")
def images_rm(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(metavar="IMAGE...")],
    sync: Annotated[
        bool, typer.Option("--sync", help="Return after the garbage collector has run.")
    ] = False,
) -> None:
    """Remove images (aliases: remove, delete); a name not found is a warning, as with ctr."""
    from cli.ctr import connect, warn
    from containerd_py import errdefs

    failed = False
    with connect(ctx) as client:
        for i, name in enumerate(names):
            try:
                client.images().delete(name, sync=sync and i == len(names) - 1)
            except errdefs.NotFound:
                warn(f"{name}: image not found")
                continue
            except errdefs.PyContainerdError as e:
                warn(f"unable to delete {name}: {e}")
                failed = True
                continue
            print(name, flush=True)
    if failed:
        # Exit, not ctr.CommandFailed: under `python -m cli.ctr` that module is loaded
        # twice (as __main__ too), and only typer's own exception is caught for sure.
        raise typer.Exit(1)


images_app.command("remove", hidden=True)(images_rm)
images_app.command("delete", hidden=True)(images_rm)


@images_app.command("tag")
def images_tag(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE")],
    targets: Annotated[list[str], typer.Argument(metavar="TARGET...")],
    force: Annotated[bool, typer.Option("--force", help="Replace a TARGET that exists.")] = False,
) -> None:
    """Give an image more names."""
    from cli.ctr import connect
    from containerd_py import errdefs

    with connect(ctx) as client:
        service = client.images()
        src = service.get(source)
        for target in targets:
            try:
                service.create(target, src.target, src.labels)
            except errdefs.AlreadyExists:
                if not force:
                    raise errdefs.AlreadyExists(
                        f"image {target!r} already exists (use --force to replace it)"
                    ) from None
                service.update(target, target=src.target, paths=["target"])
            print(target, flush=True)


@images_app.command("usage")
def images_usage(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="IMAGE")],
    snapshotter: SnapshotterOption = "",
) -> None:
    """Disk usage of an image's snapshots, top layer first: KEY SIZE INODES."""
    from cli.ctr import connect
    from containerd_py import errdefs

    with connect(ctx) as client:
        image = client.images().get(name)
        sn_name = client.snapshotter_name(snapshotter)
        snapshots = client.snapshots(sn_name)
        key = client.image_rootfs(image).chain_id
        try:
            snapshots.stat(key)
        except errdefs.NotFound:
            raise errdefs.FailedPrecondition(
                f"image {name} isn't unpacked in snapshotter {sn_name}"
            ) from None
        rows = []
        while key:
            usage = snapshots.usage(key)
            rows.append((key, progress_bytes(usage.size), usage.inodes))
            key = snapshots.stat(key).parent
    print(output.table(["key", "size", "inodes"], rows))
