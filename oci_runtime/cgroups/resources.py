"""The OCI runtime-spec `linux.resources` object as frozen dataclasses.

`None` means "not given" everywhere, so that `Resources.merge` (what `pyrunc update` needs) can
tell "keep the old value" apart from an explicit zero. Lists are stored as tuples.

Decoding is strict about JSON types (a bool is not an integer, a float is not an integer) and
ranges (the spec's int64/uint64/uint32/uint16), and every error is one line naming the field:
``linux.resources.memory.limit: expected integer, got str``. Unknown keys are ignored, as the
runtime-spec asks for forward compatibility; `rdma` and `network` are accepted (network is
validated) but no cgroup implementation here applies them.

Each field carries its JSON name and kind in `dataclasses.field(metadata=...)`, so one generic
decoder and encoder serve every object and cannot drift apart from the field list.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

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

_PAGE_SIZE = re.compile(r"[1-9][0-9]*[KMGTP]?B")
_DEVICE_TYPES = frozenset({"a", "b", "c", "u", "p"})

Check = Callable[[Any], str | None]


def _meta(
    json: str,
    kind: Any,
    *,
    bounds: tuple[int, int] | None = None,
    check: Check | None = None,
    required: bool = False,
) -> dict[str, Any]:
    """How a field is spelled and checked in JSON; `kind` is "int", "bool", "str", "strmap",
    a dataclass, or ("list", dataclass)."""
    return {"json": json, "kind": kind, "bounds": bounds, "check": check, "required": required}


def _page_size_check(v: str) -> str | None:
    if _PAGE_SIZE.fullmatch(v) is None:
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


@dataclass(frozen=True, slots=True)
class Memory:
    limit: int | None = field(default=None, metadata=_meta("limit", "int", bounds=INT64))
    reservation: int | None = field(
        default=None, metadata=_meta("reservation", "int", bounds=INT64)
    )
    swap: int | None = field(default=None, metadata=_meta("swap", "int", bounds=INT64))
    kernel: int | None = field(default=None, metadata=_meta("kernel", "int", bounds=INT64))
    kernel_tcp: int | None = field(default=None, metadata=_meta("kernelTCP", "int", bounds=INT64))
    swappiness: int | None = field(
        default=None, metadata=_meta("swappiness", "int", bounds=UINT64, check=_swappiness_check)
    )
    disable_oom_killer: bool | None = field(
        default=None, metadata=_meta("disableOOMKiller", "bool")
    )
    use_hierarchy: bool | None = field(default=None, metadata=_meta("useHierarchy", "bool"))
    check_before_update: bool | None = field(
        default=None, metadata=_meta("checkBeforeUpdate", "bool")
    )


@dataclass(frozen=True, slots=True)
class CPU:
    shares: int | None = field(default=None, metadata=_meta("shares", "int", bounds=UINT64))
    quota: int | None = field(default=None, metadata=_meta("quota", "int", bounds=INT64))
    burst: int | None = field(default=None, metadata=_meta("burst", "int", bounds=UINT64))
    period: int | None = field(default=None, metadata=_meta("period", "int", bounds=UINT64))
    realtime_runtime: int | None = field(
        default=None, metadata=_meta("realtimeRuntime", "int", bounds=INT64)
    )
    realtime_period: int | None = field(
        default=None, metadata=_meta("realtimePeriod", "int", bounds=UINT64)
    )
    cpus: str | None = field(default=None, metadata=_meta("cpus", "str"))
    mems: str | None = field(default=None, metadata=_meta("mems", "str"))
    idle: int | None = field(default=None, metadata=_meta("idle", "int", bounds=INT64))


@dataclass(frozen=True, slots=True)
class Pids:
    limit: int | None = field(default=None, metadata=_meta("limit", "int", bounds=INT64))


@dataclass(frozen=True, slots=True)
class WeightDevice:
    major: int | None = field(
        default=None, metadata=_meta("major", "int", bounds=INT64, required=True)
    )
    minor: int | None = field(
        default=None, metadata=_meta("minor", "int", bounds=INT64, required=True)
    )
    weight: int | None = field(default=None, metadata=_meta("weight", "int", bounds=UINT16))
    leaf_weight: int | None = field(
        default=None, metadata=_meta("leafWeight", "int", bounds=UINT16)
    )


@dataclass(frozen=True, slots=True)
class ThrottleDevice:
    major: int | None = field(
        default=None, metadata=_meta("major", "int", bounds=INT64, required=True)
    )
    minor: int | None = field(
        default=None, metadata=_meta("minor", "int", bounds=INT64, required=True)
    )
    rate: int | None = field(
        default=None, metadata=_meta("rate", "int", bounds=UINT64, required=True)
    )


@dataclass(frozen=True, slots=True)
class BlockIO:
    weight: int | None = field(default=None, metadata=_meta("weight", "int", bounds=UINT16))
    leaf_weight: int | None = field(
        default=None, metadata=_meta("leafWeight", "int", bounds=UINT16)
    )
    weight_device: tuple[WeightDevice, ...] | None = field(
        default=None, metadata=_meta("weightDevice", ("list", WeightDevice))
    )
    throttle_read_bps_device: tuple[ThrottleDevice, ...] | None = field(
        default=None, metadata=_meta("throttleReadBpsDevice", ("list", ThrottleDevice))
    )
    throttle_write_bps_device: tuple[ThrottleDevice, ...] | None = field(
        default=None, metadata=_meta("throttleWriteBpsDevice", ("list", ThrottleDevice))
    )
    throttle_read_iops_device: tuple[ThrottleDevice, ...] | None = field(
        default=None, metadata=_meta("throttleReadIOPSDevice", ("list", ThrottleDevice))
    )
    throttle_write_iops_device: tuple[ThrottleDevice, ...] | None = field(
        default=None, metadata=_meta("throttleWriteIOPSDevice", ("list", ThrottleDevice))
    )


@dataclass(frozen=True, slots=True)
class HugepageLimit:
    page_size: str | None = field(
        default=None, metadata=_meta("pageSize", "str", check=_page_size_check, required=True)
    )
    limit: int | None = field(
        default=None, metadata=_meta("limit", "int", bounds=UINT64, required=True)
    )


@dataclass(frozen=True, slots=True)
class DeviceRule:
    allow: bool | None = field(default=None, metadata=_meta("allow", "bool", required=True))
    type: str | None = field(default=None, metadata=_meta("type", "str", check=_device_type_check))
    major: int | None = field(default=None, metadata=_meta("major", "int", bounds=INT64))
    minor: int | None = field(default=None, metadata=_meta("minor", "int", bounds=INT64))
    access: str | None = field(default=None, metadata=_meta("access", "str", check=_access_check))


@dataclass(frozen=True, slots=True)
class NetworkPriority:
    name: str | None = field(default=None, metadata=_meta("name", "str", required=True))
    priority: int | None = field(
        default=None, metadata=_meta("priority", "int", bounds=UINT32, required=True)
    )


@dataclass(frozen=True, slots=True)
class Network:
    class_id: int | None = field(default=None, metadata=_meta("classID", "int", bounds=UINT32))
    priorities: tuple[NetworkPriority, ...] | None = field(
        default=None, metadata=_meta("priorities", ("list", NetworkPriority))
    )


@dataclass(frozen=True, slots=True)
class Resources:
    memory: Memory | None = field(default=None, metadata=_meta("memory", Memory))
    cpu: CPU | None = field(default=None, metadata=_meta("cpu", CPU))
    pids: Pids | None = field(default=None, metadata=_meta("pids", Pids))
    block_io: BlockIO | None = field(default=None, metadata=_meta("blockIO", BlockIO))
    hugepage_limits: tuple[HugepageLimit, ...] | None = field(
        default=None, metadata=_meta("hugepageLimits", ("list", HugepageLimit))
    )
    devices: tuple[DeviceRule, ...] | None = field(
        default=None, metadata=_meta("devices", ("list", DeviceRule))
    )
    network: Network | None = field(default=None, metadata=_meta("network", Network))
    # A dict cannot be hashed; leaving it out of the hash keeps Resources usable as a value.
    unified: dict[str, str] | None = field(
        default=None, hash=False, metadata=_meta("unified", "strmap", check=_unified_key_check)
    )

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "linux.resources") -> Resources:
        """Decode and validate; `where` prefixes error messages (the JSON path of `d`)."""
        return _decode(cls, d, where)

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form, with fields that were not given left out."""
        return _encode(self)

    def merge(self, update: Resources) -> Resources:
        """`update` laid over `self`: what it leaves out keeps the old value.

        Nested objects merge field by field, `unified` key by key; lists (devices,
        hugepage limits, per-device rules) are replaced whole, since an entry cannot be
        matched to an old one reliably."""
        return _merge(self, update)

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


T = TypeVar("T")


def _type_name(v: Any) -> str:
    return type(v).__name__


def _decode(cls: type[T], d: Any, where: str) -> T:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected object, got {_type_name(d)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        meta = f.metadata
        key = meta["json"]
        path = f"{where}.{key}"
        raw = d.get(key)
        if raw is None:
            # JSON null is treated like an absent key: Go's encoder writes null for nil pointers.
            if meta["required"]:
                raise ValueError(f"{path}: required")
            continue
        values[f.name] = _decode_value(meta, raw, path)
    return cls(**values)


def _decode_value(meta: Mapping[str, Any], raw: Any, path: str) -> Any:
    kind = meta["kind"]
    check: Check | None = meta["check"]
    if kind == "int":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError(f"{path}: expected integer, got {_type_name(raw)}")
        lo, hi = meta["bounds"]
        if not lo <= raw <= hi:
            raise ValueError(f"{path}: {raw} is out of range {lo}..{hi}")
        value: Any = raw
    elif kind == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"{path}: expected boolean, got {_type_name(raw)}")
        value = raw
    elif kind == "str":
        if not isinstance(raw, str):
            raise ValueError(f"{path}: expected string, got {_type_name(raw)}")
        value = raw
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
        return tuple(_decode(kind[1], item, f"{path}[{i}]") for i, item in enumerate(raw))
    else:
        return _decode(kind, raw, path)
    if check is not None and (msg := check(value)) is not None:
        raise ValueError(f"{path}: {msg}")
    return value


def _encode(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        kind = f.metadata["kind"]
        if isinstance(kind, tuple):
            out[f.metadata["json"]] = [_encode(item) for item in value]
        elif dataclasses.is_dataclass(kind):
            out[f.metadata["json"]] = _encode(value)
        elif kind == "strmap":
            out[f.metadata["json"]] = dict(value)
        else:
            out[f.metadata["json"]] = value
    return out


def _merge(old: T, new: T) -> T:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(old):  # type: ignore[arg-type]
        mine = getattr(old, f.name)
        theirs = getattr(new, f.name)
        if theirs is None:
            continue
        kind = f.metadata["kind"]
        if mine is not None and dataclasses.is_dataclass(kind):
            changes[f.name] = _merge(mine, theirs)
        elif mine is not None and kind == "strmap":
            changes[f.name] = {**mine, **theirs}
        else:
            changes[f.name] = theirs
    return dataclasses.replace(old, **changes)  # type: ignore[type-var]
