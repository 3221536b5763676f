"""pycontainerd: `python -m containerd_py` / `pycontainerd`, with containerd's flags.

Settings come from the defaults, then the config file (`--config`, or
/etc/pycontainerd/config.toml when it exists), then the flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
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


class _Formatter(logging.Formatter):
    """containerd's (logrus) text format: time="..." level=info msg="..." logger=..."""

    LEVELS = {"WARNING": "warning", "CRITICAL": "fatal"}

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        level = self.LEVELS.get(record.levelname, record.levelname.lower())
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"')
        micros = int(record.created % 1 * 1_000_000)
        line = f'time="{t}.{micros:06d}Z" level={level} msg="{msg}"'
        line += f" logger={record.name}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: int) -> None:
    """Everything to stderr, in containerd's format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


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
    # Before the config is read, so its warnings (unknown keys) look like every other line.
    configure_logging(logging.INFO)
    try:
        config = load_config(args)
    except ConfigError as e:
        print(f"pycontainerd: {e}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(config.log_level_number)
    # The daemon forks only to exec (shims, git): grpc's fork handlers are both useless
    # and a known source of deadlocks there. Read by grpc at import, hence before it.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from containerd_py.server import run

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
