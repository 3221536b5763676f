"""cgroup v2 (unified hosts): one directory in one tree.

`resource_files` translates `Resources` into {file name: value} and touches nothing;
`CgroupV2` does the I/O. Conversions follow what runc does, so that the same config.json
gives the same limits under either runtime:

| resource | file |
|---|---|
| memory.limit | memory.max ("max" for -1) |
| memory.reservation | memory.low |
| memory.swap (memory + swap, as in v1) | memory.swap.max = swap - limit, -1 → "max" (1) |
| cpu.shares (2..262144) | cpu.weight = 1 + (shares - 2) * 9999 // 262142 (1..10000) |
| cpu.quota, cpu.period | cpu.max "quota period", "max period" when quota <= 0 |
| cpu.burst, cpu.idle | cpu.max.burst, cpu.idle |
| cpu.cpus, cpu.mems | cpuset.cpus, cpuset.mems |
| pids.limit | pids.max ("max" when <= 0) |
| blockIO.weight (10..1000) | io.weight "default W", W = 1 + (weight - 10) * 9999 // 990 (2) |
| blockIO.weightDevice | io.weight (or io.bfq.weight) "MAJ:MIN W" |
| blockIO.throttle* | io.max "MAJ:MIN rbps=N wbps=N riops=N wiops=N" |
| hugepageLimits | hugetlb.<size>.max |
| unified | each key written as given, last, so it overrides the above |

(1) skipped when the kernel has no swap accounting (memory.swap.max missing).
(2) io.bfq.weight, unconverted, when the kernel only has BFQ weights.

0 means "not set" for limits, weights, shares, quota and period, as in runc.

Not applied on v2: devices (v2 controls devices with an eBPF program attached to the
cgroup, which pyrunc does not implement: device rules are skipped and the container sees the
devices of its /dev), memory.kernel, memory.kernelTCP, memory.swappiness,
memory.disableOOMKiller, blockIO.leafWeight and network (no such controllers or files).
Realtime CPU limits raise an error: v2 has no equivalent.

`apply` enables, in the cgroup.subtree_control of every ancestor, all controllers that the
ancestor offers, so that every file `set` may write exists. `destroy` removes the container's
cgroup and anything below it, never its parents (see v1's docstring for why).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

from oci_runtime.cgroups import files
from oci_runtime.cgroups.files import CgroupError
from oci_runtime.cgroups.mountinfo import UNIFIED
from oci_runtime.cgroups.resources import BlockIO, Resources

__all__ = [
    "CgroupV2",
    "blkio_weight_to_io_weight",
    "convert_swap",
    "resource_files",
    "shares_to_weight",
]

log = logging.getLogger(__name__)

MIN_SHARES, MAX_SHARES = 2, 262144
MIN_BLKIO_WEIGHT, MAX_BLKIO_WEIGHT = 10, 1000

_IO_MAX_KEYS = {
    "throttle_read_bps_device": "rbps",
    "throttle_write_bps_device": "wbps",
    "throttle_read_iops_device": "riops",
    "throttle_write_iops_device": "wiops",
}


def shares_to_weight(shares: int) -> int:
    """cpu.shares (v1, 2..262144) to cpu.weight (v2, 1..10000); out-of-range shares are
    clamped first, as the kernel clamps them in v1."""
    shares = min(max(shares, MIN_SHARES), MAX_SHARES)
    return 1 + ((shares - MIN_SHARES) * 9999) // (MAX_SHARES - MIN_SHARES)


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (v1, 10..1000) to io.weight (v2, 1..10000)."""
    weight = min(max(weight, MIN_BLKIO_WEIGHT), MAX_BLKIO_WEIGHT)
    return 1 + ((weight - MIN_BLKIO_WEIGHT) * 9999) // (MAX_BLKIO_WEIGHT - MIN_BLKIO_WEIGHT)


def convert_swap(swap: int, limit: int) -> int:
    """OCI memory.swap (memory + swap, v1's memsw) to v2's memory.swap.max (swap alone).

    Returns -1 for unlimited and 0 for "leave unset". An unlimited memory limit with no swap
    value means both unlimited, as it does on v1.
    """
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise CgroupError(
            "linux.resources.memory.swap: a swap limit needs a memory limit on cgroup v2"
        )
    if limit < 0:
        raise CgroupError(f"linux.resources.memory.limit: invalid value {limit}")
    if swap < limit:
        raise CgroupError(
            f"linux.resources.memory.swap: memory+swap limit {swap} is below "
            f"the memory limit {limit}"
        )
    return swap - limit


def _limit(v: int) -> str:
    return "max" if v < 0 else str(v)


def _set(v: int | None) -> bool:
    return v is not None and v != 0


def _io_files(bio: BlockIO, out: dict[str, str], *, bfq: bool) -> None:
    weight_file = "io.bfq.weight" if bfq else "io.weight"

    def conv(w: int) -> int:
        # BFQ takes the v1 range (1..1000) as is.
        return w if bfq else blkio_weight_to_io_weight(w)

    lines = []
    if _set(bio.weight):
        assert bio.weight is not None
        lines.append(f"default {conv(bio.weight)}")
    for d in bio.weight_device or ():
        if _set(d.weight):
            assert d.weight is not None
            lines.append(f"{d.major}:{d.minor} {conv(d.weight)}")
    if lines:
        out[weight_file] = "\n".join(lines)
    limits: dict[str, list[str]] = {}
    for attr, key in _IO_MAX_KEYS.items():
        for d in getattr(bio, attr) or ():
            limits.setdefault(f"{d.major}:{d.minor}", []).append(f"{key}={d.rate}")
    if limits:
        out["io.max"] = "\n".join(f"{dev} {' '.join(kv)}" for dev, kv in limits.items())


def resource_files(res: Resources, *, bfq: bool = False) -> dict[str, str]:
    """File name → value, in write order; a multi-line value is one write per line.
    `bfq` says the kernel offers io.bfq.weight instead of io.weight."""
    out: dict[str, str] = {}
    mem = res.memory
    if mem is not None:
        if _set(mem.limit):
            assert mem.limit is not None
            out["memory.max"] = _limit(mem.limit)
        if _set(mem.reservation):
            assert mem.reservation is not None
            out["memory.low"] = _limit(mem.reservation)
        swap = convert_swap(mem.swap or 0, mem.limit or 0)
        if swap != 0:
            out["memory.swap.max"] = _limit(swap)
    cpu = res.cpu
    if cpu is not None:
        if _set(cpu.realtime_runtime) or _set(cpu.realtime_period):
            raise CgroupError(
                "linux.resources.cpu.realtimeRuntime/realtimePeriod: not supported on cgroup v2"
            )
        if _set(cpu.shares):
            assert cpu.shares is not None
            out["cpu.weight"] = str(shares_to_weight(cpu.shares))
        quota, period = cpu.quota or 0, cpu.period or 0
        if quota != 0 or period != 0:
            value = str(quota) if quota > 0 else "max"
            if period != 0:
                value += f" {period}"
            out["cpu.max"] = value
        if cpu.burst is not None:
            out["cpu.max.burst"] = str(cpu.burst)
        if cpu.idle is not None:
            out["cpu.idle"] = str(cpu.idle)
        if cpu.cpus:
            out["cpuset.cpus"] = cpu.cpus
        if cpu.mems:
            out["cpuset.mems"] = cpu.mems
    if res.pids is not None and res.pids.limit is not None:
        out["pids.max"] = "max" if res.pids.limit <= 0 else str(res.pids.limit)
    if res.block_io is not None:
        _io_files(res.block_io, out, bfq=bfq)
    for hp in res.hugepage_limits or ():
        out[f"hugetlb.{hp.page_size}.max"] = str(hp.limit)
    for name, value in (res.unified or {}).items():
        # Re-inserting moves the key to the end: an explicit unified value is written last.
        out.pop(name, None)
        out[name] = value
    return out


class CgroupV2:
    """A container's cgroup in the unified hierarchy mounted at `root`."""

    is_v2 = True

    def __init__(
        self,
        root: Path,
        path: Path,
        *,
        freeze_timeout: float = 5.0,
        rmdir_timeout: float = 2.0,
    ) -> None:
        self.root = root
        self.path = path
        self.freeze_timeout = freeze_timeout
        self.rmdir_timeout = rmdir_timeout

    def __repr__(self) -> str:
        return f"CgroupV2(root={self.root!r}, path={self.path!r})"

    # -- lifecycle -----------------------------------------------------------------------

    def apply(self, pid: int) -> None:
        """Create the cgroup (enabling controllers on the way down) and move `pid` into it;
        idempotent, so it also adds exec'd processes. A pid <= 0 only creates it."""
        rel = self.path.relative_to(self.root)
        d = self.root
        for part in rel.parts:
            self._enable_controllers(d)
            d = d / part
            try:
                d.mkdir(exist_ok=True)
            except OSError as exc:
                raise CgroupError(f"cannot create {d}: {exc.strerror or exc}") from exc
        if pid > 0:
            files.write_all([(self.path / "cgroup.procs", str(pid))], retry_einval=False)

    def _enable_controllers(self, d: Path) -> None:
        available = (files.read_optional(d / "cgroup.controllers") or "").split()
        if not available:
            return
        enabled = set((files.read_optional(d / "cgroup.subtree_control") or "").split())
        missing = [c for c in available if c not in enabled]
        if not missing:
            return
        control = d / "cgroup.subtree_control"
        try:
            files.write_value(control, " ".join(f"+{c}" for c in missing))
            return
        except OSError as exc:
            first_error = exc
        # One refused controller (say, cpu with realtime tasks around, or EBUSY because the
        # parent holds processes) must not keep the others off: try them one by one.
        for c in missing:
            try:
                files.write_value(control, f"+{c}")
            except OSError as exc:
                log.debug("cannot enable %s in %s: %s (first: %s)", c, control, exc, first_error)

    def set(self, resources: Resources) -> None:
        bfq = not (self.path / "io.weight").exists() and (self.path / "io.bfq.weight").exists()
        wanted = resource_files(resources, bfq=bfq)
        if wanted and not self.path.is_dir():
            raise CgroupError(f"cannot set resources: cgroup {self.path} does not exist")
        writes: list[tuple[Path, str]] = []
        for name, value in wanted.items():
            path = self.path / name
            if name == "memory.swap.max" and not path.exists():
                log.warning("swap accounting is off (%s missing): swap limit not set", path)
                continue
            writes.extend(files.split_lines(path, value))
        files.write_all(writes)

    def destroy(self) -> None:
        files.remove_cgroup_tree(self.path, timeout=self.rmdir_timeout)

    def exists(self) -> bool:
        return self.path.is_dir()

    # -- freezer -------------------------------------------------------------------------

    def freeze(self, frozen: bool) -> None:
        target = "1" if frozen else "0"
        control = self.path / "cgroup.freeze"
        try:
            files.write_value(control, target)
        except OSError as exc:
            raise files.describe_write_error(control, target, exc) from exc
        if files.wait_for(lambda: self._events_frozen() == frozen, self.freeze_timeout):
            return
        if frozen:
            # Never leave a half-frozen container behind.
            try:
                files.write_value(control, "0")
            except OSError:
                pass
        raise CgroupError(
            f"{self.path}/cgroup.events did not show frozen {target} "
            f"within {self.freeze_timeout:g}s",
            errno=errno.ETIMEDOUT,
        )

    def _events_frozen(self) -> bool | None:
        text = files.read_optional(self.path / "cgroup.events")
        if text is None:
            return None
        return files.parse_flat_keyed(text).get("frozen") == 1

    def is_frozen(self) -> bool:
        state = self._events_frozen()
        if state is None:
            return files.read_optional(self.path / "cgroup.freeze") == "1"
        return state

    # -- queries -------------------------------------------------------------------------

    def pids(self) -> list[int]:
        return sorted(files.read_pids(self.path))

    def paths(self) -> dict[str, str]:
        return {UNIFIED: str(self.path)}

    def mounts(self) -> list[tuple[str, str]]:
        return [(UNIFIED, str(self.path))]

    def oom_kill_count(self) -> int:
        text = files.read_optional(self.path / "memory.events") or ""
        return files.parse_flat_keyed(text).get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        d = self.path
        out: dict[str, Any] = {}
        cpu_text = files.read_optional(d / "cpu.stat")
        if cpu_text is not None:
            out["cpu"] = cpu_stats(cpu_text)
        if (d / "memory.current").exists():
            out["memory"] = memory_stats(d)
        if (d / "pids.current").exists():
            out["pids"] = {
                "current": files.read_int(d / "pids.current"),
                "limit": files.read_int(d / "pids.max", max_value=0),
            }
        io_text = files.read_optional(d / "io.stat")
        if io_text is not None:
            out["blkio"] = io_stats(io_text)
        hugetlb = hugetlb_stats(d)
        if hugetlb:
            out["hugetlb"] = hugetlb
        return out


def cpu_stats(text: str) -> dict[str, Any]:
    """cpu.stat (microseconds) in runc's shape (nanoseconds)."""
    stat = files.parse_flat_keyed(text)
    return {
        "usage": {
            "total": stat.get("usage_usec", 0) * 1000,
            "kernel": stat.get("system_usec", 0) * 1000,
            "user": stat.get("user_usec", 0) * 1000,
        },
        "throttling": {
            "periods": stat.get("nr_periods", 0),
            "throttledPeriods": stat.get("nr_throttled", 0),
            "throttledTime": stat.get("throttled_usec", 0) * 1000,
        },
    }


def memory_stats(d: Path) -> dict[str, Any]:
    raw = files.parse_flat_keyed(files.read_optional(d / "memory.stat") or "")
    events = files.parse_flat_keyed(files.read_optional(d / "memory.events") or "")
    usage = {
        "limit": files.read_int(d / "memory.max", files.MAX_UINT64),
        "usage": files.read_int(d / "memory.current"),
        "max": files.read_int(d / "memory.peak"),
        "failcnt": events.get("max", 0),
    }
    out: dict[str, Any] = {"cache": raw.get("file", 0), "usage": usage}
    if (d / "memory.swap.current").exists():
        # v1's memsw counts memory + swap and consumers of runc's stats expect that, so the
        # v2 swap-only numbers are reported the same way runc reports them.
        swap_limit = files.read_int(d / "memory.swap.max", files.MAX_UINT64)
        if swap_limit != files.MAX_UINT64 and usage["limit"] != files.MAX_UINT64:
            swap_limit += usage["limit"]
        else:
            swap_limit = files.MAX_UINT64
        out["swap"] = {
            "limit": swap_limit,
            "usage": files.read_int(d / "memory.swap.current") + usage["usage"],
            "max": files.read_int(d / "memory.swap.peak"),
            "failcnt": files.parse_flat_keyed(
                files.read_optional(d / "memory.swap.events") or ""
            ).get("max", 0),
        }
    out["raw"] = raw
    return out


def io_stats(text: str) -> dict[str, Any]:
    """io.stat in runc's Blkio shape (Read/Write entries per device)."""
    service_bytes: list[dict[str, int | str]] = []
    serviced: list[dict[str, int | str]] = []
    for dev, counters in files.parse_nested_keyed(text).items():
        major, sep, minor = dev.partition(":")
        if not sep:
            continue
        ids = {"major": int(major), "minor": int(minor)}
        for key, op, bucket in (
            ("rbytes", "Read", service_bytes),
            ("wbytes", "Write", service_bytes),
            ("rios", "Read", serviced),
            ("wios", "Write", serviced),
        ):
            if key in counters:
                bucket.append({**ids, "op": op, "value": counters[key]})
    out: dict[str, Any] = {}
    if service_bytes:
        out["ioServiceBytesRecursive"] = service_bytes
    if serviced:
        out["ioServicedRecursive"] = serviced
    return out


def hugetlb_stats(d: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for entry in sorted(d.glob("hugetlb.*.max")):
        parts = entry.name.split(".")
        if len(parts) != 3:
            continue
        size = parts[1]
        events = files.parse_flat_keyed(files.read_optional(d / f"hugetlb.{size}.events") or "")
        # v2 keeps no peak usage for huge pages, so runc's "max" has nothing to come from.
        out[size] = {
            "usage": files.read_int(d / f"hugetlb.{size}.current"),
            "failcnt": events.get("max", 0),
        }
    return out
