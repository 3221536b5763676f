"""Seccomp filters loaded for real, each in a forked child so the test process stays clean.

The child loads the profile, runs a probe, writes the probe's result (a Python literal)
to a pipe and leaves with os._exit; the parent reads it and reaps the child.
"""

from __future__ import annotations

import ast
import ctypes
import ctypes.util
import errno
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from oci_runtime import seccomp


def _have_libseccomp() -> bool:
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return ctypes.util.find_library("seccomp") is not None
    return True


def _status(field: str, path: str = "/proc/self/status") -> str | None:
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return value.strip()
    return None


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_SYS_ADMIN to load without NNP)"),
    pytest.mark.skipif(not _have_libseccomp(), reason="libseccomp not installed"),
    pytest.mark.skipif(_status("Seccomp") is None, reason="kernel without seccomp"),
]

SIGCONT = int(signal.SIGCONT)  # 18 on x86 and arm: both harmless sent to oneself
SIGWINCH = int(signal.SIGWINCH)
Profile = dict | Callable[[], dict] | None


class Outcome:
    def __init__(self, status: int, text: str):
        self.status = status
        self.text = text

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def value(self) -> object:
        assert os.WIFEXITED(self.status), f"child died: status {self.status:#x} {self.text!r}"
        assert os.WEXITSTATUS(self.status) == 0, f"child failed: {self.text}"
        return ast.literal_eval(self.text)


def run_in_child(profile: Profile, probe: Callable[[], object]) -> Outcome:
    """Fork; in the child load ``profile`` (a dict, a callable run in the child, or None
    for no filter) and report ``repr(probe())``. Exit 2 with the message when loading
    fails."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            try:
                if callable(profile):
                    profile = profile()
                if profile is not None:
                    seccomp.load(profile)
            except seccomp.SeccompError as e:
                os.write(w, f"SeccompError: {e}".encode())
                code = 2
            else:
                os.write(w, repr(probe()).encode())
                code = 0
        except BaseException as e:
            try:
                os.write(w, f"{type(e).__name__}: {e}".encode())
            except BaseException:
                pass
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    try:
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return Outcome(status, b"".join(chunks).decode(errors="replace"))


def errno_of(fn: Callable[[], object]) -> int:
    """0 when ``fn`` succeeds, else the errno of its OSError."""
    try:
        fn()
    except OSError as e:
        return e.errno or -1
    return 0


def deny_mkdir(errno_ret: int | None = None, **extra: object) -> dict:
    call: dict = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
    if errno_ret is not None:
        call["errnoRet"] = errno_ret
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [call], **extra}


@pytest.mark.parametrize(
    ("errno_ret", "expected"), [(None, errno.EPERM), (1, errno.EPERM), (38, errno.ENOSYS)]
)
def test_errno_rule(tmp_path: Path, errno_ret: int | None, expected: int) -> None:
    target = tmp_path / "d"
    out = run_in_child(deny_mkdir(errno_ret), lambda: errno_of(lambda: os.mkdir(target)))
    assert out.value == expected
    assert not target.exists()


def test_without_filter_mkdir_works(tmp_path: Path) -> None:
    # The probe itself is sound: the same mkdir succeeds when nothing denies it.
    target = tmp_path / "d"
    out = run_in_child(
        {"defaultAction": "SCMP_ACT_ALLOW"}, lambda: errno_of(lambda: os.mkdir(target))
    )
    assert out.value == 0
    assert target.is_dir()


def test_filter_is_inherited_by_children(tmp_path: Path) -> None:
    def probe() -> object:
        pid = os.fork()
        if pid == 0:
            os._exit(errno_of(lambda: os.mkdir(tmp_path / "g")))
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    assert run_in_child(deny_mkdir(38), probe).value == errno.ENOSYS


def test_with_architectures_and_flags(tmp_path: Path) -> None:
    native = {
        "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    }.get(os.uname().machine, [])
    profile = deny_mkdir(
        38,
        architectures=native,
        flags=[
            "SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        ],
    )
    out = run_in_child(profile, lambda: errno_of(lambda: os.mkdir(tmp_path / "d")))
    assert out.value == errno.ENOSYS


def test_unknown_names_are_skipped_and_default_action_rules_dropped(tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["no_such_syscall", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    out = run_in_child(
        profile, lambda: (os.getpid() > 0, errno_of(lambda: os.mkdir(tmp_path / "d")))
    )
    assert out.value == (True, errno.EPERM)


def test_default_errno_with_allow_list(tmp_path: Path) -> None:
    # Everything the probe and the interpreter need on the way out is allowed; any other
    # syscall fails with ENOSYS.
    allowed = [
        "brk", "mmap", "munmap", "mremap", "madvise", "mprotect", "futex",
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
        "read", "write", "close", "fstat", "newfstatat", "lseek", "getrandom",
        "clock_gettime", "gettid", "getpid", "exit", "exit_group",
    ]  # fmt: skip
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "syscalls": [
            {"names": allowed, "action": "SCMP_ACT_ALLOW"},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
        ],
    }

    def probe() -> object:
        return (
            os.getpid() > 0,
            errno_of(lambda: os.mkdir(tmp_path / "d")),
            errno_of(lambda: os.rmdir(tmp_path)),
            errno_of(lambda: os.getpriority(os.PRIO_PROCESS, 0)),
        )

    assert run_in_child(profile, probe).value == (True, errno.ENOSYS, errno.EXDEV, errno.ENOSYS)


def kill_rule(args: list[dict], errno_ret: int = errno.EPERM) -> dict:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret, "args": args}
        ],
    }


def kill_self_errnos() -> object:
    me = os.getpid()
    return [errno_of(lambda s=s: os.kill(me, s)) for s in (0, SIGCONT, SIGWINCH)]


@pytest.mark.parametrize(
    ("op", "value", "value_two", "denied"),
    [
        ("SCMP_CMP_EQ", 0, 0, {0}),
        ("SCMP_CMP_EQ", SIGCONT, 0, {SIGCONT}),
        ("SCMP_CMP_NE", 0, 0, {SIGCONT, SIGWINCH}),
        ("SCMP_CMP_LT", SIGCONT, 0, {0}),
        ("SCMP_CMP_LE", SIGCONT, 0, {0, SIGCONT}),
        ("SCMP_CMP_GT", SIGCONT, 0, {SIGWINCH}),
        ("SCMP_CMP_GE", SIGCONT, 0, {SIGCONT, SIGWINCH}),
        # mask, then the value the masked argument must equal
        ("SCMP_CMP_MASKED_EQ", SIGCONT ^ SIGWINCH, SIGWINCH & (SIGCONT ^ SIGWINCH), {SIGWINCH}),
    ],
)
def test_argument_operators(op: str, value: int, value_two: int, denied: set[int]) -> None:
    args = [{"index": 1, "op": op, "value": value, "valueTwo": value_two}]
    out = run_in_child(kill_rule(args, errno.EL3HLT), kill_self_errnos)
    expected = [errno.EL3HLT if s in denied else 0 for s in (0, SIGCONT, SIGWINCH)]
    assert out.value == expected


def test_conditions_on_different_arguments_are_anded() -> None:
    def profile() -> dict:  # built in the child: it names the child's own pid
        return kill_rule(
            [
                {"index": 0, "op": "SCMP_CMP_EQ", "value": os.getpid()},
                {"index": 1, "op": "SCMP_CMP_EQ", "value": 0},
            ]
        )

    def probe() -> object:
        return (
            errno_of(lambda: os.kill(os.getpid(), 0)),
            errno_of(lambda: os.kill(os.getpid(), SIGWINCH)),
            errno_of(lambda: os.kill(os.getppid(), 0)),
        )

    assert run_in_child(profile, probe).value == (errno.EPERM, 0, 0)


def test_conditions_on_the_same_argument_are_ored() -> None:
    # ANDed, "sig == 0 and sig == SIGCONT" could never match; runc's reading is "either".
    args = [
        {"index": 1, "op": "SCMP_CMP_EQ", "value": 0},
        {"index": 1, "op": "SCMP_CMP_EQ", "value": SIGCONT},
    ]
    out = run_in_child(kill_rule(args), kill_self_errnos)
    assert out.value == [errno.EPERM, errno.EPERM, 0]


def test_masked_eq_denies_creating_files(tmp_path: Path) -> None:
    # A profile-shaped rule: open/openat with O_CREAT in their flags argument.
    def creat_bit(index: int) -> list[dict]:
        return [
            {
                "index": index,
                "op": "SCMP_CMP_MASKED_EQ",
                "value": os.O_CREAT,
                "valueTwo": os.O_CREAT,
            }
        ]

    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["open"], "action": "SCMP_ACT_ERRNO", "args": creat_bit(1)},
            {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "args": creat_bit(2)},
        ],
    }
    existing = tmp_path / "existing"
    existing.write_text("x")

    def probe() -> object:
        def open_close(path: Path, flags: int) -> None:
            os.close(os.open(path, flags, 0o600))

        return (
            errno_of(lambda: open_close(existing, os.O_RDONLY)),
            errno_of(lambda: open_close(existing, os.O_WRONLY | os.O_APPEND)),
            errno_of(lambda: open_close(tmp_path / "new", os.O_WRONLY | os.O_CREAT)),
        )

    assert run_in_child(profile, probe).value == (0, 0, errno.EPERM)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_TRAP"])
def test_killing_actions(tmp_path: Path, action: str) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": action}],
    }
    out = run_in_child(profile, lambda: os.mkdir(tmp_path / "d"))
    assert out.signal == signal.SIGSYS, out.text
    assert not (tmp_path / "d").exists()


def test_log_action_allows(tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}],
    }
    out = run_in_child(profile, lambda: errno_of(lambda: os.mkdir(tmp_path / "d")))
    assert out.value == 0


def test_no_new_privs_is_left_alone() -> None:
    if _status("NoNewPrivs") != "0":
        pytest.skip("the test process already has no_new_privs")
    out = run_in_child(
        deny_mkdir(),
        lambda: (_status("NoNewPrivs"), _status("Seccomp"), _status("Seccomp_filters")),
    )
    no_new_privs, mode, filters = out.value  # type: ignore[misc]
    assert no_new_privs == "0"
    assert mode == "2"  # SECCOMP_MODE_FILTER
    assert filters in (None, "1")  # the field is missing on older kernels


def test_load_without_cap_sys_admin_fails_cleanly() -> None:
    # Without NNP the kernel wants CAP_SYS_ADMIN; losing root loses it.
    if _status("NoNewPrivs") != "0":
        pytest.skip("the test process already has no_new_privs")

    def profile() -> dict:
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        return deny_mkdir()

    out = run_in_child(profile, lambda: "loaded")
    assert os.WEXITSTATUS(out.status) == 2, out.text
    assert out.text.startswith("SeccompError: linux.seccomp: seccomp_load: "), out.text
    assert "Permission denied" in out.text or "Operation canceled" in out.text


def test_invalid_profile_loads_nothing() -> None:
    bad = deny_mkdir()
    bad["syscalls"].append({"names": ["rmdir"], "action": "SCMP_ACT_BOGUS"})

    def probe() -> object:
        try:
            seccomp.load(bad)
        except seccomp.SeccompError as e:
            return (str(e), _status("Seccomp"))
        return ("loaded", _status("Seccomp"))

    message, mode = run_in_child(None, probe).value  # type: ignore[misc]
    assert message == 'linux.seccomp.syscalls[1].action: unknown action "SCMP_ACT_BOGUS"'
    assert mode == "0"


def test_libseccomp_failure_loads_nothing() -> None:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    if lib.seccomp_arch_resolve_name(b"m68k"):
        pytest.skip("this libseccomp knows m68k")
    profile = deny_mkdir(architectures=["SCMP_ARCH_M68K"])

    def probe() -> object:
        try:
            seccomp.load(profile)
        except seccomp.SeccompError as e:
            return (str(e), _status("Seccomp"))
        return ("loaded", _status("Seccomp"))

    message, mode = run_in_child(None, probe).value  # type: ignore[misc]
    assert message.startswith("linux.seccomp.architectures: SCMP_ARCH_M68K: Invalid argument")
    assert mode == "0"
