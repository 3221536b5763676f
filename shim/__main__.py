"""`pycontainerd-shim` (or `python -m shim`): start | serve | delete.

The containerd runtime v2 contract (STYLE.md §1, §7):

    command  run by           cwd         stdin            stdout
    -------  ---------------  ----------  ---------------  -------------------------------
    start    the daemon       the bundle  BootstrapParams  BootstrapResult (JSON), exit 0
    delete   the daemon, for  the bundle  BootstrapParams  DeleteResponse (JSON), exit 0
             a dead shim
    serve    start (internal) the bundle  /dev/null        -> <bundle>/shim.log

Flags fill in or override the BootstrapParams fields (`--id`, `--namespace`, `--bundle`,
`--socket-dir`, `--address` = the daemon's socket for events); `--idle-timeout` is the
shim's own setting. Errors: one line on stderr and a non-zero exit.

This module imports only argparse: `start` and `delete` load what they need, and only
`serve` imports grpc.
"""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pycontainerd-shim",
        description="The per-container shim of pycontainerd (start, delete; serve is internal).",
    )
    p.add_argument("action", choices=["start", "serve", "delete", "template"])
    p.add_argument("-n", "--namespace", default="", help="the task's namespace")
    p.add_argument("--id", default="", help="the task (container) id")
    p.add_argument("--bundle", default="", help="the bundle dir (default: the cwd)")
    p.add_argument("--socket-dir", dest="socket_dir", default="", help="where shim sockets live")
    p.add_argument("--address", default="", help="the daemon's socket (events go there)")
    p.add_argument("--log-level", dest="log_level", default="", help="debug, info, ...")
    p.add_argument("--debug", action="store_true", help="same as --log-level debug")
    p.add_argument(
        "--idle-timeout",
        dest="idle_timeout",
        type=float,
        default=None,
        help="seconds without task and calls after which the shim exits (default 300)",
    )
    p.add_argument(
        "--ready-timeout",
        dest="ready_timeout",
        type=float,
        default=None,
        help="start: seconds to wait for the shim to be ready (default 20)",
    )
    p.add_argument(
        "--template",
        default="",
        help="start: fork the shim from the template serving this socket, if one answers",
    )
    # serve and template only (start passes them):
    p.add_argument("--socket", default="", help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", dest="ready_fd", type=int, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.action == "serve":
        from shim.server import serve

        return serve(args)
    if args.action == "template":
        from shim.template import serve_template

        if not args.socket:
            print("pycontainerd-shim template: --socket is required", file=sys.stderr)
            return 2
        return serve_template(args.socket, -1 if args.ready_fd is None else args.ready_fd)
    from shim.bootstrap import BootstrapError, delete_main, start_main

    try:
        if args.action == "start":
            return start_main(args)
        return delete_main(args)
    except BootstrapError as e:
        print(f"pycontainerd-shim {args.action}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pycontainerd-shim {args.action}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
