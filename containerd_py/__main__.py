"""pycontainerd: `python -m containerd_py` / `pycontainerd`, with containerd's flags.

Settings come from the defaults, then the config file (`--config`, or
/etc/pycontainerd/config.toml when it exists), then the flags.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from containerd_py.config import (
    DEFAULT_ADDRESS,
    DEFAULT_ROOT,
    DEFAULT_STATE,
    LOG_LEVELS,
    Config,
    ConfigError,
)

DEFAULT_CONFIG = "/etc/pycontainerd/config.toml"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pycontainerd",
        description="A containerd-like daemon: images, content, snapshots, containers, "
        "tasks and events over gRPC on a unix socket.",
    )
    p.add_argument(
        "-c", "--config", metavar="FILE", help=f"TOML config file (default {DEFAULT_CONFIG})"
    )
    p.add_argument(
        "-a", "--address", metavar="SOCK", help=f"gRPC socket path (default {DEFAULT_ADDRESS})"
    )
    p.add_argument("--root", metavar="DIR", help=f"persistent data (default {DEFAULT_ROOT})")
    p.add_argument("--state", metavar="DIR", help=f"runtime state (default {DEFAULT_STATE})")
    p.add_argument(
        "-l",
        "--log-level",
        metavar="LEVEL",
        choices=list(LOG_LEVELS),
        help=f"one of {', '.join(LOG_LEVELS)} (default info)",
    )
    return p


def load_config(args: argparse.Namespace) -> Config:
    if args.config:
        base = Config.load(args.config)
    elif Path(DEFAULT_CONFIG).is_file():
        base = Config.load(DEFAULT_CONFIG)
    else:
        base = Config()
    return base.with_overrides(
        address=args.address, root=args.root, state=args.state, log_level=args.log_level
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = load_config(args)
    except ConfigError as e:
        print(f"pycontainerd: {e}", file=sys.stderr)
        return 2
    # The daemon forks only to exec (shims, git): grpc's fork handlers are both useless
    # and a known source of deadlocks there. Read by grpc at import, hence before it.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from containerd_py.server import run

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
