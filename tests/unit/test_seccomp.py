"""Seccomp profile validation and mapping; nothing here loads a filter or needs root."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import pathlib
import subprocess
import sys

import pytest

from oci_runtime import seccomp
from oci_runtime.seccomp import Rule, SeccompError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
EPERM = 1
ENOSYS = 38
ERRNO = seccomp.SCMP_ACT_ERRNO_BASE
ALLOW = seccomp.SCMP_ACT_ALLOW
EQ = seccomp.OPERATORS["SCMP_CMP_EQ"]
MASKED_EQ = seccomp.OPERATORS["SCMP_CMP_MASKED_EQ"]


def have_libseccomp() -> bool:
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return ctypes.util.find_library("seccomp") is not None
    return True


needs_libseccomp = pytest.mark.skipif(not have_libseccomp(), reason="libseccomp not installed")


def base() -> dict:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }


def with_(path: str, value: object) -> dict:
    """``base()`` with the dotted ``path`` set to ``value`` (``"<del>"`` deletes it)."""
    spec = copy.deepcopy(base())
    *parents, last = path.split(".")
    node: object = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    key: object = int(last) if isinstance(node, list) else last
    if value == "<del>":
        del node[key]  # type: ignore[index, arg-type]
    else:
        node[key] = value  # type: ignore[index]
    return spec


# --- validation errors ------------------------------------------------------------------

INVALID = [
    # (spec, expected message fragment)
    ("not a dict", "linux.seccomp: must be an object, not string"),
    ([], "linux.seccomp: must be an object, not array"),
    ({}, "linux.seccomp.defaultAction: is required"),
    (with_("defaultAction", "<del>"), "linux.seccomp.defaultAction: is required"),
    (with_("defaultAction", 3), "linux.seccomp.defaultAction: must be a string, not integer"),
    (
        with_("defaultAction", "SCMP_ACT_NOPE"),
        'linux.seccomp.defaultAction: unknown action "SCMP_ACT_NOPE"',
    ),
    (
        with_("defaultAction", "SCMP_ACT_NOTIFY"),
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
    ),
    (
        with_("defaultErrnoRet", 5),
        'linux.seccomp.defaultErrnoRet: not supported with defaultAction "SCMP_ACT_ALLOW"',
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "1"},
        "linux.seccomp.defaultErrnoRet: must be an integer, not string",
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": True},
        "linux.seccomp.defaultErrnoRet: must be an integer, not boolean",
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1},
        "linux.seccomp.defaultErrnoRet: -1 is out of range",
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 0x10000},
        "linux.seccomp.defaultErrnoRet: 65536 is out of range 0..65535",
    ),
    (
        with_("architectures", "SCMP_ARCH_X86_64"),
        "linux.seccomp.architectures: must be an array, not string",
    ),
    (
        with_("architectures.1", "SCMP_ARCH_VAX"),
        'linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_VAX"',
    ),
    (
        with_("architectures.0", "x86_64"),
        'linux.seccomp.architectures[0]: unknown architecture "x86_64"',
    ),
    (with_("architectures.2", None), "linux.seccomp.architectures[2]: must be a string, not null"),
    (with_("flags", {}), "linux.seccomp.flags: must be an array, not object"),
    (
        with_("flags", ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_BOGUS"]),
        'linux.seccomp.flags[1]: unknown flag "SECCOMP_FILTER_FLAG_BOGUS"',
    ),
    (with_("listenerPath", 7), "linux.seccomp.listenerPath: must be a string, not integer"),
    (with_("listenerMetadata", "x"), "linux.seccomp.listenerMetadata: requires listenerPath"),
    (with_("listenerMetadata", ["x"]), "linux.seccomp.listenerMetadata: must be a string"),
    (with_("syscalls", {}), "linux.seccomp.syscalls: must be an array, not object"),
    (with_("syscalls.1", "kill"), "linux.seccomp.syscalls[1]: must be an object, not string"),
    (with_("syscalls.0.names", "<del>"), "linux.seccomp.syscalls[0].names: is required"),
    (with_("syscalls.0.names", "mkdir"), "linux.seccomp.syscalls[0].names: must be an array"),
    (with_("syscalls.0.names", []), "linux.seccomp.syscalls[0].names: must contain at least"),
    (
        with_("syscalls.0.names", ["mkdir", 83]),
        "linux.seccomp.syscalls[0].names[1]: must be a string, not integer",
    ),
    (with_("syscalls.0.names", [""]), "linux.seccomp.syscalls[0].names[0]: must not be empty"),
    (with_("syscalls.1.action", "<del>"), "linux.seccomp.syscalls[1].action: is required"),
    (
        with_("syscalls.1.action", "SCMP_ACT_FOO"),
        'linux.seccomp.syscalls[1].action: unknown action "SCMP_ACT_FOO"',
    ),
    (
        with_("syscalls.1.action", ["SCMP_ACT_ALLOW"]),
        "linux.seccomp.syscalls[1].action: must be a string, not array",
    ),
    (
        with_("syscalls.0.action", "SCMP_ACT_KILL"),
        'linux.seccomp.syscalls[0].errnoRet: not supported with action "SCMP_ACT_KILL"',
    ),
    (
        with_("syscalls.0.errnoRet", 1.0),
        "linux.seccomp.syscalls[0].errnoRet: must be an integer, not float",
    ),
    (
        with_("syscalls.0.errnoRet", 70000),
        "linux.seccomp.syscalls[0].errnoRet: 70000 is out of range 0..65535",
    ),
    (
        with_("syscalls.1.action", "SCMP_ACT_NOTIFY"),
        "linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY requires linux.seccomp.listenerPath",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}],
        },
        "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY cannot be used for write",
    ),
    (with_("syscalls.1.args", {}), "linux.seccomp.syscalls[1].args: must be an array, not object"),
    (with_("syscalls.1.args.0", 0), "linux.seccomp.syscalls[1].args[0]: must be an object"),
    (with_("syscalls.1.args.0.index", "<del>"), "linux.seccomp.syscalls[1].args[0].index: is req"),
    (with_("syscalls.1.args.0.value", "<del>"), "linux.seccomp.syscalls[1].args[0].value: is req"),
    (with_("syscalls.1.args.0.op", "<del>"), "linux.seccomp.syscalls[1].args[0].op: is required"),
    (
        with_("syscalls.1.args.0.index", 6),
        "linux.seccomp.syscalls[1].args[0].index: 6 is out of range 0..5",
    ),
    (
        with_("syscalls.1.args.0.index", -1),
        "linux.seccomp.syscalls[1].args[0].index: -1 is out of range 0..5",
    ),
    (
        with_("syscalls.1.args.0.index", "1"),
        "linux.seccomp.syscalls[1].args[0].index: must be an integer, not string",
    ),
    (
        with_("syscalls.1.args.0.value", 1 << 64),
        "linux.seccomp.syscalls[1].args[0].value: 18446744073709551616 is out of range",
    ),
    (
        with_("syscalls.1.args.0.value", -5),
        "linux.seccomp.syscalls[1].args[0].value: -5 is out of range",
    ),
    (
        with_("syscalls.1.args.0.valueTwo", False),
        "linux.seccomp.syscalls[1].args[0].valueTwo: must be an integer, not boolean",
    ),
    (
        with_("syscalls.1.args.0.op", "SCMP_CMP_EQUAL"),
        'linux.seccomp.syscalls[1].args[0].op: unknown operator "SCMP_CMP_EQUAL"',
    ),
    (
        with_("syscalls.1.args.0.op", 4),
        "linux.seccomp.syscalls[1].args[0].op: must be a string, not integer",
    ),
]


@pytest.mark.parametrize(("spec", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid(spec: object, message: str) -> None:
    with pytest.raises(SeccompError) as info:
        seccomp.validate(spec)  # type: ignore[arg-type]
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_error_is_a_value_error() -> None:
    assert issubclass(SeccompError, ValueError)


def test_message_quotes_odd_strings() -> None:
    with pytest.raises(SeccompError, match=r'unknown action "a\\"b"'):
        seccomp.validate({"defaultAction": 'a"b'})


# --- accepted specs ----------------------------------------------------------------------

VALID = [
    {"defaultAction": "SCMP_ACT_ALLOW"},
    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 0},
    {"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 65535},
    {"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": []},
    {"defaultAction": "SCMP_ACT_LOG", "architectures": [], "flags": []},
    # Go encoders write null for empty slices; runc accepts them.
    {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": None,
        "flags": None,
        "syscalls": None,
        "defaultErrnoRet": None,
    },
    {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": sorted(seccomp.ARCHITECTURES),
        "flags": sorted(seccomp.FLAGS),
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "args": None}],
    },
    {
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "meta",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    },
    {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": ""},
    {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 0xFFFFFFFF, "op": op, "valueTwo": 0}
                    for op in sorted(seccomp.OPERATORS)
                ],
            },
            {
                "names": ["a_syscall_nobody_has"],
                "action": "SCMP_ACT_TRAP",
                "args": [{"index": 5, "value": (1 << 64) - 1, "op": "SCMP_CMP_GE"}],
                "comment": "unknown keys are ignored",
            },
        ],
    },
    base(),
]


@pytest.mark.parametrize("spec", VALID)
def test_valid(spec: dict) -> None:
    seccomp.validate(spec)


@pytest.mark.parametrize("action", sorted(seccomp.ACTIONS))
def test_every_action_is_accepted(action: str) -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW" if action != "SCMP_ACT_ALLOW" else "SCMP_ACT_KILL",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mkdir"], "action": action}],
    }
    seccomp.validate(spec)


def test_import_and_validate_stay_cheap() -> None:
    # Runs on every container start: no ctypes/libseccomp until a filter is built, and
    # no typing either. -S keeps site's own imports out of the picture.
    code = (
        "import sys; from oci_runtime import seccomp;"
        "seccomp.validate({'defaultAction': 'SCMP_ACT_ALLOW',"
        " 'syscalls': [{'names': ['mkdir'], 'action': 'SCMP_ACT_ERRNO'}]});"
        "heavy = {'ctypes', 'typing', 'json', 'dataclasses'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-S", "-c", code], check=True, cwd=REPO_ROOT)


# --- mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "errno_ret", "value"),
    [
        ("SCMP_ACT_KILL", None, 0x00000000),
        ("SCMP_ACT_KILL_THREAD", None, 0x00000000),
        ("SCMP_ACT_KILL_PROCESS", None, 0x80000000),
        ("SCMP_ACT_TRAP", None, 0x00030000),
        ("SCMP_ACT_ERRNO", None, 0x00050000 | EPERM),
        ("SCMP_ACT_ERRNO", ENOSYS, 0x00050000 | ENOSYS),
        ("SCMP_ACT_ERRNO", 0, 0x00050000),
        ("SCMP_ACT_TRACE", None, 0x7FF00000 | EPERM),
        ("SCMP_ACT_TRACE", 1234, 0x7FF00000 | 1234),
        ("SCMP_ACT_LOG", None, 0x7FFC0000),
        ("SCMP_ACT_ALLOW", None, 0x7FFF0000),
        ("SCMP_ACT_NOTIFY", None, 0x7FC00000),
    ],
)
def test_action_value(name: str, errno_ret: int | None, value: int) -> None:
    assert seccomp.action_value(name, errno_ret) == value


def test_action_value_unknown() -> None:
    with pytest.raises(SeccompError, match='unknown action "SCMP_ACT_X"'):
        seccomp.action_value("SCMP_ACT_X")


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("SCMP_ARCH_X86_64", 0xC000003E),
        ("SCMP_ARCH_X86", 0x40000003),
        ("SCMP_ARCH_X32", 0x4000003E),
        ("SCMP_ARCH_AARCH64", 0xC00000B7),
        ("SCMP_ARCH_ARM", 0x40000028),
        ("SCMP_ARCH_MIPSEL64N32", 0xE0000008),
        ("SCMP_ARCH_PPC64LE", 0xC0000015),
        ("SCMP_ARCH_S390X", 0x80000016),
        ("SCMP_ARCH_RISCV64", 0xC00000F3),
        ("SCMP_ARCH_LOONGARCH64", 0xC0000102),
        ("SCMP_ARCH_SH", 0x4000002A),
        ("SCMP_ARCH_SHEB", 0x0000002A),
    ],
)
def test_arch_tokens(name: str, token: int) -> None:
    assert seccomp.ARCHITECTURES[name] == token


@needs_libseccomp
def test_arch_tokens_match_libseccomp() -> None:
    """Every arch this libseccomp knows resolves to the token we declare."""
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    known = 0
    for name, token in seccomp.ARCHITECTURES.items():
        resolved = lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
        if resolved:  # 0: newer than this libseccomp
            assert resolved == token, name
            known += 1
    assert known >= 15


def test_operators() -> None:
    assert seccomp.OPERATORS == {
        "SCMP_CMP_NE": 1,
        "SCMP_CMP_LT": 2,
        "SCMP_CMP_LE": 3,
        "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6,
        "SCMP_CMP_MASKED_EQ": 7,
    }


def test_spec_enums_are_covered() -> None:
    """The runtime-spec (v1.2) schema's enums, all known here."""
    assert set(seccomp.ACTIONS) == {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
    assert len(seccomp.ARCHITECTURES) == 23
    assert set(seccomp.FLAGS) == {
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }


# --- compiled profile ----------------------------------------------------------------------


def test_compile_default_and_arches() -> None:
    p = seccomp.compile_profile(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": ENOSYS,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        }
    )
    assert p.default_action == ERRNO | ENOSYS
    assert p.architectures == [0xC000003E, 0x40000003]
    assert p.attributes == [("SECCOMP_FILTER_FLAG_LOG", 6), ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", 7)]
    assert p.rules == []
    assert not p.notify


def test_compile_flags() -> None:
    p = seccomp.compile_profile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        }
    )
    assert p.attributes == [("SECCOMP_FILTER_FLAG_TSYNC", 4)]


def test_compile_rules() -> None:
    p = seccomp.compile_profile(base())
    assert p.rules == [
        Rule("mkdir", ERRNO | ENOSYS, ()),
        Rule("mkdirat", ERRNO | ENOSYS, ()),
        Rule("kill", ERRNO | EPERM, ((1, EQ, 0, 0),)),
    ]


def test_compile_masked_eq_carries_value_two() -> None:
    p = seccomp.compile_profile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["umask"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [
                        {"index": 0, "value": 0o77, "valueTwo": 0o7, "op": "SCMP_CMP_MASKED_EQ"}
                    ],
                }
            ],
        }
    )
    assert p.rules == [Rule("umask", ERRNO | EPERM, ((0, MASKED_EQ, 0o77, 0o7),))]


def test_compile_distinct_indexes_are_anded() -> None:
    args = [
        {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
    ]
    p = seccomp.compile_profile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": args}],
        }
    )
    assert p.rules == [Rule("kill", ERRNO | EPERM, ((0, EQ, 10, 0), (1, EQ, 0, 0)))]


def test_compile_repeated_index_becomes_one_rule_per_condition() -> None:
    # As runc: once any index repeats, every condition of the entry is its own rule.
    args = [
        {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 18, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"},
    ]
    p = seccomp.compile_profile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kill", "tkill"], "action": "SCMP_ACT_ERRNO", "args": args}],
        }
    )
    act = ERRNO | EPERM
    assert p.rules == [
        Rule("kill", act, ((1, EQ, 0, 0),)),
        Rule("kill", act, ((1, EQ, 18, 0),)),
        Rule("kill", act, ((0, EQ, 10, 0),)),
        Rule("tkill", act, ((1, EQ, 0, 0),)),
        Rule("tkill", act, ((1, EQ, 18, 0),)),
        Rule("tkill", act, ((0, EQ, 10, 0),)),
    ]


def test_compile_skips_rules_equal_to_default() -> None:
    p = seccomp.compile_profile(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},  # same as default: EPERM
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            ],
        }
    )
    assert p.rules == [Rule("rmdir", ERRNO | ENOSYS, ()), Rule("getpid", ALLOW, ())]


def test_compile_marks_notify() -> None:
    p = seccomp.compile_profile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/a.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
        }
    )
    assert p.notify


def test_load_rejects_notify_before_touching_libseccomp() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/a.sock",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    }
    with pytest.raises(SeccompError, match="SCMP_ACT_NOTIFY is not supported"):
        seccomp.load(spec)


def test_load_rejects_invalid_spec() -> None:
    with pytest.raises(SeccompError, match="defaultAction: is required"):
        seccomp.load({})


# --- libseccomp filter built (never loaded) -----------------------------------------------


@needs_libseccomp
def test_pfc_or_for_repeated_index() -> None:
    pfc = seccomp.export_pfc(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {
                    "names": ["kill"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": ENOSYS,
                    "args": [
                        {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 18, "op": "SCMP_CMP_EQ"},
                    ],
                }
            ],
        }
    )
    assert 'syscall "kill"' in pfc
    assert "$a1.lo32 == 0" in pfc
    assert "$a1.lo32 == 18" in pfc
    assert "action ERRNO(38);" in pfc
    assert "action ALLOW;" in pfc


@needs_libseccomp
def test_pfc_arches_and_unknown_names() -> None:
    pfc = seccomp.export_pfc(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": ENOSYS,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["getpid", "no_such_syscall_at_all"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},  # default: skipped
            ],
        }
    )
    assert "arch x86_64" in pfc
    assert "arch x86 " in pfc
    assert "arch x32" in pfc
    assert 'syscall "getpid"' in pfc
    assert "no_such_syscall" not in pfc
    assert "action ERRNO(38);" in pfc


@needs_libseccomp
def test_pfc_all_actions() -> None:
    calls = [
        ("getpid", "SCMP_ACT_KILL_PROCESS", "KILL_PROCESS"),
        ("getppid", "SCMP_ACT_KILL", "KILL;"),
        ("getuid", "SCMP_ACT_TRAP", "TRAP"),
        ("getgid", "SCMP_ACT_TRACE", "TRACE(1)"),
        ("geteuid", "SCMP_ACT_LOG", "LOG"),
        ("getegid", "SCMP_ACT_ERRNO", "ERRNO(1)"),
    ]
    pfc = seccomp.export_pfc(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [n], "action": a} for n, a, _ in calls],
        }
    )
    for name, _, shown in calls:
        assert f'syscall "{name}"' in pfc
        assert f"action {shown}" in pfc


@needs_libseccomp
@pytest.mark.parametrize(
    "flag",
    ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
)
def test_pfc_flags_accepted(flag: str) -> None:
    seccomp.export_pfc({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]})


@needs_libseccomp
def test_arch_unknown_to_libseccomp_is_an_error() -> None:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    if lib.seccomp_arch_resolve_name(b"m68k"):
        pytest.skip("this libseccomp knows m68k")
    with pytest.raises(SeccompError, match=r"^linux\.seccomp\.architectures: SCMP_ARCH_M68K: "):
        seccomp.export_pfc({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_M68K"]})
