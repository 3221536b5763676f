"""`pyrunc`: runc's command line over oci_runtime.

Flags and outputs follow runc so anything that drives runc can drive pyrunc. Imports stay
light at the top: every container start runs this module several times.
"""

from __future__ import annotations

import os
import signal
import sys

from oci_runtime.args import Command, Flag, UsageError, parse, usage
from oci_runtime.state import ContainerError
from oci_runtime.version import OCI_VERSION, VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from typing import Any


DEFAULT_ROOT = "/run/pyrunc"


class Logger:
    """Errors go to stderr as one line, and to --log as text or JSON lines."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _write(self, level: str, msg: str) -> None:
        import json

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


def _int(v: str) -> int:
    return int(v)


GLOBAL_FLAGS = (
    Flag("--root", default=DEFAULT_ROOT, help="state directory"),
    Flag("--log", help="log file (errors are also written to stderr)"),
    Flag("--log-format", default="text", help="text or json"),
    Flag("--debug", "bool", help="debug logging"),
    Flag("--systemd-cgroup", "bool", help="accepted for compatibility; not supported"),
    Flag("--rootless", default="auto", help="accepted for compatibility"),
    Flag("--criu", help="accepted for compatibility"),
    Flag("-v|--version", "bool", help="print the version"),
)

_CREATE_FLAGS = (
    Flag("-b|--bundle", default=".", help="bundle directory"),
    Flag("--pid-file", help="write the init pid here"),
    Flag("--console-socket", help="unix socket that receives the pty master"),
    Flag("--no-pivot", "bool", help="move the root instead of pivot_root"),
    Flag("--no-new-keyring", "bool", help="accepted for compatibility"),
    Flag("--preserve-fds", default=0, convert=_int, help="extra fds passed to the process"),
)

COMMAND_TABLE = {
    c.name: c
    for c in (
        Command("create", "create a container", flags=_CREATE_FLAGS),
        Command(
            "run",
            "create and run a container",
            flags=(
                *_CREATE_FLAGS,
                Flag("-d|--detach", "bool", help="return once started"),
                Flag("--keep", "bool", help="do not delete the container after it exits"),
            ),
        ),
        Command("start", "start a created container"),
        Command("state", "print the state of a container"),
        Command(
            "kill",
            "send a signal to the container",
            positionals=("id", "signal?"),
            flags=(Flag("-a|--all", "bool", help="signal every process"),),
        ),
        Command(
            "delete",
            "delete a container",
            flags=(Flag("-f|--force", "bool", help="kill it first if it runs"),),
        ),
        Command("pause", "freeze every process of the container"),
        Command("resume", "thaw a paused container"),
        Command(
            "exec",
            "run a process in a running container",
            rest="args",
            flags=(
                Flag("-p|--process", help="process.json"),
                Flag("-t|--tty", "bool", help="allocate a pty"),
                Flag("--console-socket", help="unix socket that receives the pty master"),
                Flag("-d|--detach", "bool", help="do not wait for the process"),
                Flag("--pid-file", help="write the process pid here"),
                Flag("-e|--env", "list", help="KEY=VALUE, repeatable"),
                Flag("--cwd", help="working directory"),
                Flag("-u|--user", help="UID[:GID]"),
                Flag("-g|--additional-gids", "list", help="repeatable"),
                Flag("-c|--cap", "list", help="add a capability, repeatable"),
                Flag("--no-new-privs", "bool", help="set no_new_privs"),
                Flag("--preserve-fds", default=0, convert=_int, help="extra fds"),
                Flag("--apparmor", help="accepted for compatibility"),
                Flag("--process-label", help="accepted for compatibility"),
            ),
        ),
        Command(
            "ps",
            "processes running in a container",
            rest="ps_args",
            flags=(Flag("-f|--format", default="table", help="table or json"),),
        ),
        Command(
            "list",
            "list containers",
            positionals=(),
            flags=(
                Flag("-f|--format", default="table", help="table or json"),
                Flag("-q|--quiet", "bool", help="ids only"),
            ),
        ),
        Command(
            "update",
            "update resource limits",
            flags=(
                Flag("-r|--resources", help="resources JSON file, - for stdin"),
                Flag("--memory"),
                Flag("--memory-reservation"),
                Flag("--memory-swap"),
                Flag("--kernel-memory"),
                Flag("--kernel-memory-tcp"),
                Flag("--cpu-quota", convert=_int),
                Flag("--cpu-period", convert=_int),
                Flag("--cpu-shares", convert=_int),
                Flag("--cpu-rt-period", convert=_int),
                Flag("--cpu-rt-runtime", convert=_int),
                Flag("--cpuset-cpus"),
                Flag("--cpuset-mems"),
                Flag("--pids-limit", convert=_int),
                Flag("--blkio-weight", convert=_int),
            ),
        ),
        Command(
            "events",
            "stats and OOM events",
            flags=(
                Flag("--stats", "bool", help="print stats once and exit"),
                Flag("--interval", default="5s", help="stats interval"),
            ),
        ),
        Command(
            "spec",
            "write a default config.json",
            positionals=(),
            flags=(
                Flag("-b|--bundle", default=".", help="where to write it"),
                Flag("--rootless", "bool", help="a spec for a user namespace"),
            ),
        ),
        Command("features", "what this runtime supports", positionals=()),
    )
}


# -- commands ---------------------------------------------------------------------------------


def _runtime(args: types.SimpleNamespace) -> Any:
    from oci_runtime.container import Runtime

    return Runtime(args.root, warn=args.logger.warning)


def _create(args: types.SimpleNamespace, rt: Any) -> Any:
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


def cmd_create(args: types.SimpleNamespace) -> int:
    rt = _runtime(args)
    _, spec, opts = _create(args, rt)
    rt.create(args.id, spec, opts)
    return 0


def cmd_run(args: types.SimpleNamespace) -> int:
    from oci_runtime import foreground

    rt = _runtime(args)
    _, spec, opts = _create(args, rt)
    if args.detach:
        rt.create(args.id, spec, opts)
        rt.start(args.id)
        return 0
    return foreground.run(rt, args.id, spec, opts, keep=args.keep)


def cmd_start(args: types.SimpleNamespace) -> int:
    _runtime(args).start(args.id)
    return 0


def cmd_state(args: types.SimpleNamespace) -> int:
    import json

    rt = _runtime(args)
    st = rt.load(args.id)
    print(json.dumps(st.oci(rt.status(st)), indent=2))
    return 0


def cmd_kill(args: types.SimpleNamespace) -> int:
    _runtime(args).kill(args.id, parse_signal(args.signal or "SIGTERM"), args.all)
    return 0


def cmd_delete(args: types.SimpleNamespace) -> int:
    rt = _runtime(args)
    try:
        rt.delete(args.id, args.force)
    except ContainerError as e:
        if args.force and "does not exist" in str(e):
            return 0
        raise
    return 0


def cmd_pause(args: types.SimpleNamespace) -> int:
    _runtime(args).pause(args.id)
    return 0


def cmd_resume(args: types.SimpleNamespace) -> int:
    _runtime(args).resume(args.id)
    return 0


def _exec_process(args: types.SimpleNamespace, rt: Any) -> Any:
    import json

    from oci_runtime.spec import SpecError, parse_process

    st = rt.load(args.id)
    if args.process:
        try:
            with open(args.process) as f:
                raw = json.load(f)
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


def cmd_exec(args: types.SimpleNamespace) -> int:
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


def cmd_ps(args: types.SimpleNamespace) -> int:
    import json
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


def cmd_list(args: types.SimpleNamespace) -> int:
    import json

    rt = _runtime(args)
    rows = []
    for cid in rt.store.ids():
        try:
            st = rt.load(cid)
        except ContainerError:
            continue
        status = rt.status(st)
        # As `state` prints it (runc: the same keys, annotations only when there are some).
        row = st.oci(status)
        row["owner"] = st.owner or "root"
        rows.append(row)
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


def update_changes(args: types.SimpleNamespace) -> dict[str, Any]:
    import json

    if args.resources:
        try:
            if args.resources == "-":
                text = sys.stdin.read()
            else:
                with open(args.resources) as f:
                    text = f.read()
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


def cmd_update(args: types.SimpleNamespace) -> int:
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


def cmd_events(args: types.SimpleNamespace) -> int:
    import json
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


def cmd_spec(args: types.SimpleNamespace) -> int:
    import json

    from oci_runtime.default_spec import default_spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise ContainerError("File config.json exists. Remove it first.")
    spec = default_spec()
    if args.rootless:
        uid, gid = os.getuid(), os.getgid()
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        spec["linux"].pop("resources", None)
    try:
        with open(path, "x") as f:
            f.write(json.dumps(spec, indent=2) + "\n")
    except OSError as e:
        raise ContainerError(f"{path}: {e.strerror}") from None
    return 0


def cmd_features(args: types.SimpleNamespace) -> int:
    import json

    from oci_runtime import seccomp as sc
    from oci_runtime.default_spec import OCI_VERSION
    from oci_runtime.linux import flags as F
    from oci_runtime.rootfs import _FLAG_OPTIONS
    from oci_runtime.schema import HOOK_KINDS

    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
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
                # NOTIFY validates but is refused at load (no listener support yet).
                "actions": sorted(a for a in sc.ACTIONS if a != "SCMP_ACT_NOTIFY"),
                "operators": sorted(sc.OPERATORS),
                "archs": sorted(sc.ARCHITECTURES),
                "knownFlags": sorted(sc.FLAGS),
                "supportedFlags": sorted(f for f, v in sc.FLAGS.items() if v is not None),
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
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse(argv, GLOBAL_FLAGS, COMMAND_TABLE)
    except UsageError as e:
        print(f"pyrunc: {e}", file=sys.stderr)
        return 2
    if getattr(args, "help", False):
        print(usage("pyrunc", GLOBAL_FLAGS, COMMAND_TABLE, args.command))
        return 0
    if args.version:
        print(f"pyrunc version {VERSION}\nspec: {OCI_VERSION}")
        return 0
    if args.command is None:
        print(usage("pyrunc", GLOBAL_FLAGS, COMMAND_TABLE), file=sys.stderr)
        return 2
    if args.log_format not in ("text", "json"):
        print(f"pyrunc: unknown log format {args.log_format!r}", file=sys.stderr)
        return 2
    log = Logger(args.log, args.log_format, args.debug)
    args.logger = log
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
