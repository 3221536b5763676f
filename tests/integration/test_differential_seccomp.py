"""Differential: seccomp profiles in effect under pyrunc, runc and crun.

A denied syscall returns the profile's errno (or the process dies, for a kill action),
whether or not noNewPrivileges is set: without it the runtime loads the filter while it still
holds CAP_SYS_ADMIN, before dropping capabilities.
"""

from __future__ import annotations

import platform

import pytest

from tests.probes import probe

pytestmark = [pytest.mark.root]

ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def seccomp(rules: list[dict], nnp: bool, default: str = "SCMP_ACT_ALLOW"):
    def edit(cfg):
        cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
        cfg["process"]["noNewPrivileges"] = nnp
        cfg["linux"]["seccomp"] = {
            "defaultAction": default,
            "architectures": ARCHES.get(platform.machine(), []),
            "syscalls": rules,
        }

    return edit


def deny(names: list[str], errno: int | None = None, action: str = "SCMP_ACT_ERRNO") -> dict:
    rule: dict = {"names": names, "action": action}
    if errno is not None:
        rule["errnoRet"] = errno
    return rule


PROBE = (
    "mkdir /tmp/x; echo mkdir=$?; "
    "touch /tmp/f && echo touch=ok; "
    "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"
)


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_denied_syscall_gets_errno(runtime, bundle, nnp):
    got = probe(runtime, bundle, PROBE, edit=seccomp([deny(["mkdir", "mkdirat"], 1)], nnp))
    assert got.code == 0, got
    lines = got.out.splitlines()
    assert lines[:2] == ["mkdir=1", "touch=ok"], got
    assert "Operation not permitted" in got.err, got
    status = dict(line.split(":\t") for line in lines[2:])
    assert status == {"NoNewPrivs": "1" if nnp else "0", "Seccomp": "2"}


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_denied_syscall_other_errno(runtime, bundle, nnp):
    got = probe(runtime, bundle, PROBE, edit=seccomp([deny(["mkdir", "mkdirat"], 13)], nnp))
    assert got.out.splitlines()[:2] == ["mkdir=1", "touch=ok"], got
    assert "Permission denied" in got.err, got


def test_errno_default_is_eperm(runtime, bundle):
    got = probe(runtime, bundle, PROBE, edit=seccomp([deny(["mkdir", "mkdirat"])], True))
    assert got.out.splitlines()[:2] == ["mkdir=1", "touch=ok"], got
    assert "Operation not permitted" in got.err, got


def test_default_action_errno_with_allow_list(runtime, bundle):
    # Deny by default, allow what the shell needs: a denied syscall (mkdir) fails with the
    # default action's errno.
    allowed = [
        "execve", "brk", "mmap", "munmap", "mprotect", "arch_prctl", "set_tid_address",
        "set_robust_list", "rseq", "prlimit64", "getrandom", "getpid", "getppid", "getuid",
        "geteuid", "getgid", "getegid", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
        "read", "write", "writev", "open", "openat", "close", "fstat", "newfstatat", "stat",
        "lstat", "statx", "fcntl", "dup2", "dup3", "ioctl", "exit", "exit_group", "uname",
        "getcwd", "chdir", "wait4", "clone", "clone3", "fork", "vfork", "lseek", "access",
        "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64", "sysinfo",
        "futex", "getpgrp", "setpgid", "pipe", "pipe2", "poll", "ppoll", "pselect6", "select",
        "sigaltstack", "madvise", "umask", "time", "clock_gettime", "gettimeofday",
        "utimensat", "capget", "capset", "prctl", "setgroups", "setresuid", "setresgid",
        "setuid", "setgid", "getgroups", "sched_getaffinity",
        # What runc (Go) still calls between loading the filter and execve.
        "fstatfs", "statfs", "close_range", "epoll_ctl", "epoll_pwait", "epoll_wait",
        "epoll_create1", "nanosleep", "sched_yield", "tgkill", "gettid", "fchdir", "mincore",
    ]  # fmt: skip
    rules = [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]

    def edit(cfg):
        seccomp(rules, True, default="SCMP_ACT_ERRNO")(cfg)
        cfg["linux"]["seccomp"]["defaultErrnoRet"] = 38  # ENOSYS

    got = probe(runtime, bundle, "mkdir /tmp/x; echo mkdir=$?; echo alive", edit=edit)
    assert got.out.splitlines() == ["mkdir=1", "alive"], got
    assert "Function not implemented" in got.err, got


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS"])
def test_kill_action(runtime, bundle, action):
    # busybox sh calls uname() as it starts: the container's process dies of SIGSYS (31) at
    # once, after the runtime's execve, and run reports 128+31.
    edit = seccomp([deny(["uname"], action=action)], True)
    got = probe(runtime, bundle, "echo not-reached", edit=edit)
    assert (got.code, got.out) == (159, ""), got


def test_exec_process_gets_the_filter(runtime, bundle):
    b = bundle(["sleep", "100"], edit=seccomp([deny(["mkdir", "mkdirat"], 1)], True))
    cid = runtime.create(b)
    runtime.cmd("start", cid)
    p = runtime.cmd("exec", cid, "sh", "-c", "mkdir /tmp/y; echo mkdir=$?", check=False)
    assert (p.returncode, p.stdout) == (0, b"mkdir=1\n"), p.stderr
    assert b"Operation not permitted" in p.stderr
