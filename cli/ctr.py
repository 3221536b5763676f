"""pyctr: ctr for pycontainerd. Talks gRPC straight to the daemon, for debugging and
scripts; it only translates arguments into calls and renders the answers.

    pyctr [--address SOCK] [-n NAMESPACE] COMMAND

Errors are one line on stderr, `pyctr: <message>`, and a non-zero exit status (1 for a
failed call, 2 for bad usage). grpc and the generated modules load only in the commands
that talk to the daemon, so `pyctr --help` stays quick.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from cli import output, plain_params
from cli.ctr_run import run
from cli.lazy_group import LazyGroup, Sub
from containerd_py import errdefs
from containerd_py.config import DEFAULT_ADDRESS

if TYPE_CHECKING:
    from containerd_py.client import Client

PROG = "pyctr"
DEFAULT_NAMESPACE = "default"
NAMESPACE_ENV = "CONTAINERD_NAMESPACE"


class CtrGroup(LazyGroup):
    # The sub-apps (ctr's aliases hidden), imported when the command line reaches one.
    subcommands = {
        "namespaces": Sub("cli.ctr:namespaces_app"),
        "namespace": Sub("cli.ctr:namespaces_app", hidden=True),
        "ns": Sub("cli.ctr:namespaces_app", hidden=True),
        "images": Sub("cli.ctr_images:images_app"),
        "image": Sub("cli.ctr_images:images_app", hidden=True),
        "i": Sub("cli.ctr_images:images_app", hidden=True),
        "containers": Sub("cli.ctr_containers:containers_app"),
        "container": Sub("cli.ctr_containers:containers_app", hidden=True),
        "c": Sub("cli.ctr_containers:containers_app", hidden=True),
        "snapshots": Sub("cli.ctr_snapshots:snapshots_app"),
        "snapshot": Sub("cli.ctr_snapshots:snapshots_app", hidden=True),
        "content": Sub("cli.ctr_content:content_app"),
        "leases": Sub("cli.ctr_leases:leases_app"),
        "tasks": Sub("cli.ctr_tasks:tasks_app"),
        "task": Sub("cli.ctr_tasks:tasks_app", hidden=True),
        "t": Sub("cli.ctr_tasks:tasks_app", hidden=True),
    }


app = typer.Typer(
    name=PROG,
    cls=CtrGroup,
    help="pyctr: a ctr-like client for pycontainerd.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
namespaces_app = typer.Typer(
    help="Manage namespaces (alias: ns).", no_args_is_help=True, rich_markup_mode=None
)
# Options end at the image: what follows is the command, with its own dashes.
app.command("run", context_settings={"allow_interspersed_args": False})(run)


@dataclass(frozen=True, slots=True)
class Globals:
    address: str
    namespace: str
    timeout: float


@app.callback()
def main_options(
    ctx: typer.Context,
    address: Annotated[
        str, typer.Option("--address", "-a", help="Address of pycontainerd's socket.")
    ] = DEFAULT_ADDRESS,
    namespace: Annotated[
        str,
        typer.Option("--namespace", "-n", envvar=NAMESPACE_ENV, help="Namespace to use."),
    ] = DEFAULT_NAMESPACE,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each answer.")
    ] = 10.0,
) -> None:
    ctx.obj = Globals(address, namespace, timeout)


@contextmanager
def connect(ctx: typer.Context) -> Iterator[Client]:
    g: Globals = ctx.obj
    from containerd_py.client import Client  # imports grpc: only when talking to the daemon

    client = Client(g.address, g.namespace, g.timeout)
    try:
        yield client
    finally:
        client.close()


def warn(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def parse_labels(args: list[str]) -> dict[str, str]:
    """KEY=VALUE arguments (a bare KEY means KEY=true, as ctr reads them)."""
    labels = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not key:
            raise typer.BadParameter(f"label {arg!r} has no key", param_hint="LABEL")
        labels[key] = value if sep else "true"
    return labels


# -- version ----------------------------------------------------------------------------


def _client_version() -> str:
    import importlib.metadata  # ~13 ms: only for this command

    try:
        return importlib.metadata.version("pydocker-stack")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@app.command()
def version(ctx: typer.Context) -> None:
    """Print the client and server versions."""
    print("Client:")
    print(f"  Version:  {_client_version()}")
    print(f"  Python version: {platform.python_version()}")
    print(flush=True)
    with connect(ctx) as client:
        v = client.version()
        info = client.server()
    print("Server:")
    print(f"  Version:  {v.version}")
    print(f"  Revision: {v.revision or 'unknown'}")
    print(f"  UUID: {info.uuid}")


# -- namespaces -------------------------------------------------------------------------


@namespaces_app.command("ls")
def namespaces_ls(
    ctx: typer.Context,
    filters: Annotated[list[str] | None, typer.Argument(help="Filters (any may match).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the names.")] = False,
) -> None:
    """List namespaces (alias: list)."""
    with connect(ctx) as client:
        found = client.namespaces().list(*(filters or []))
    if quiet:
        for ns in found:
            print(ns.name)
        return
    print(table_of_namespaces(found))


namespaces_app.command("list", hidden=True)(namespaces_ls)


def table_of_namespaces(found: list) -> str:
    return output.table(["name", "labels"], [(ns.name, output.labels(ns.labels)) for ns in found])


@namespaces_app.command("create")
def namespaces_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    labels: Annotated[list[str] | None, typer.Argument(metavar="[LABEL=VALUE]...")] = None,
) -> None:
    """Create a namespace, optionally with labels."""
    with connect(ctx) as client:
        client.namespaces().create(name, parse_labels(labels or []))


@namespaces_app.command("rm")
def namespaces_rm(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(metavar="NAME...")],
) -> None:
    """Remove namespaces (alias: remove); each must be empty."""
    failed = False
    with connect(ctx) as client:
        service = client.namespaces()
        for name in names:
            try:
                service.delete(name)
            except errdefs.PyContainerdError as e:
                # As ctr: report each failure and go on with the other names.
                warn(f"unable to delete {name}: {e}")
                failed = True
                continue
            print(name, flush=True)
    if failed:
        raise typer.Exit(1)


namespaces_app.command("remove", hidden=True)(namespaces_rm)


@namespaces_app.command("label")
def namespaces_label(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    labels: Annotated[list[str] | None, typer.Argument(metavar="[LABEL=VALUE]...")] = None,
) -> None:
    """Set labels of a namespace (LABEL= removes one); with none, print them."""
    with connect(ctx) as client:
        service = client.namespaces()
        ns = service.set_labels(name, parse_labels(labels)) if labels else service.get(name)
    for key, value in sorted(ns.labels.items()):
        print(f"{key}={value}")


# -- events -----------------------------------------------------------------------------


@app.command()
def events(
    ctx: typer.Context,
    filters: Annotated[
        list[str] | None,
        typer.Argument(metavar="[FILTER]...", help='e.g. topic=="/tasks/exit" (any may match)'),
    ] = None,
) -> None:
    """Print events as they happen, one per line: TIMESTAMP NAMESPACE TOPIC EVENT-JSON.

    Runs until interrupted (Ctrl-C).
    """
    with connect(ctx) as client:
        stream = client.events(*(filters or []))
        try:
            for ev in stream:
                body = json.dumps(ev.payload_dict(), separators=(",", ":"), sort_keys=True)
                print(output.go_time(ev.timestamp), ev.namespace, ev.topic, body, flush=True)
        except KeyboardInterrupt:
            pass
        finally:
            stream.close()


# -- entry point ------------------------------------------------------------------------


def _click_exception(name: str) -> type[Exception]:
    # Recent typer vendors its own click and exports only some of its exceptions; the
    # classes we must catch are bases of the public BadParameter, whichever click it is.
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise ImportError(f"typer.BadParameter has no base class {name}")


_UsageError = _click_exception("UsageError")
_ClickException = _click_exception("ClickException")


def main(argv: list[str] | None = None) -> int:
    """The pyctr command; returns (and as a script exits with) its status."""
    plain_params.install()
    try:
        result = app(args=argv, prog_name=PROG, standalone_mode=False)
    except _UsageError as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            # A bare `pyctr` or `pyctr ns` prints its help, as ctr does.
            print(ctx.get_help())
            status = 0
        else:
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            warn(f"{e.format_message()}{hint}")  # type: ignore[attr-defined]
            status = 2
    except _ClickException as e:
        warn(e.format_message())  # type: ignore[attr-defined]
        status = e.exit_code  # type: ignore[attr-defined]
    except typer.Abort:
        status = 130
    except errdefs.PyContainerdError as e:
        warn(str(e) or type(e).__name__)
        status = 1
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        # `pyctr events | head`: the reader went away; not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    else:
        status = result if isinstance(result, int) else 0
    if argv is None:
        exit_now(status)
    return status


def exit_now(status: int) -> NoReturn:
    """End the process without the interpreter's teardown: once grpc is loaded, freeing
    every module and joining grpc's threads takes ~30 ms, a fifth of a `pyctr version`,
    and leaves nothing behind that the kernel does not take back (the channel is closed,
    files written are closed and renamed into place by then). Only the buffered output
    needs flushing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # reader gone, or the stream closed
            pass
    os._exit(status)


if __name__ == "__main__":
    # Under `python -m cli.ctr` this file runs as __main__ while the sub-apps import
    # cli.ctr: run that module's main, so that there is one app.
    from cli.ctr import main as ctr_main

    ctr_main()
