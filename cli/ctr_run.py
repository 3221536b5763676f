"""pyctr run: create a container and its task, attach the terminal's stdio, exit with the
task's status (as `ctr run`).

    pyctr run --rm docker.io/library/busybox:latest hello sh -c 'echo hi; exit 7'
    pyctr run -d --runtime runc IMAGE web httpd -f        # detached: prints nothing
    pyctr run --rm -t IMAGE shell sh                     # a pty, the local tty raw
    pyctr run --rm --cgroup /jobs/j1 IMAGE j1 true       # the task's cgroup path

Order matters: Attach is set up before Start (the daemon answers the Attach headers once
the shim subscribed to the output), so even the first byte of output is shown.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import suppress
from typing import Annotated, Any

import typer


def _parse_size(value: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    v = value.strip().lower().removesuffix("b")
    try:
        if v and v[-1] in units:
            return int(float(v[:-1]) * units[v[-1]])
        return int(v)
    except ValueError:
        raise typer.BadParameter(f"bad size {value!r}", param_hint="--memory-limit") from None


def _pump_stdin(att: Any) -> None:
    """Local stdin → the process; its end closes the process's stdin."""
    fd = sys.stdin.fileno()
    try:
        while True:
            data = os.read(fd, 32768)
            if not data:
                break
            att.send(data)
    except OSError:
        pass
    att.close_stdin()


def _copy_output(att: Any) -> None:
    """The process's stdout and stderr to ours, each chunk as it comes, until they end."""
    out = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for stream, data in att:
        out[stream].write(data)
        out[stream].flush()


def delete_task(tasks: Any, container_id: str, *, force: bool) -> None:
    """Delete a stopped task; with `force` a running one is killed (SIGKILL) first."""
    from containerd_py import errdefs

    try:
        tasks.delete(container_id)
    except errdefs.FailedPrecondition:
        if not force:
            raise
        tasks.kill(container_id, 9, all=True)
        tasks.wait(container_id, timeout=30)
        tasks.delete(container_id)


def run(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE")],
    container_id: Annotated[str, typer.Argument(metavar="ID")],
    command: Annotated[list[str] | None, typer.Argument(metavar="[COMMAND [ARG]...]")] = None,
    rm: Annotated[bool, typer.Option("--rm", help="Delete task and container at exit.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Do not wait.")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a terminal.")] = False,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE variable.")] = None,
    runtime: Annotated[
        str, typer.Option("--runtime", help="OCI runtime: pyrunc, runc or crun.")
    ] = "pyrunc",
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="Memory limit (bytes, or 64m, 1g).")
    ] = "",
    snapshotter: Annotated[
        str, typer.Option("--snapshotter", envvar="CONTAINERD_SNAPSHOTTER")
    ] = "",
    cgroup: Annotated[
        str | None,
        typer.Option(
            "--cgroup",
            help='Cgroup path of the task (linux.cgroupsPath); "" for the runtime\'s default.',
        ),
    ] = None,
) -> None:
    """Run a command in a new container."""
    from cli.ctr import connect
    from containerd_py.client import with_cgroup, with_memory_limit

    opts = []
    if memory_limit:
        opts.append(with_memory_limit(_parse_size(memory_limit)))
    if cgroup is not None:
        opts.append(with_cgroup(cgroup))
    with connect(ctx) as client:
        client.new_container(
            container_id,
            image,
            snapshotter=snapshotter,
            runtime=runtime,
            args=command or None,
            env=env or (),
            terminal=tty,
            spec_opts=opts,
        )
        created = False
        try:
            tasks = client.tasks()
            tasks.create(container_id, terminal=tty, open_stdin=not detach)
            created = True
            if detach:
                tasks.start(container_id)
                return
            status = _attached(client, container_id, tty)
        except BaseException:
            # Nothing half-made: a run that never got its task going leaves nothing.
            if rm or not created:
                _cleanup(client, container_id)
            raise
        if rm:
            _cleanup(client, container_id)
    raise typer.Exit(status)


def _attached(client: Any, container_id: str, tty: bool) -> int:
    tasks = client.tasks()
    att = tasks.attach(container_id, stdin=True)
    restore = None
    if tty and sys.stdin.isatty():
        import termios
        import tty as ttymod

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        ttymod.setraw(fd)

        def restore() -> None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

        size = os.get_terminal_size(fd)
        att.resize(size.columns, size.lines)
    try:
        threading.Thread(target=_pump_stdin, args=(att,), daemon=True).start()
        tasks.start(container_id)
        _copy_output(att)
        return tasks.wait(container_id).status
    finally:
        att.close()
        if restore is not None:
            restore()


def _cleanup(client: Any, container_id: str) -> None:
    """--rm: the task (killed first if it still runs) and the container with its snapshot."""
    from containerd_py import errdefs

    with suppress(errdefs.NotFound):
        delete_task(client.tasks(), container_id, force=True)
    client.delete_container(container_id)
