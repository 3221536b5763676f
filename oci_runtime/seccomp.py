"""OCI ``linux.seccomp`` profiles: validation and loading through libseccomp.

The module is imported on every container start, so it imports nothing heavy at module
level; ctypes and libseccomp are loaded only when a filter is actually built.

Public API:

- ``validate(seccomp)``: check a ``linux.seccomp`` object, raise ``SeccompError``.
- ``load(seccomp)``: build the filter and load it into the calling process.
- ``export_pfc(seccomp)``: build the filter and return libseccomp's pseudo filter code
  without loading it (debugging, tests).
- ``compile_profile(seccomp)``: the validated profile as plain values (what ``load`` feeds
  to libseccomp), so the mapping can be inspected without libseccomp.
"""

from __future__ import annotations

import os

# Spelled out rather than imported: this module must not pull in typing at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from typing import Any

__all__ = [
    "ACTIONS",
    "ARCHITECTURES",
    "FLAGS",
    "OPERATORS",
    "CompiledProfile",
    "Rule",
    "SeccompError",
    "action_value",
    "compile_profile",
    "export_pfc",
    "load",
    "validate",
]


class SeccompError(ValueError):
    """An invalid seccomp profile, or libseccomp refused to build or load it."""


# Action base values from libseccomp's seccomp.h; ERRNO and TRACE carry 16 bits of data.
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO_BASE = 0x00050000
SCMP_ACT_TRACE_BASE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_NOTIFY = 0x7FC00000

ACTIONS: dict[str, int] = {
    # runc maps the legacy SCMP_ACT_KILL to "kill thread", as libseccomp does.
    "SCMP_ACT_KILL": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": SCMP_ACT_ERRNO_BASE,
    "SCMP_ACT_TRACE": SCMP_ACT_TRACE_BASE,
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
    "SCMP_ACT_NOTIFY": SCMP_ACT_NOTIFY,
}

# The only actions whose return data is meaningful; the spec says a runtime must fail
# when errnoRet is given for any other action.
_ACTIONS_WITH_DATA = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})

_EM_386 = 3
_EM_68K = 4
_EM_MIPS = 8
_EM_PARISC = 15
_EM_PPC = 20
_EM_PPC64 = 21
_EM_S390 = 22
_EM_ARM = 40
_EM_SH = 42
_EM_X86_64 = 62
_EM_AARCH64 = 183
_EM_RISCV = 243
_EM_LOONGARCH = 258
_A64 = 0x80000000  # __AUDIT_ARCH_64BIT
_ALE = 0x40000000  # __AUDIT_ARCH_LE
_N32 = 0x20000000  # __AUDIT_ARCH_CONVENTION_MIPS64_N32

# libseccomp's arch tokens are the kernel's AUDIT_ARCH_* values (x32 excepted: libseccomp
# drops the 64-bit bit so it can tell x32 from x86_64).
ARCHITECTURES: dict[str, int] = {
    "SCMP_ARCH_X86": _EM_386 | _ALE,
    "SCMP_ARCH_X86_64": _EM_X86_64 | _A64 | _ALE,
    "SCMP_ARCH_X32": _EM_X86_64 | _ALE,
    "SCMP_ARCH_ARM": _EM_ARM | _ALE,
    "SCMP_ARCH_AARCH64": _EM_AARCH64 | _A64 | _ALE,
    "SCMP_ARCH_LOONGARCH64": _EM_LOONGARCH | _A64 | _ALE,
    "SCMP_ARCH_M68K": _EM_68K,
    "SCMP_ARCH_MIPS": _EM_MIPS,
    "SCMP_ARCH_MIPS64": _EM_MIPS | _A64,
    "SCMP_ARCH_MIPS64N32": _EM_MIPS | _A64 | _N32,
    "SCMP_ARCH_MIPSEL": _EM_MIPS | _ALE,
    "SCMP_ARCH_MIPSEL64": _EM_MIPS | _A64 | _ALE,
    "SCMP_ARCH_MIPSEL64N32": _EM_MIPS | _A64 | _ALE | _N32,
    "SCMP_ARCH_PPC": _EM_PPC,
    "SCMP_ARCH_PPC64": _EM_PPC64 | _A64,
    "SCMP_ARCH_PPC64LE": _EM_PPC64 | _A64 | _ALE,
    "SCMP_ARCH_S390": _EM_S390,
    "SCMP_ARCH_S390X": _EM_S390 | _A64,
    "SCMP_ARCH_SH": _EM_SH | _ALE,
    "SCMP_ARCH_SHEB": _EM_SH,
    "SCMP_ARCH_PARISC": _EM_PARISC,
    "SCMP_ARCH_PARISC64": _EM_PARISC | _A64,
    "SCMP_ARCH_RISCV64": _EM_RISCV | _A64 | _ALE,
}

# enum scmp_compare
OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr
_FLTATR_CTL_NNP = 3
_FLTATR_CTL_TSYNC = 4
_FLTATR_CTL_LOG = 6
_FLTATR_CTL_SSB = 7
_FLTATR_API_SYSRAWRC = 9

# Spec flag -> libseccomp filter attribute. WAIT_KILLABLE_RECV only changes how a
# notifying filter waits for its agent; with no notify support here it has nothing to do.
FLAGS: dict[str, int | None] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _FLTATR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _FLTATR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": None,
}

_NR_SCMP_ERROR = -1
_EPERM = 1
_MAX_ARGS = 6
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_ROOT = "linux.seccomp"


def action_value(name: str, errno_ret: int | None = None) -> int:
    """The libseccomp action value for a spec action name (data defaults to EPERM)."""
    try:
        base = ACTIONS[name]
    except KeyError:
        raise SeccompError(f"unknown action {_show(name)}") from None
    if name in _ACTIONS_WITH_DATA:
        return base | ((_EPERM if errno_ret is None else errno_ret) & _U16)
    return base


class Rule:
    """One libseccomp rule: ``args`` are (index, op, datum_a, datum_b), ANDed together."""

    __slots__ = ("action", "args", "name")

    def __init__(self, name: str, action: int, args: tuple[tuple[int, int, int, int], ...]):
        self.name = name
        self.action = action
        self.args = args

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rule):
            return NotImplemented
        return (self.name, self.action, self.args) == (other.name, other.action, other.args)

    def __hash__(self) -> int:
        return hash((self.name, self.action, self.args))

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {self.action:#x}, {self.args!r})"


class CompiledProfile:
    """A validated profile reduced to the values handed to libseccomp."""

    __slots__ = ("architectures", "attributes", "default_action", "notify", "rules")

    def __init__(
        self,
        default_action: int,
        architectures: list[int],
        attributes: list[tuple[str, int]],
        rules: list[Rule],
        notify: bool,
    ):
        self.default_action = default_action
        self.architectures = architectures
        self.attributes = attributes
        self.rules = rules
        self.notify = notify


# ---------------------------------------------------------------------------------------
# validation


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _err(path: str, message: str) -> SeccompError:
    return SeccompError(f"{path}: {message}")


def _want(path: str, value: Any, kind: type, kind_name: str) -> Any:
    # bool is an int subclass in Python but never a number in JSON.
    if isinstance(value, bool) and kind is not bool:
        raise _err(path, f"must be {kind_name}, not boolean")
    if not isinstance(value, kind):
        raise _err(path, f"must be {kind_name}, not {_type_name(value)}")
    return value


def _uint(path: str, value: Any, maximum: int) -> int:
    _want(path, value, int, "an integer")
    if value < 0 or value > maximum:
        raise _err(path, f"{value} is out of range 0..{maximum}")
    return value


def _array(path: str, value: Any) -> list[Any]:
    # Go runtimes decode null as an absent array; accept it the same way.
    if value is None:
        return []
    return _want(path, value, list, "an array")


def _action(path: str, value: Any) -> str:
    _want(path, value, str, "a string")
    if value not in ACTIONS:
        raise _err(path, f"unknown action {_show(value)}")
    return value


def _errno_ret(path: str, value: Any, action: str, action_path: str) -> int | None:
    if value is None:
        return None
    _uint(path, value, _U32)
    if action not in _ACTIONS_WITH_DATA:
        raise _err(path, f"not supported with {action_path} {_show(action)}")
    # ERRNO/TRACE data is 16 bits wide; larger values would be silently truncated.
    if value > _U16:
        raise _err(path, f"{value} is out of range 0..{_U16}")
    return value


def compile_profile(seccomp: dict) -> CompiledProfile:
    """Validate ``seccomp`` and reduce it to libseccomp values; raise ``SeccompError``."""
    root = _ROOT
    _want(root, seccomp, dict, "an object")

    if "defaultAction" not in seccomp or seccomp["defaultAction"] is None:
        raise _err(f"{root}.defaultAction", "is required")
    default_name = _action(f"{root}.defaultAction", seccomp["defaultAction"])
    default_errno = _errno_ret(
        f"{root}.defaultErrnoRet", seccomp.get("defaultErrnoRet"), default_name, "defaultAction"
    )
    if default_name == "SCMP_ACT_NOTIFY":
        # The runtime itself still has to run after the filter is loaded (finish setup,
        # exec), which it cannot do if every syscall waits for an agent.
        raise _err(f"{root}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    default_action = action_value(default_name, default_errno)

    architectures: list[int] = []
    for i, arch in enumerate(_array(f"{root}.architectures", seccomp.get("architectures"))):
        path = f"{root}.architectures[{i}]"
        _want(path, arch, str, "a string")
        if arch not in ARCHITECTURES:
            raise _err(path, f"unknown architecture {_show(arch)}")
        token = ARCHITECTURES[arch]
        if token not in architectures:
            architectures.append(token)

    attributes: list[tuple[str, int]] = []
    for i, flag in enumerate(_array(f"{root}.flags", seccomp.get("flags"))):
        path = f"{root}.flags[{i}]"
        _want(path, flag, str, "a string")
        if flag not in FLAGS:
            raise _err(path, f"unknown flag {_show(flag)}")
        attr = FLAGS[flag]
        if attr is not None and (flag, attr) not in attributes:
            attributes.append((flag, attr))

    listener_path = seccomp.get("listenerPath")
    if listener_path is not None:
        _want(f"{root}.listenerPath", listener_path, str, "a string")
    metadata = seccomp.get("listenerMetadata")
    if metadata is not None:
        _want(f"{root}.listenerMetadata", metadata, str, "a string")
        if metadata and not listener_path:
            raise _err(f"{root}.listenerMetadata", "requires listenerPath")

    rules: list[Rule] = []
    notify = False
    for i, call in enumerate(_array(f"{root}.syscalls", seccomp.get("syscalls"))):
        cpath = f"{root}.syscalls[{i}]"
        _want(cpath, call, dict, "an object")

        if call.get("names") is None:
            raise _err(f"{cpath}.names", "is required")
        names = _want(f"{cpath}.names", call["names"], list, "an array")
        if not names:
            raise _err(f"{cpath}.names", "must contain at least one name")
        for j, name in enumerate(names):
            _want(f"{cpath}.names[{j}]", name, str, "a string")
            if not name:
                raise _err(f"{cpath}.names[{j}]", "must not be empty")

        if call.get("action") is None:
            raise _err(f"{cpath}.action", "is required")
        action_name = _action(f"{cpath}.action", call["action"])
        errno_ret = _errno_ret(f"{cpath}.errnoRet", call.get("errnoRet"), action_name, "action")
        if action_name == "SCMP_ACT_NOTIFY":
            if not listener_path:
                raise _err(f"{cpath}.action", "SCMP_ACT_NOTIFY requires linux.seccomp.listenerPath")
            if "write" in names:
                # The runtime writes to its sync pipe after loading the filter.
                raise _err(f"{cpath}.action", "SCMP_ACT_NOTIFY cannot be used for write")
            notify = True
        action = action_value(action_name, errno_ret)

        conditions: list[tuple[int, int, int, int]] = []
        for k, arg in enumerate(_array(f"{cpath}.args", call.get("args"))):
            apath = f"{cpath}.args[{k}]"
            _want(apath, arg, dict, "an object")
            for key in ("index", "value", "op"):
                if arg.get(key) is None:
                    raise _err(f"{apath}.{key}", "is required")
            index = _uint(f"{apath}.index", arg["index"], _MAX_ARGS - 1)
            value = _uint(f"{apath}.value", arg["value"], _U64)
            value_two = arg.get("valueTwo")
            value_two = 0 if value_two is None else _uint(f"{apath}.valueTwo", value_two, _U64)
            op = arg["op"]
            _want(f"{apath}.op", op, str, "a string")
            if op not in OPERATORS:
                raise _err(f"{apath}.op", f"unknown operator {_show(op)}")
            conditions.append((index, OPERATORS[op], value, value_two))

        # libseccomp refuses (EACCES) a rule whose action is the filter's default; such a
        # rule changes nothing, so it is dropped, as runc does.
        if action == default_action:
            continue

        # libseccomp ANDs the conditions of a rule and rejects (EINVAL) two conditions on
        # one argument. Profiles list several values for one argument to mean "any of
        # them", so, as runc does, every condition then becomes a rule of its own (OR).
        indexes = [c[0] for c in conditions]
        if len(set(indexes)) != len(indexes):
            groups = [(c,) for c in conditions]
        else:
            groups = [tuple(conditions)]
        for name in names:
            for group in groups:
                rules.append(Rule(name, action, group))

    return CompiledProfile(default_action, architectures, attributes, rules, notify)


def validate(seccomp: dict) -> None:
    """Check an OCI ``linux.seccomp`` object; raise ``SeccompError`` naming the bad field."""
    compile_profile(seccomp)


# ---------------------------------------------------------------------------------------
# libseccomp


class _Lib:
    """The few libseccomp entry points used here, with their C signatures."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        try:
            # Loading by soname directly: ctypes.util.find_library runs ldconfig in a
            # subprocess, which is slow and unwelcome in a half-set-up container process.
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError:
            import ctypes.util

            found = ctypes.util.find_library("seccomp")
            if not found:
                raise SeccompError(f"{_ROOT}: libseccomp is not installed") from None
            try:
                lib = ctypes.CDLL(found)
            except OSError as e:
                raise SeccompError(f"{_ROOT}: cannot load {found}: {e}") from None

        class ArgCmp(ctypes.Structure):
            _fields_ = [
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            ]

        self.ArgCmp = ArgCmp
        ctx = ctypes.c_void_p
        u32 = ctypes.c_uint32
        c_int = ctypes.c_int

        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            return f

        self.init = fn("seccomp_init", ctx, u32)
        self.release = fn("seccomp_release", None, ctx)
        self.arch_add = fn("seccomp_arch_add", c_int, ctx, u32)
        self.attr_set = fn("seccomp_attr_set", c_int, ctx, c_int, u32)
        self.resolve_name = fn("seccomp_syscall_resolve_name", c_int, ctypes.c_char_p)
        self.rule_add_array = fn(
            "seccomp_rule_add_array", c_int, ctx, u32, c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)
        )
        self.load = fn("seccomp_load", c_int, ctx)
        self.export_pfc = fn("seccomp_export_pfc", c_int, ctx, c_int)


_lib_cache: _Lib | None = None


def _lib() -> _Lib:
    global _lib_cache
    if _lib_cache is None:
        _lib_cache = _Lib()
    return _lib_cache


def preload() -> None:
    """Open libseccomp now. A process that will change its root (container init) or join a
    container's mount namespace must do this first: afterwards the library is not there."""
    _lib()


def _strerror(rc: int) -> str:
    # libseccomp maps every internal failure to -EFAULT, whose strerror would mislead.
    if rc == -14:
        return "internal libseccomp error"
    return os.strerror(-rc)


def _arch_name(token: int) -> str:
    for name, value in ARCHITECTURES.items():
        if value == token:
            return name
    return hex(token)


def _build(lib: _Lib, profile: CompiledProfile) -> ctypes.c_void_p:
    """A filter context holding ``profile``; the caller releases it."""
    ctx = lib.init(profile.default_action)
    if not ctx:
        raise SeccompError(
            f"{_ROOT}.defaultAction: seccomp_init failed for action {profile.default_action:#x}"
        )
    try:
        # The runtime sets no_new_privs itself, and only when process.noNewPrivileges asks
        # for it; without NNP the kernel demands CAP_SYS_ADMIN, which the runtime has here.
        rc = lib.attr_set(ctx, _FLTATR_CTL_NNP, 0)
        if rc < 0:
            raise SeccompError(f"{_ROOT}: cannot clear the NNP attribute: {_strerror(rc)}")
        # Ask for the kernel's own errno from seccomp_load instead of a blanket ECANCELED;
        # best effort, older libseccomp lacks the attribute.
        lib.attr_set(ctx, _FLTATR_API_SYSRAWRC, 1)

        for flag, attr in profile.attributes:
            rc = lib.attr_set(ctx, attr, 1)
            if rc < 0:
                raise SeccompError(f"{_ROOT}.flags: {flag}: {_strerror(rc)}")

        for token in profile.architectures:
            rc = lib.arch_add(ctx, token)
            # EEXIST: the native arch is in every new filter already.
            if rc < 0 and rc != -17:
                hint = " (not supported by this libseccomp)" if rc == -22 else ""
                raise SeccompError(
                    f"{_ROOT}.architectures: {_arch_name(token)}: {_strerror(rc)}{hint}"
                )

        numbers: dict[str, int] = {}
        for rule in profile.rules:
            nr = numbers.get(rule.name)
            if nr is None:
                nr = numbers[rule.name] = lib.resolve_name(rule.name.encode())
            # Profiles name syscalls of many arches and kernels; runc skips unknown ones.
            if nr == _NR_SCMP_ERROR:
                continue
            count = len(rule.args)
            array = (lib.ArgCmp * count)(*(lib.ArgCmp(*a) for a in rule.args)) if count else None
            rc = lib.rule_add_array(ctx, rule.action, nr, count, array)
            if rc < 0:
                raise SeccompError(
                    f"{_ROOT}.syscalls: adding rule for syscall {rule.name}: {_strerror(rc)}"
                )
    except BaseException:
        lib.release(ctx)
        raise
    return ctx


def load(seccomp: dict) -> None:
    """Build the filter for ``seccomp`` and load it into the calling process.

    Validates first, so nothing is loaded for an invalid profile. ``SCMP_ACT_NOTIFY`` is
    rejected: handing the listener fd to a seccomp agent is not implemented.
    """
    profile = compile_profile(seccomp)
    if profile.notify:
        raise SeccompError(f"{_ROOT}.syscalls: SCMP_ACT_NOTIFY is not supported by pyrunc")
    lib = _lib()
    ctx = _build(lib, profile)
    try:
        rc = lib.load(ctx)
        if rc < 0:
            raise SeccompError(f"{_ROOT}: seccomp_load: {_strerror(rc)}")
    finally:
        lib.release(ctx)


def export_pfc(seccomp: dict) -> str:
    """libseccomp's pseudo filter code for ``seccomp``, built but never loaded."""
    profile = compile_profile(seccomp)
    lib = _lib()
    ctx = _build(lib, profile)
    fd = os.memfd_create("seccomp-pfc")
    try:
        rc = lib.export_pfc(ctx, fd)
        if rc < 0:
            raise SeccompError(f"{_ROOT}: seccomp_export_pfc: {_strerror(rc)}")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)
        lib.release(ctx)
