"""Differential: what the container's process is (namespaces, pid, names, identity, caps,
rlimits, exit status), the same under pyrunc, runc and crun.

Each test runs a busybox shell probe and asserts what a user would check; capability masks are
also compared with runc's on the same bundle (`reference`).
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests import probes
from tests.probes import (
    Background,
    Outcome,
    chain,
    host_ns,
    probe,
    sh,
    status_fields,
    wait_status,
)

pytestmark = [pytest.mark.root]
reference = probes.reference  # the fixture

NS_FILES = ("pid", "net", "ipc", "uts", "mnt", "cgroup", "user")
CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")
CAP_BITS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_AUDIT_WRITE": 29,
}


def mask(*names: str) -> str:
    return f"{sum(1 << CAP_BITS[n] for n in names):016x}"


def test_new_namespaces_distinct_from_host(runtime, bundle):
    script = "for n in " + " ".join(NS_FILES) + "; do echo $n $(readlink /proc/self/ns/$n); done"
    got = probe(runtime, bundle, script)
    assert got.code == 0, got
    inside = dict(line.split(" ", 1) for line in got.out.splitlines())
    assert set(inside) == set(NS_FILES), got
    for name in ("pid", "net", "ipc", "uts", "mnt", "cgroup"):
        assert inside[name] != host_ns(name), f"{name} namespace is the host's"
        assert inside[name].startswith(f"{name}:["), inside[name]
    # No user namespace in the default spec: the host's.
    assert inside["user"] == host_ns("user")


def no_ns(*kinds: str):
    def edit(cfg):
        cfg["linux"]["namespaces"] = [
            n for n in cfg["linux"]["namespaces"] if n["type"] not in kinds
        ]

    return edit


def test_shared_namespace_when_not_listed(runtime, bundle):
    def edit(cfg):
        no_ns("network", "uts")(cfg)
        del cfg["hostname"]

    got = probe(
        runtime, bundle, "readlink /proc/self/ns/net; readlink /proc/self/ns/uts", edit=edit
    )
    assert got.code == 0, got
    assert got.out.split() == [host_ns("net"), host_ns("uts")]


def test_hostname_without_uts_namespace_is_refused(runtime, bundle):
    got = probe(runtime, bundle, "echo ran", edit=no_ns("uts"))
    assert got.code != 0
    assert "ran" not in got.out
    assert "UTS namespace" in got.err, got


def test_pid_one(runtime, bundle):
    got = probe(runtime, bundle, "echo $$; cat /proc/1/comm; ps -o pid,comm | tail -n +2 | wc -l")
    assert got.code == 0, got
    pid, comm, nprocs = got.out.split()
    assert pid == "1"
    assert comm == "sh"
    # sh, ps, tail and wc: nothing of the host's is visible in the new pid namespace.
    assert int(nprocs) <= 4


def test_hostname(runtime, bundle):
    def name(cfg):
        cfg["hostname"] = "diffhost"

    got = probe(runtime, bundle, "hostname; uname -n", edit=name)
    assert got.code == 0, got
    assert got.out.splitlines() == ["diffhost", "diffhost"]


def runc_version(rt) -> tuple[int, ...]:
    first = rt.cmd("--version").stdout.decode().splitlines()[0]  # "runc version 1.1.5+ds1"
    return tuple(int(x) for x in re.findall(r"\d+", first.split()[2])[:2])


def test_domainname(runtime, bundle):
    if runtime.name == "runc" and runc_version(runtime) < (1, 2):
        pytest.skip("runc before 1.2 ignores the spec's domainname (runc and crun differ)")

    def names(cfg):
        cfg["hostname"] = "diffhost"
        cfg["domainname"] = "diff.example"

    got = probe(runtime, bundle, "hostname; cat /proc/sys/kernel/domainname", edit=names)
    assert got.code == 0, got
    assert got.out.splitlines() == ["diffhost", "diff.example"]


def test_default_domainname_is_none(runtime, bundle):
    got = probe(runtime, bundle, "hostname; cat /proc/sys/kernel/domainname")
    assert got.code == 0, got
    # A new uts namespace starts with "(none)" as the kernel's default domain name.
    assert got.out.splitlines() == ["pyrunc", "(none)"]


def user(uid: int, gid: int, extra: list[int] | None = None):
    def edit(cfg):
        cfg["process"]["user"] = {"uid": uid, "gid": gid}
        if extra is not None:
            cfg["process"]["user"]["additionalGids"] = extra

    return edit


def test_user_with_additional_groups(runtime, bundle):
    got = probe(runtime, bundle, "id; id -u; id -G", edit=user(1000, 1000, [10, 29]))
    assert got.code == 0, got
    lines = got.out.splitlines()
    assert lines[0] == "uid=1000(user) gid=1000(user) groups=10(wheel),29(audio)"
    assert lines[1] == "1000"
    assert sorted(lines[2].split()) == ["10", "1000", "29"]


def test_user_groups_are_only_the_spec_s(runtime, bundle):
    # /etc/group puts user in wheel and audio, but only additionalGids count.
    got = probe(runtime, bundle, "id; grep Groups /proc/self/status", edit=user(1000, 1000))
    assert got.code == 0, got
    lines = got.out.splitlines()
    assert lines[0] == "uid=1000(user) gid=1000(user)"
    assert lines[1].split() == ["Groups:"]


def test_root_user(runtime, bundle):
    got = probe(runtime, bundle, "id; grep Groups /proc/self/status")
    assert got.code == 0, got
    assert got.out.splitlines()[0] == "uid=0(root) gid=0(root)"
    assert got.out.splitlines()[1].split() == ["Groups:"]


def caps_of(o: Outcome) -> dict[str, str]:
    return status_fields(o.out, CAP_FIELDS)


STATUS = "cat /proc/self/status"


def test_default_capabilities(runtime, bundle, reference):
    got = probe(runtime, bundle, STATUS)
    assert got.code == 0, got
    caps = caps_of(got)
    default = mask("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert caps == {
        "CapInh": "0" * 16,
        "CapPrm": default,
        "CapEff": default,
        "CapBnd": default,
        "CapAmb": "0" * 16,
        "NoNewPrivs": "1",
    }
    reference.same(runtime, caps, bundle, STATUS, caps_of)


def custom_caps(cfg):
    cfg["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETUID", "CAP_KILL"],
        "effective": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "permitted": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_CHOWN"],
        "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    }
    cfg["process"]["noNewPrivileges"] = False


def test_custom_capabilities_with_ambient_non_root(runtime, bundle, reference):
    edit = chain(custom_caps, user(1000, 1000))
    got = probe(runtime, bundle, STATUS, edit=edit)
    assert got.code == 0, got
    caps = caps_of(got)
    # After execve by a non-root user with no file caps: permitted = effective = ambient.
    assert caps == {
        "CapInh": mask("CAP_NET_BIND_SERVICE", "CAP_KILL"),
        "CapPrm": mask("CAP_NET_BIND_SERVICE"),
        "CapEff": mask("CAP_NET_BIND_SERVICE"),
        "CapBnd": mask(
            "CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETUID", "CAP_KILL"
        ),
        "CapAmb": mask("CAP_NET_BIND_SERVICE"),
        "NoNewPrivs": "0",
    }
    reference.same(runtime, caps, bundle, STATUS, caps_of, edit=edit)


def test_custom_capabilities_root(runtime, bundle, reference):
    # For uid 0 the kernel recomputes the sets at execve from the bounding set.
    got = probe(runtime, bundle, STATUS, edit=custom_caps)
    assert got.code == 0, got
    caps = caps_of(got)
    assert caps["CapBnd"] == mask(
        "CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETUID", "CAP_KILL"
    )
    assert caps["NoNewPrivs"] == "0"
    reference.same(runtime, caps, bundle, STATUS, caps_of, edit=custom_caps)


def test_capabilities_take_effect(runtime, bundle):
    # Without CAP_CHOWN even root cannot give a file away; CAP_KILL is in the default set.
    def tmpfs_tmp(cfg):
        cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})

    got = probe(
        runtime,
        bundle,
        "touch /tmp/f && chown 1000 /tmp/f; echo chown=$?; kill -0 1; echo kill=$?",
        edit=tmpfs_tmp,
    )
    assert "chown=1" in got.out, got
    assert "Operation not permitted" in got.err, got
    assert "kill=0" in got.out, got


def rlimits(cfg):
    cfg["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 18446744073709551615},
    ]


def test_rlimits(runtime, bundle):
    got = probe(runtime, bundle, "ulimit -n; ulimit -Hn; cat /proc/self/limits", edit=rlimits)
    assert got.code == 0, got
    lines = got.out.splitlines()
    assert lines[:2] == ["512", "2048"]
    limits = {
        line[:26].strip(): line[26:].split()[:2] for line in lines[3:] if line.startswith("Max")
    }
    assert limits["Max open files"] == ["512", "2048"]
    assert limits["Max processes"] == ["300", "400"]
    assert limits["Max core file size"] == ["0", "unlimited"]


def test_default_rlimit_nofile(runtime, bundle):
    got = probe(runtime, bundle, "ulimit -n; ulimit -Hn")
    assert got.code == 0, got
    assert got.out.split() == ["1024", "1024"]


def test_env_and_cwd(runtime, bundle):
    def edit(cfg):
        cfg["process"]["env"].append("PROBE=hello world")
        cfg["process"]["cwd"] = "/etc"

    got = probe(runtime, bundle, 'echo "$PROBE"; pwd; echo "$PATH"', edit=edit)
    assert got.code == 0, got
    assert got.out.splitlines() == [
        "hello world",
        "/etc",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]


def test_stdio_passed_through(runtime, bundle):
    b = bundle(sh("cat; echo to-err >&2"))
    p = runtime.run(b, input=b"from stdin\n")
    assert p.returncode == 0
    assert p.stdout == b"from stdin\n"
    assert b"to-err" in p.stderr


def test_exit_code(runtime, bundle):
    got = probe(runtime, bundle, "echo before; exit 7")
    assert got.code == 7
    assert got.out == "before\n"


def test_command_not_found_fails(runtime, bundle):
    b = bundle(["/no/such/binary"])
    p = runtime.run(b)
    assert p.returncode != 0
    assert b"no/such/binary" in p.stderr or b"No such file" in p.stderr


def test_pid_one_ignores_unhandled_sigterm_from_inside(runtime, bundle):
    # The kernel drops signals to a pid namespace's init that it has no handler for.
    got = probe(runtime, bundle, "kill -TERM $$; echo survived; exit 3")
    assert (got.code, got.out) == (3, "survived\n")


def test_pid_one_death_by_its_own_handled_signal(runtime, bundle):
    got = probe(runtime, bundle, "trap 'echo got-term; exit 143' TERM; kill -TERM $$; sleep 5")
    assert (got.code, got.out) == (143, "got-term\n")


def test_run_killed_from_outside(runtime, bundle):
    # SIGKILL from the host reaches the init of a pid namespace; run reports 128+9.
    b = bundle(sh("echo up; sleep 100"))
    bg = Background(runtime, b)
    try:
        bg.wait_running()
        runtime.cmd("kill", bg.cid, "KILL")
        got = bg.finish()
    finally:
        bg.close()
    assert got.code == 137, got
    assert got.out == "up\n"


def test_run_sigterm_without_pid_namespace(runtime, bundle):
    # Not a namespace's init: SIGTERM's default action kills the shell, run exits 143.
    # `exec`: crun's run, a subreaper, also waits for orphans such as a shell's child.
    b = bundle(sh("echo up; exec sleep 100"), edit=no_ns("pid"))
    bg = Background(runtime, b)
    try:
        bg.wait_running()
        runtime.cmd("kill", bg.cid, "TERM")
        got = bg.finish()
    finally:
        bg.close()
    assert (got.code, got.out) == (143, "up\n"), got


def test_run_forwards_signals_to_the_container(runtime, bundle):
    # A signal to the foreground `run` process is passed on to the container's init.
    b = bundle(sh("trap 'echo got-usr1; exit 5' USR1; while :; do sleep 0.05; done"))
    bg = Background(runtime, b)
    try:
        st = bg.wait_running()
        # The trap is set by the time the shell runs its first sleep.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                kids = Path(f"/proc/{st['pid']}/task/{st['pid']}/children").read_text().split()
            except OSError:
                kids = []
            if kids:
                break
            time.sleep(0.02)
        bg.proc.send_signal(signal.SIGUSR1)
        got = bg.finish()
    finally:
        bg.close()
    assert (got.code, got.out) == (5, "got-usr1\n"), got


def test_state_after_exit(runtime, bundle):
    b = bundle(sh("exit 7"))
    cid = runtime.create(b)
    runtime.cmd("start", cid)
    st = wait_status(runtime, cid, "stopped")
    assert st["id"] == cid
    assert st["pid"] == 0
    runtime.cmd("delete", cid)
    assert runtime.cmd("state", cid, check=False).returncode != 0


@pytest.mark.parametrize(
    ("uid", "home"), [(0, "/root"), (1000, "/home/user"), (4242, "/")], ids=["root", "user", "none"]
)
def test_home_from_passwd(runtime, bundle, uid, home):
    # Not in the spec's env: runtimes take it from the container's /etc/passwd, else "/".
    if runtime.name == "crun" and home == "/":
        home = ""  # crun 1.8 leaves HOME out for a uid /etc/passwd does not know; runc: "/"
    got = probe(runtime, bundle, 'echo "$HOME"', edit=user(uid, uid))
    assert (got.code, got.out) == (0, f"{home}\n"), got


def test_home_from_env_wins(runtime, bundle):
    def edit(cfg):
        cfg["process"]["env"].append("HOME=/tmp")

    got = probe(runtime, bundle, 'echo "$HOME"', edit=edit)
    assert (got.code, got.out) == (0, "/tmp\n"), got


def test_missing_cwd_is_created(runtime, bundle):
    def edit(cfg):
        cfg["process"]["cwd"] = "/newdir/sub"

    got = probe(runtime, bundle, "pwd; stat -c '%a %u' /newdir/sub", edit=edit, writable=True)
    assert (got.code, got.out) == (0, "/newdir/sub\n755 0\n"), got


def test_oom_score_adj_sysctl_umask(runtime, bundle):
    def edit(cfg):
        cfg["process"]["oomScoreAdj"] = 123
        cfg["process"]["user"]["umask"] = 0o027
        # Namespaced sysctls: the container's network and ipc namespaces are its own.
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}

    script = (
        "cat /proc/self/oom_score_adj /proc/sys/net/ipv4/ip_forward "
        "/proc/sys/kernel/shm_rmid_forced; umask"
    )
    host_value = Path("/proc/sys/kernel/shm_rmid_forced").read_text()
    got = probe(runtime, bundle, script, edit=edit)
    assert (got.code, got.out.split()) == (0, ["123", "1", "1", "0027"]), got
    assert Path("/proc/sys/kernel/shm_rmid_forced").read_text() == host_value


def test_cgroup_namespace_root(runtime, bundle):
    # With a cgroup namespace the container's own cgroup is "/" in every hierarchy.
    got = probe(runtime, bundle, "cat /proc/self/cgroup")
    assert got.code == 0, got
    paths = {line.split(":", 2)[2] for line in got.out.splitlines()}
    assert paths == {"/"}, got
