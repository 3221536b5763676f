"""pyctr images (aliases image, i): ls, import, export, rm, tag, usage, as ctr has them.

    pyctr images import busybox.tar            # OCI layout tar or docker-save tar
    pyctr images ls
    pyctr images tag docker.io/library/busybox:latest example.com/bb:1
    pyctr images export out.tar example.com/bb:1 [--format docker]
    pyctr images usage example.com/bb:1
    pyctr images rm example.com/bb:1
    pyctr images pull [--platform P]... [--all-platforms] [-u USER[:PASSWORD]] [--plain-http] REF
    pyctr images push [--platform P] [-u USER[:PASSWORD]] [--plain-http] REMOTE [LOCAL]

Pulls and pushes are done by the daemon (its credentials file, certs dir and insecure
registries apply); pyctr shows their progress, as a table on a terminal, as lines elsewhere.

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


# -- registries -------------------------------------------------------------------------

UserOption = Annotated[
    str | None,
    typer.Option("--user", "-u", help="USER[:PASSWORD] for the registry (prompted when left out)."),
]
PlainHTTPOption = Annotated[
    bool, typer.Option("--plain-http", help="Talk HTTP to the registry (loopback or insecure).")
]
SkipVerifyOption = Annotated[
    bool, typer.Option("--skip-verify", "-k", help="Do not verify the registry's certificate.")
]


def _user(user: str | None) -> str | None:
    """USER:PASSWORD; a bare USER is asked for the password on the terminal, as ctr does."""
    import getpass
    import sys

    if not user or ":" in user:
        return user
    if not sys.stdin.isatty():
        raise typer.BadParameter("give USER:PASSWORD (no terminal to ask on)", param_hint="--user")
    return f"{user}:{getpass.getpass('Password: ')}"


def _show(progress: object, *, upload: bool) -> object:
    """Render a transfer's progress; returns its last message."""
    import sys

    from cli.transfer_progress import ProgressView

    view = ProgressView(sys.stdout, tty=sys.stdout.isatty(), upload=upload)
    last = None
    for p in progress:  # type: ignore[attr-defined]
        if p.done:
            view.finish(p)
        else:
            view.update(p)
        last = p
    return last


@images_app.command("pull")
def images_pull(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", help="e.g. localhost:5000/app:1")],
    platforms: Annotated[
        list[str] | None,
        typer.Option("--platform", help="Platform to pull (repeatable; default: the host's)."),
    ] = None,
    all_platforms: Annotated[
        bool, typer.Option("--all-platforms", help="Fetch the content of every platform.")
    ] = False,
    user: UserOption = None,
    plain_http: PlainHTTPOption = False,
    skip_verify: SkipVerifyOption = False,
    snapshotter: SnapshotterOption = "",
    no_unpack: Annotated[
        bool, typer.Option("--no-unpack", help="Only fetch the content, do not unpack.")
    ] = False,
    labels: Annotated[
        list[str] | None, typer.Option("--label", help="KEY=VALUE label for the image.")
    ] = None,
    max_concurrent_downloads: Annotated[
        int, typer.Option("--max-concurrent-downloads", help="Blobs fetched at once.")
    ] = 0,
) -> None:
    """Pull an image from a registry, then unpack it (as ctr images pull)."""
    from cli.ctr import connect, parse_labels

    with connect(ctx) as client:
        progress = client.transfer().pull(
            ref,
            platforms=platforms or (),
            all_platforms=all_platforms,
            unpack=not no_unpack,
            snapshotter=snapshotter,
            user=_user(user),
            plain_http=plain_http,
            skip_verify=skip_verify,
            labels=parse_labels(labels or []),
            max_concurrent_downloads=max_concurrent_downloads,
        )
        last = _show(progress, upload=False)
    if last is not None and last.target is not None:  # type: ignore[attr-defined]
        print(f"{last.name}: {last.target.digest}", flush=True)  # type: ignore[attr-defined]


@images_app.command("push")
def images_push(
    ctx: typer.Context,
    remote: Annotated[str, typer.Argument(metavar="REMOTE", help="Where to: host/repo:tag.")],
    local: Annotated[
        str | None, typer.Argument(metavar="[LOCAL]", help="The image to push (default: REMOTE).")
    ] = None,
    platform: Annotated[
        str | None, typer.Option("--platform", help="Push only this platform's manifest.")
    ] = None,
    user: UserOption = None,
    plain_http: PlainHTTPOption = False,
    skip_verify: SkipVerifyOption = False,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Upload blobs in chunks of this many bytes.")
    ] = 0,
    max_concurrent_uploads: Annotated[
        int, typer.Option("--max-concurrent-uploaded-layers", help="Blobs uploaded at once.")
    ] = 0,
) -> None:
    """Push an image to a registry (as ctr images push)."""
    from cli.ctr import connect

    with connect(ctx) as client:
        progress = client.transfer().push(
            local or remote,
            remote,
            platform=platform,
            user=_user(user),
            plain_http=plain_http,
            skip_verify=skip_verify,
            chunk_size=chunk_size,
            max_concurrent_uploads=max_concurrent_uploads,
        )
        last = _show(progress, upload=True)
    if last is not None and last.target is not None:  # type: ignore[attr-defined]
        print(f"{last.ref}: {last.target.digest}", flush=True)  # type: ignore[attr-defined]
