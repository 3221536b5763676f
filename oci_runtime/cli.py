"""`pyrunc`: runc's command line over oci_runtime.

Flags and outputs follow runc so anything that drives runc can drive pyrunc. Imports stay
light at the top: every container start runs this module several times.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from oci_runtime.state import ContainerError

DEFAULT_ROOT = "/run/pyrunc"
VERSION = "0.1.0"


class Logger:
    """Errors go to stderr as one line, and to --log as text or JSON lines."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        from oci_runtime.container import now_rfc3339

        t = now_rfc3339()
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": t})
        else:
            line = f'time="{t}" level={level} msg={json.dumps(msg)}'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self._write("error", msg)
        print(f"pyrunc: {msg}", file=sys.stderr)

    def warning(self, msg: str) -> None:
        self._write("warning", msg)
        print(f"pyrunc: warning: {msg}", file=sys.stderr)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self._write("debug", msg)
            print(f"pyrunc: debug: {msg}", file=sys.stderr)


def parse_signal(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
        raise ContainerError(f"invalid signal {text!r}")
    if not t.startswith("SIG"):
        t = "SIG" + t
    try:
        return int(signal.Signals[t])
    except KeyError:
        raise ContainerError(f"unknown signal {text!r}") from None


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    if t in ("-1",):
        return -1
    num = t.rstrip("kmgt")
    unit = t[len(num) :]
    try:
        return int(float(num) * _UNITS[unit])
    except (ValueError, KeyError):
        raise ContainerError(f"invalid size {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyrunc", description="a runc-compatible OCI runtime")
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--log", default=None)
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument(
        "-v", "--version", action="version", version=f"pyrunc version {VERSION}\nspec: 1.2.0"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_)

    c = cmd("create", "create a container")
    c.add_argument("id")
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--pid-file")
    c.add_argument("--console-socket")
    c.add_argument("--no-pivot", action="store_true")
    c.add_argument("--no-new-keyring", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)

    r = cmd("run", "create and run a container")
    r.add_argument("id")
    r.add_argument("-b", "--bundle", default=".")
    r.add_argument("--pid-file")
    r.add_argument("--console-socket")
    r.add_argument("--no-pivot", action="store_true")
    r.add_argument("--no-new-keyring", action="store_true")
    r.add_argument("--preserve-fds", type=int, default=0)
    r.add_argument("-d", "--detach", action="store_true")
    r.add_argument("--keep", action="store_true")

    for name in ("start", "pause", "resume"):
        cmd(name, f"{name} a container").add_argument("id")

    s = cmd("state", "output the state of a container")
    s.add_argument("id")

    k = cmd("kill", "send a signal to the container's init")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    k.add_argument("-a", "--all", action="store_true")

    d = cmd("delete", "delete a container")
    d.add_argument("id")
    d.add_argument("-f", "--force", action="store_true")

    e = cmd("exec", "run a process in a running container")
    e.add_argument("id")
    e.add_argument("args", nargs=argparse.REMAINDER)
    e.add_argument("-p", "--process")
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("--console-socket")
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("--pid-file")
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("--cwd")
    e.add_argument("-u", "--user")
    e.add_argument("-g", "--additional-gids", action="append", default=[])
    e.add_argument("-c", "--cap", action="append", default=[])
    e.add_argument("--no-new-privs", action="store_true")
    e.add_argument("--preserve-fds", type=int, default=0)

    ps = cmd("ps", "processes running inside a container")
    ps.add_argument("id")
    ps.add_argument("-f", "--format", default="table", choices=["table", "json"])
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)

    ls = cmd("list", "list containers")
    ls.add_argument("-f", "--format", default="table", choices=["table", "json"])
    ls.add_argument("-q", "--quiet", action="store_true")

    u = cmd("update", "update a container's resource limits")
    u.add_argument("id")
    u.add_argument("-r", "--resources")
    u.add_argument("--memory")
    u.add_argument("--memory-reservation")
    u.add_argument("--memory-swap")
    u.add_argument("--kernel-memory")
    u.add_argument("--cpu-quota", type=int)
    u.add_argument("--cpu-period", type=int)
    u.add_argument("--cpu-shares", type=int)
    u.add_argument("--cpu-rt-period", type=int)
    u.add_argument("--cpu-rt-runtime", type=int)
    u.add_argument("--cpuset-cpus")
    u.add_argument("--cpuset-mems")
    u.add_argument("--pids-limit", type=int)
    u.add_argument("--blkio-weight", type=int)

    ev = cmd("events", "container events and statistics")
    ev.add_argument("id")
    ev.add_argument("--stats", action="store_true")
    ev.add_argument("--interval", default="5s")

    sp = cmd("spec", "write a new config.json")
    sp.add_argument("-b", "--bundle", default=".")
    sp.add_argument("--rootless", action="store_true")

    cmd("features", "show what this runtime supports")
    return p


# -- commands ---------------------------------------------------------------------------------


def _runtime(args: argparse.Namespace) -> Any:
    from oci_runtime.container import Runtime
    from oci_runtime.linux.syscalls import libc

    return Runtime(args.root, libc())


def _create(args: argparse.Namespace, rt: Any) -> Any:
    from oci_runtime.container import CreateOptions
    from oci_runtime.spec import SpecError, load_bundle

    try:
        spec = load_bundle(args.bundle)
    except SpecError as e:
        raise ContainerError(f"config.json: {e}") from None
    opts = CreateOptions(
        bundle=args.bundle,
        pid_file=args.pid_file,
        console_socket=args.console_socket,
        no_pivot=args.no_pivot,
        preserve_fds=args.preserve_fds,
    )
    return rt, spec, opts


def cmd_create(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    _, spec, opts = _create(args, rt)
    rt.create(args.id, spec, opts)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from oci_runtime import foreground

    rt = _runtime(args)
    _, spec, opts = _create(args, rt)
    if args.detach:
        rt.create(args.id, spec, opts)
        rt.start(args.id)
        return 0
    return foreground.run(rt, args.id, spec, opts, keep=args.keep)


def cmd_start(args: argparse.Namespace) -> int:
    _runtime(args).start(args.id)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    st = rt.load(args.id)
    print(json.dumps(st.oci(rt.status(st)), indent=2))
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    _runtime(args).kill(args.id, parse_signal(args.signal), args.all)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    try:
        rt.delete(args.id, args.force)
    except ContainerError as e:
        if args.force and "does not exist" in str(e):
            return 0
        raise
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    _runtime(args).pause(args.id)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _runtime(args).resume(args.id)
    return 0


def _exec_process(args: argparse.Namespace, rt: Any) -> Any:
    from oci_runtime.spec import SpecError, parse_process

    st = rt.load(args.id)
    if args.process:
        try:
            raw = json.loads(Path(args.process).read_text())
            return parse_process(raw, "process")
        except (OSError, ValueError) as e:
            raise ContainerError(f"--process {args.process}: {e}") from None
    cmdline = list(args.args)
    if cmdline and cmdline[0] == "--":
        cmdline = cmdline[1:]
    if not cmdline:
        raise ContainerError("exec: no command given (args or --process)")
    raw = dict(st.config.get("process") or {})
    raw["args"] = cmdline
    raw["terminal"] = bool(args.tty)
    raw["env"] = list(raw.get("env") or []) + list(args.env)
    if args.cwd:
        raw["cwd"] = args.cwd
    if args.user:
        uid, _, gid = args.user.partition(":")
        try:
            raw["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise ContainerError(f"--user {args.user}: want UID[:GID]") from None
    if args.additional_gids:
        raw.setdefault("user", {})["additionalGids"] = [int(g) for g in args.additional_gids]
    if args.cap:
        caps = dict(raw.get("capabilities") or {})
        for kind in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            caps[kind] = list(dict.fromkeys(list(caps.get(kind) or []) + args.cap))
        raw["capabilities"] = caps
    if args.no_new_privs:
        raw["noNewPrivileges"] = True
    try:
        return parse_process(raw, "process")
    except SpecError as e:
        raise ContainerError(str(e)) from None


def cmd_exec(args: argparse.Namespace) -> int:
    from oci_runtime import foreground

    rt = _runtime(args)
    proc = _exec_process(args, rt)
    if args.detach:
        if proc.terminal and not args.console_socket:
            raise ContainerError(
                "cannot allocate tty if pyrunc will detach without setting console socket"
            )
        rt.exec(
            args.id,
            proc,
            console_socket=args.console_socket,
            pid_file=args.pid_file,
            preserve_fds=args.preserve_fds,
        )
        return 0
    return foreground.exec(
        rt,
        args.id,
        proc,
        console_socket=args.console_socket,
        pid_file=args.pid_file,
        preserve_fds=args.preserve_fds,
    )


def cmd_ps(args: argparse.Namespace) -> int:
    import subprocess

    rt = _runtime(args)
    st = rt.load(args.id)
    pids = rt.manager(st).pids() if st.cgroup_paths else []
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ContainerError(f"ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise ContainerError("couldn't find PID field in ps output")
    col = header.index("PID")
    print(lines[0])
    wanted = set(pids)
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            print(line)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    rows = []
    for cid in rt.store.ids():
        try:
            st = rt.load(cid)
        except ContainerError:
            continue
        status = rt.status(st)
        rows.append(
            {
                "ociVersion": st.config.get("ociVersion", ""),
                "id": st.id,
                "pid": 0 if status.value == "stopped" else st.init_pid,
                "status": status.value,
                "bundle": st.bundle,
                "rootfs": st.rootfs,
                "created": st.created,
                "annotations": st.annotations or None,
                "owner": st.owner or "root",
            }
        )
    if args.quiet:
        for r in rows:
            print(r["id"])
    elif args.format == "json":
        print(json.dumps(rows))
    else:
        table = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        table += [
            [r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], r["owner"]]
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        for row in table:
            print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def update_changes(args: argparse.Namespace) -> dict[str, Any]:
    if args.resources:
        try:
            text = sys.stdin.read() if args.resources == "-" else Path(args.resources).read_text()
            changes = json.loads(text)
        except (OSError, ValueError) as e:
            raise ContainerError(f"--resources {args.resources}: {e}") from None
        if not isinstance(changes, dict):
            raise ContainerError("--resources: expected a JSON object")
        return changes
    changes: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    if args.memory is not None:
        mem["limit"] = parse_bytes(args.memory)
    if args.memory_reservation is not None:
        mem["reservation"] = parse_bytes(args.memory_reservation)
    if args.memory_swap is not None:
        mem["swap"] = parse_bytes(args.memory_swap)
    if args.kernel_memory is not None:
        mem["kernel"] = parse_bytes(args.kernel_memory)
    if mem:
        changes["memory"] = mem
    cpu: dict[str, Any] = {}
    for flag, key in (
        ("cpu_quota", "quota"),
        ("cpu_period", "period"),
        ("cpu_shares", "shares"),
        ("cpu_rt_period", "realtimePeriod"),
        ("cpu_rt_runtime", "realtimeRuntime"),
        ("cpuset_cpus", "cpus"),
        ("cpuset_mems", "mems"),
    ):
        v = getattr(args, flag)
        if v is not None:
            cpu[key] = v
    if cpu:
        changes["cpu"] = cpu
    if args.pids_limit is not None:
        changes["pids"] = {"limit": args.pids_limit}
    if args.blkio_weight is not None:
        changes["blockIO"] = {"weight": args.blkio_weight}
    if not changes:
        raise ContainerError("update: nothing to change (give flags or -r FILE)")
    return changes


def cmd_update(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    try:
        rt.update(args.id, update_changes(args))
    except ValueError as e:
        raise ContainerError(str(e)) from None
    return 0


def _interval(text: str) -> float:
    t = text.strip()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * mult
    try:
        return float(t)
    except ValueError:
        raise ContainerError(f"invalid interval {text!r}") from None


def cmd_events(args: argparse.Namespace) -> int:
    import time

    rt = _runtime(args)
    st = rt.load(args.id)
    if rt.status(st).value == "stopped":
        raise ContainerError(f"container with id {args.id} is not running")
    m = rt.manager(st)

    def stats() -> dict[str, Any]:
        return {"type": "stats", "id": st.id, "data": m.stats()}

    if args.stats:
        print(json.dumps(stats()), flush=True)
        return 0
    interval = _interval(args.interval)
    ooms = m.oom_kill_count()
    while rt.status(st).value != "stopped":
        print(json.dumps(stats()), flush=True)
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            n = m.oom_kill_count()
            if n > ooms:
                ooms = n
                print(json.dumps({"type": "oom", "id": st.id}), flush=True)
            time.sleep(min(0.2, interval))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from oci_runtime.default_spec import default_spec

    path = Path(args.bundle) / "config.json"
    if path.exists():
        raise ContainerError("File config.json exists. Remove it first.")
    spec = default_spec()
    if args.rootless:
        uid, gid = os.getuid(), os.getgid()
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        spec["linux"].pop("resources", None)
    try:
        path.write_text(json.dumps(spec, indent=2) + "\n")
    except OSError as e:
        raise ContainerError(f"{path}: {e.strerror}") from None
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from oci_runtime.default_spec import OCI_VERSION
    from oci_runtime.linux import flags as F
    from oci_runtime.rootfs import _FLAG_OPTIONS

    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        ],
        "mountOptions": sorted(
            set(_FLAG_OPTIONS)
            | {
                "private",
                "rprivate",
                "shared",
                "rshared",
                "slave",
                "rslave",
                "unbindable",
                "runbindable",
            }
        ),
        "linux": {
            "namespaces": [n for n in F.NAMESPACES if n != "time"],
            "capabilities": sorted(F.CAPABILITIES, key=F.CAPABILITIES.__getitem__),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": [
                    "SCMP_ACT_ALLOW",
                    "SCMP_ACT_ERRNO",
                    "SCMP_ACT_KILL",
                    "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD",
                    "SCMP_ACT_LOG",
                    "SCMP_ACT_TRACE",
                    "SCMP_ACT_TRAP",
                ],
                "operators": [
                    "SCMP_CMP_EQ",
                    "SCMP_CMP_GE",
                    "SCMP_CMP_GT",
                    "SCMP_CMP_LE",
                    "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ",
                    "SCMP_CMP_NE",
                ],
                "archs": [
                    "SCMP_ARCH_X86",
                    "SCMP_ARCH_X86_64",
                    "SCMP_ARCH_X32",
                    "SCMP_ARCH_AARCH64",
                    "SCMP_ARCH_ARM",
                ],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": VERSION},
    }
    print(json.dumps(features, indent=2))
    return 0


COMMANDS = {
    "create": cmd_create,
    "run": cmd_run,
    "start": cmd_start,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "exec": cmd_exec,
    "ps": cmd_ps,
    "list": cmd_list,
    "update": cmd_update,
    "events": cmd_events,
    "spec": cmd_spec,
    "features": cmd_features,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log = Logger(args.log, args.log_format, args.debug)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from oci_runtime import container

    container._warn_sink.append(log.warning)
    log.debug(f"{args.command} {getattr(args, 'id', '')}")
    try:
        return COMMANDS[args.command](args)
    except ContainerError as e:
        log.error(str(e))
    except OSError as e:
        log.error(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
    except ValueError as e:
        log.error(str(e))
    except KeyboardInterrupt:
        log.error("interrupted")
    return 1


if __name__ == "__main__":
    sys.exit(main())
