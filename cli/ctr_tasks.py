"""pyctr tasks (alias t): the running side of containers, as `ctr tasks`.

pyctr tasks start [-d] ID          # start a created container's task, attached unless -d
pyctr tasks ls                     # TASK PID STATUS
pyctr tasks kill [-s SIG] [-a] ID
pyctr tasks ps ID                  # PID INFO (exec id)
pyctr tasks exec --exec-id X [-t] ID CMD...
pyctr tasks attach ID
pyctr tasks metrics ID
pyctr tasks pause|resume ID
pyctr tasks rm [-f] ID             # prints nothing; -f kills a running task first
"""

from __future__ import annotations

import signal as signals
from typing import Annotated

import typer

from cli import output

tasks_app = typer.Typer(help="Manage tasks.", no_args_is_help=True, rich_markup_mode=None)


def parse_signal(value: str) -> int:
    """SIGTERM, TERM or 15."""
    if value.isdigit():
        return int(value)
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise typer.BadParameter(f"unknown signal {value!r}", param_hint="--signal") from None


@tasks_app.command("start")
def tasks_start(
    ctx: typer.Context,
    container_id: Annotated[str, typer.Argument(metavar="ID")],
    detach: Annotated[bool, typer.Option("--detach", "-d")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t")] = False,
) -> None:
    """Create and start the task of an existing container."""
    from cli.ctr import connect
    from cli.ctr_run import _attached

    with connect(ctx) as client:
        client.tasks().create(container_id, terminal=tty, open_stdin=not detach)
        if detach:
            client.tasks().start(container_id)
            return
        status = _attached(client, container_id, tty)
    raise typer.Exit(status)


@tasks_app.command("ls")
def tasks_ls(
    ctx: typer.Context,
    filters: Annotated[list[str] | None, typer.Argument(metavar="[FILTER]...")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """List tasks (alias: list): TASK PID STATUS."""
    from cli.ctr import connect

    with connect(ctx) as client:
        found = client.tasks().list(*(filters or []))
    if quiet:
        for t in found:
            print(t.container_id)
        return
    rows = [(t.container_id, str(t.pid), t.status) for t in found]
    print(output.table(["task", "pid", "status"], rows))


tasks_app.command("list", hidden=True)(tasks_ls)


@tasks_app.command("kill")
def tasks_kill(
    ctx: typer.Context,
    container_id: Annotated[str, typer.Argument(metavar="ID")],
    signal: Annotated[str, typer.Option("--signal", "-s", help="Name or number.")] = "SIGTERM",
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every process of the task.")] = False,
    exec_id: Annotated[str, typer.Option("--exec-id")] = "",
) -> None:
    """Send a signal to a task (or to one of its exec processes)."""
    from cli.ctr import connect

    with connect(ctx) as client:
        client.tasks().kill(container_id, parse_signal(signal), exec_id=exec_id, all=all_)


@tasks_app.command("ps")
def tasks_ps(
    ctx: typer.Context, container_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """The processes of a task: PID INFO."""
    from cli.ctr import connect

    with connect(ctx) as client:
        pids = client.tasks().pids(container_id)
    print(output.table(["pid", "info"], [(str(p), e or "-") for p, e in pids]))


@tasks_app.command("exec", context_settings={"allow_interspersed_args": False})
def tasks_exec(
    ctx: typer.Context,
    container_id: Annotated[str, typer.Argument(metavar="ID")],
    command: Annotated[list[str], typer.Argument(metavar="COMMAND [ARG]...")],
    exec_id: Annotated[str, typer.Option("--exec-id", help="Unique within the task.")],
    tty: Annotated[bool, typer.Option("--tty", "-t")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d")] = False,
    cwd: Annotated[str, typer.Option("--cwd")] = "",
) -> None:
    """Run another process in a running task; exits with its status."""
    import json

    from cli.ctr import connect
    from containerd_py import errdefs

    with connect(ctx) as client:
        c = client.containers().get(container_id)
        base = (json.loads(c.spec) if c.spec else {}).get("process", {})
        process = dict(base, args=list(command), terminal=tty)
        if cwd:
            process["cwd"] = cwd
        tasks = client.tasks()
        tasks.exec(container_id, exec_id, process, terminal=tty, open_stdin=not detach)
        if detach:
            tasks.start(container_id, exec_id)
            return
        att = tasks.attach(container_id, exec_id, stdin=True)
        try:
            import threading

            from cli.ctr_run import _copy_output, _pump_stdin

            threading.Thread(target=_pump_stdin, args=(att,), daemon=True).start()
            tasks.start(container_id, exec_id)
            _copy_output(att)
            status = tasks.wait(container_id, exec_id).status
        finally:
            att.close()
        try:
            tasks.delete_process(container_id, exec_id)
        except errdefs.NotFound:
            pass
    raise typer.Exit(status)


@tasks_app.command("attach")
def tasks_attach(
    ctx: typer.Context, container_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Attach to a running task's stdio until its output ends."""
    from cli.ctr import connect
    from cli.ctr_run import _copy_output, _pump_stdin
    from containerd_py import errdefs

    with connect(ctx) as client:
        tasks = client.tasks()
        try:
            att = tasks.attach(container_id, stdin=True)
            with_stdin = True
        except errdefs.FailedPrecondition:
            # Started without an open stdin (-d): output only.
            att = tasks.attach(container_id)
            with_stdin = False
        try:
            import threading

            if with_stdin:
                threading.Thread(target=_pump_stdin, args=(att,), daemon=True).start()
            _copy_output(att)
        finally:
            att.close()
        status = tasks.wait(container_id).status
    raise typer.Exit(status)


@tasks_app.command("metrics")
def tasks_metrics(
    ctx: typer.Context,
    container_id: Annotated[str, typer.Argument(metavar="ID")],
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """The cgroup stats of a task."""
    from google.protobuf import json_format

    from cli.ctr import connect
    from containerd_py import errdefs

    with connect(ctx) as client:
        stats = client.tasks().metrics(f"id=={container_id}")
    if container_id not in stats:
        raise errdefs.NotFound(f"no metrics for task {container_id!r} (not running?)")
    doc = json_format.MessageToDict(stats[container_id], preserving_proto_field_name=True)
    if fmt == "json":
        import json

        print(json.dumps(doc, indent=2))
        return
    rows = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            rows.append((prefix, str(value)))

    walk("", doc)
    print(output.table(["metric", "value"], rows))


@tasks_app.command("pause")
def tasks_pause(
    ctx: typer.Context, container_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Freeze every process of a task."""
    from cli.ctr import connect

    with connect(ctx) as client:
        client.tasks().pause(container_id)


@tasks_app.command("resume")
def tasks_resume(
    ctx: typer.Context, container_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Thaw a paused task."""
    from cli.ctr import connect

    with connect(ctx) as client:
        client.tasks().resume(container_id)


@tasks_app.command("rm")
def tasks_rm(
    ctx: typer.Context,
    container_id: Annotated[str, typer.Argument(metavar="ID")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Kill it first.")] = False,
) -> None:
    """Delete a stopped task (alias: delete)."""
    from cli.ctr import connect
    from cli.ctr_run import delete_task

    with connect(ctx) as client:
        delete_task(client.tasks(), container_id, force=force)


tasks_app.command("delete", hidden=True)(tasks_rm)
