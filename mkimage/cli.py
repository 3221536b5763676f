"""pymkimage's command line.

    pymkimage bundle DIR [--terminal] [--no-readonly] [--force] [--args ARG...]
    pymkimage oci-layout (DIR | --tar FILE) [--tag REF] [--force]
    pymkimage docker-archive FILE [--tag REF]

Only argparse is imported up front; each command loads what it needs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import NoReturn

PROG = "pymkimage"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every CLI of the stack reports errors, instead of argparse's usage block.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--busybox",
        metavar="PATH",
        help="statically linked busybox to build from (default /bin/busybox)",
    )
    parser = _Parser(
        prog=PROG,
        description="Build a busybox image from the host's busybox-static.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bundle = sub.add_parser(
        "bundle",
        parents=[common],
        help="an OCI runtime bundle: DIR/rootfs and DIR/config.json",
        description="Write an OCI runtime bundle. The process runs without a terminal "
        "unless --terminal is given, since bundles are mostly run detached.",
    )
    bundle.add_argument("dir", metavar="DIR", help="absent or empty directory to create")
    bundle.add_argument(
        "--terminal", action="store_true", help="set process.terminal (default: false)"
    )
    bundle.add_argument(
        "--readonly",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mount the root filesystem read-only (default: true)",
    )
    bundle.add_argument("--force", action="store_true", help="replace an existing DIR")
    bundle.add_argument(
        "--args",
        nargs=argparse.REMAINDER,
        metavar="ARG",
        help="process args; takes the rest of the command line (default: sh)",
    )

    layout = sub.add_parser(
        "oci-layout",
        parents=[common],
        help="an OCI image layout directory, or a tar of one",
        description="Write an OCI image layout and print the manifest digest.",
    )
    layout.add_argument("dir", metavar="DIR", nargs="?", help="absent or empty directory")
    layout.add_argument("--tar", metavar="FILE", help="write the layout as a tar file instead")
    layout.add_argument("--tag", default="busybox:latest", help="image name (busybox:latest)")
    layout.add_argument("--force", action="store_true", help="replace an existing DIR")

    archive = sub.add_parser(
        "docker-archive",
        parents=[common],
        help="a `docker save`-style tarball for `docker load`",
        description="Write a `docker save`-style tarball.",
    )
    archive.add_argument("file", metavar="FILE", help="tar file to write (replaced if present)")
    archive.add_argument("--tag", default="busybox:latest", help="image name (busybox:latest)")
    return parser


def _run(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if ns.command == "bundle":
        if ns.args is not None and not ns.args:
            parser.error("--args needs at least one argument")
        from mkimage.bundle import build_bundle

        build_bundle(
            ns.dir,
            ns.args,
            terminal=ns.terminal,
            readonly=ns.readonly,
            busybox=ns.busybox,
            replace=ns.force,
        )
    elif ns.command == "oci-layout":
        if (ns.dir is None) == (ns.tar is None):
            parser.error("oci-layout takes either DIR or --tar FILE")
        if ns.tar is not None and ns.force:
            parser.error("--force applies to DIR; --tar always replaces FILE")
        from mkimage import oci_layout

        if ns.tar is not None:
            digest = oci_layout.write_oci_archive(ns.tar, ns.tag, busybox=ns.busybox)
        else:
            digest = oci_layout.write_oci_layout(
                ns.dir, ns.tag, busybox=ns.busybox, replace=ns.force
            )
        print(digest)
    else:
        from mkimage.docker_archive import write_docker_archive

        write_docker_archive(ns.file, ns.tag, busybox=ns.busybox)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds through the temporary-output cleanup; the default action would not.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from mkimage.errors import MkimageError

    try:
        _run(ns, parser)
    except MkimageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
