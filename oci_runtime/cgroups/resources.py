"""The OCI runtime-spec `linux.resources` object as immutable NamedTuples.

`None` means "not given" everywhere, so that `Resources.merge` (what `pyrunc update` needs) can
tell "keep the old value" apart from an explicit zero. Lists are stored as tuples.

Decoding is strict about JSON types (a bool is not an integer, a float is not an integer) and
ranges (the spec's int64/uint64/uint32/uint16), and every error is one line naming the field:
``linux.resources.memory.limit: expected integer, got str``. Unknown keys are ignored, as the
runtime-spec asks for forward compatibility; `rdma` and `network` are accepted (network is
validated) but no cgroup implementation here applies them.

How each field is spelled and checked in JSON is in one table, `_FIELDS`, so one generic
decoder and encoder serve every object; a unit test keeps the table in step with the fields.

NamedTuples rather than dataclasses because pyrunc is a fresh interpreter per command:
importing dataclasses (and inspect with it) and building a frozen dataclass cost several times
more than the decoding itself.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would turn every string
# annotation into a ForwardRef and compile it, which doubles the cost of defining the classes.

import re
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "CPU",
    "BlockIO",
    "DeviceRule",
    "HugepageLimit",
    "Memory",
    "Network",
    "NetworkPriority",
    "Pids",
    "Resources",
    "ThrottleDevice",
    "WeightDevice",
]

INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
UINT32 = (0, 2**32 - 1)
UINT16 = (0, 2**16 - 1)

_DEVICE_TYPES = frozenset({"a", "b", "c", "u", "p"})

Check = Callable[[Any], str | None]


class Memory(NamedTuple):
    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None
    kernel: int | None = None
    kernel_tcp: int | None = None
    swappiness: int | None = None
    disable_oom_killer: bool | None = None
    use_hierarchy: bool | None = None
    check_before_update: bool | None = None


class CPU(NamedTuple):
    shares: int | None = None
    quota: int | None = None
    burst: int | None = None
    period: int | None = None
    realtime_runtime: int | None = None
    realtime_period: int | None = None
    cpus: str | None = None
    mems: str | None = None
    idle: int | None = None


class Pids(NamedTuple):
    limit: int | None = None


class WeightDevice(NamedTuple):
    major: int | None = None
    minor: int | None = None
    weight: int | None = None
    leaf_weight: int | None = None


class ThrottleDevice(NamedTuple):
    major: int | None = None
    minor: int | None = None
    rate: int | None = None


class BlockIO(NamedTuple):
    weight: int | None = None
    leaf_weight: int | None = None
    weight_device: tuple[WeightDevice, ...] | None = None
    throttle_read_bps_device: tuple[ThrottleDevice, ...] | None = None
    throttle_write_bps_device: tuple[ThrottleDevice, ...] | None = None
    throttle_read_iops_device: tuple[ThrottleDevice, ...] | None = None
    throttle_write_iops_device: tuple[ThrottleDevice, ...] | None = None


class HugepageLimit(NamedTuple):
    page_size: str | None = None
    limit: int | None = None


class DeviceRule(NamedTuple):
    allow: bool | None = None
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    access: str | None = None


class NetworkPriority(NamedTuple):
    name: str | None = None
    priority: int | None = None


class Network(NamedTuple):
    class_id: int | None = None
    priorities: tuple[NetworkPriority, ...] | None = None


class Resources(NamedTuple):
    memory: Memory | None = None
    cpu: CPU | None = None
    pids: Pids | None = None
    block_io: BlockIO | None = None
    hugepage_limits: tuple[HugepageLimit, ...] | None = None
    devices: tuple[DeviceRule, ...] | None = None
    network: Network | None = None
    unified: dict[str, str] | None = None

    def __hash__(self) -> int:
        # A dict cannot be hashed; leaving `unified` out keeps Resources usable as a value
        # (equal values still hash alike: they have equal fields without it too).
        return hash(
            (
                self.memory,
                self.cpu,
                self.pids,
                self.block_io,
                self.hugepage_limits,
                self.devices,
                self.network,
            )
        )

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "linux.resources") -> "Resources":
        """Decode and validate; `where` prefixes error messages (the JSON path of `d`)."""
        return _decode(cls, d, where)

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form, with fields that were not given left out."""
        return _encode(self)

    def merge(self, update: "Resources") -> "Resources":
        """`update` laid over `self`: what it leaves out keeps the old value.

        Nested objects merge field by field, `unified` key by key; lists (devices,
        hugepage limits, per-device rules) are replaced whole, since an entry cannot be
        matched to an old one reliably."""
        return _merge(self, update)

    def is_empty(self) -> bool:
        return all(v is None for v in self)


# -- the JSON side of every field ------------------------------------------------------------


def _page_size_check(v: str) -> str | None:
    # Compiled on first use (re caches it), not at import: most specs set no hugepage limits.
    if re.fullmatch(r"[1-9][0-9]*[KMGTP]?B", v) is None:
        return f'expected a page size such as "2MB" or "1GB", got {v!r}'
    return None


def _device_type_check(v: str) -> str | None:
    if v not in _DEVICE_TYPES:
        return f"expected one of a, b, c, u, p, got {v!r}"
    return None


def _access_check(v: str) -> str | None:
    if not set(v) <= set("rwm"):
        return f"expected a combination of r, w, m, got {v!r}"
    return None


def _swappiness_check(v: int) -> str | None:
    # The kernel takes 0..100 and runc rejects the rest up front; so do we, with the path.
    if v > 100:
        return f"expected 0..100, got {v}"
    return None


def _unified_key_check(v: str) -> str | None:
    # Keys become file names inside the container's cgroup: never let one climb out of it.
    if not v or "/" in v or v.startswith(".") or "\0" in v:
        return f"invalid cgroup file name {v!r}"
    return None


class _F:
    """How a field is spelled and checked in JSON; `kind` is "int", "bool", "str", "strmap",
    a NamedTuple class, or ("list", NamedTuple class)."""

    __slots__ = ("bounds", "check", "json", "kind", "required")

    def __init__(
        self,
        json: str,
        kind: Any,
        bounds: tuple[int, int] | None = None,
        *,
        check: Check | None = None,
        required: bool = False,
    ) -> None:
        self.json = json
        self.kind = kind
        self.bounds = bounds
        self.check = check
        self.required = required


#: class → {field name: its JSON form}, in field order.
_FIELDS: dict[type, dict[str, _F]] = {
    Memory: {
        "limit": _F("limit", "int", INT64),
        "reservation": _F("reservation", "int", INT64),
        "swap": _F("swap", "int", INT64),
        "kernel": _F("kernel", "int", INT64),
        "kernel_tcp": _F("kernelTCP", "int", INT64),
        "swappiness": _F("swappiness", "int", UINT64, check=_swappiness_check),
        "disable_oom_killer": _F("disableOOMKiller", "bool"),
        "use_hierarchy": _F("useHierarchy", "bool"),
        "check_before_update": _F("checkBeforeUpdate", "bool"),
    },
    CPU: {
        "shares": _F("shares", "int", UINT64),
        "quota": _F("quota", "int", INT64),
        "burst": _F("burst", "int", UINT64),
        "period": _F("period", "int", UINT64),
        "realtime_runtime": _F("realtimeRuntime", "int", INT64),
        "realtime_period": _F("realtimePeriod", "int", UINT64),
        "cpus": _F("cpus", "str"),
        "mems": _F("mems", "str"),
        "idle": _F("idle", "int", INT64),
    },
    Pids: {
        "limit": _F("limit", "int", INT64),
    },
    WeightDevice: {
        "major": _F("major", "int", INT64, required=True),
        "minor": _F("minor", "int", INT64, required=True),
        "weight": _F("weight", "int", UINT16),
        "leaf_weight": _F("leafWeight", "int", UINT16),
    },
    ThrottleDevice: {
        "major": _F("major", "int", INT64, required=True),
        "minor": _F("minor", "int", INT64, required=True),
        "rate": _F("rate", "int", UINT64, required=True),
    },
    BlockIO: {
        "weight": _F("weight", "int", UINT16),
        "leaf_weight": _F("leafWeight", "int", UINT16),
        "weight_device": _F("weightDevice", ("list", WeightDevice)),
        "throttle_read_bps_device": _F("throttleReadBpsDevice", ("list", ThrottleDevice)),
        "throttle_write_bps_device": _F("throttleWriteBpsDevice", ("list", ThrottleDevice)),
        "throttle_read_iops_device": _F("throttleReadIOPSDevice", ("list", ThrottleDevice)),
        "throttle_write_iops_device": _F("throttleWriteIOPSDevice", ("list", ThrottleDevice)),
    },
    HugepageLimit: {
        "page_size": _F("pageSize", "str", check=_page_size_check, required=True),
        "limit": _F("limit", "int", UINT64, required=True),
    },
    DeviceRule: {
        "allow": _F("allow", "bool", required=True),
        "type": _F("type", "str", check=_device_type_check),
        "major": _F("major", "int", INT64),
        "minor": _F("minor", "int", INT64),
        "access": _F("access", "str", check=_access_check),
    },
    NetworkPriority: {
        "name": _F("name", "str", required=True),
        "priority": _F("priority", "int", UINT32, required=True),
    },
    Network: {
        "class_id": _F("classID", "int", UINT32),
        "priorities": _F("priorities", ("list", NetworkPriority)),
    },
    Resources: {
        "memory": _F("memory", Memory),
        "cpu": _F("cpu", CPU),
        "pids": _F("pids", Pids),
        "block_io": _F("blockIO", BlockIO),
        "hugepage_limits": _F("hugepageLimits", ("list", HugepageLimit)),
        "devices": _F("devices", ("list", DeviceRule)),
        "network": _F("network", Network),
        "unified": _F("unified", "strmap", check=_unified_key_check),
    },
}

T = TypeVar("T")


def _type_name(v: Any) -> str:
    return type(v).__name__


def _decode(cls: type[T], d: Any, where: str) -> T:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected object, got {_type_name(d)}")
    values: dict[str, Any] = {}
    for name, f in _FIELDS[cls].items():
        raw = d.get(f.json)
        if raw is None:
            # JSON null is treated like an absent key: Go's encoder writes null for nil pointers.
            if f.required:
                raise ValueError(f"{where}.{f.json}: required")
            continue
        values[name] = _decode_value(f, raw, f"{where}.{f.json}")
    return cls(**values)


def _decode_value(f: _F, raw: Any, path: str) -> Any:
    kind = f.kind
    check = f.check
    if kind == "int":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError(f"{path}: expected integer, got {_type_name(raw)}")
        lo, hi = f.bounds  # type: ignore[misc]
        if not lo <= raw <= hi:
            raise ValueError(f"{path}: {raw} is out of range {lo}..{hi}")
    elif kind == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"{path}: expected boolean, got {_type_name(raw)}")
    elif kind == "str":
        if not isinstance(raw, str):
            raise ValueError(f"{path}: expected string, got {_type_name(raw)}")
    elif kind == "strmap":
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected object, got {_type_name(raw)}")
        for k, v in raw.items():
            if check is not None and (msg := check(k)) is not None:
                raise ValueError(f"{path}: {msg}")
            if not isinstance(v, str):
                raise ValueError(f"{path}.{k}: expected string, got {_type_name(v)}")
        return dict(raw)
    elif isinstance(kind, tuple):
        if not isinstance(raw, list):
            raise ValueError(f"{path}: expected array, got {_type_name(raw)}")
        item_cls = kind[1]
        return tuple(_decode(item_cls, item, f"{path}[{i}]") for i, item in enumerate(raw))
    else:
        return _decode(kind, raw, path)
    if check is not None and (msg := check(raw)) is not None:
        raise ValueError(f"{path}: {msg}")
    return raw


def _encode(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in _FIELDS[type(obj)].items():
        value = getattr(obj, name)
        if value is None:
            continue
        kind = f.kind
        if isinstance(kind, tuple):
            out[f.json] = [_encode(item) for item in value]
        elif isinstance(kind, type):
            out[f.json] = _encode(value)
        elif kind == "strmap":
            out[f.json] = dict(value)
        else:
            out[f.json] = value
    return out


def _merge(old: Any, new: Any) -> Any:
    changes: dict[str, Any] = {}
    for name, f in _FIELDS[type(old)].items():
        theirs = getattr(new, name)
        if theirs is None:
            continue
        mine = getattr(old, name)
        if mine is not None and isinstance(f.kind, type):
            changes[name] = _merge(mine, theirs)
        elif mine is not None and f.kind == "strmap":
            changes[name] = {**mine, **theirs}
        else:
            changes[name] = theirs
    return old._replace(**changes)
