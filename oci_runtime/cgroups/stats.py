"""`CgroupManager.stats()` for both versions: runc's `events --stats` "data" object, filled
from what the files give.

Kept apart from v1 and v2 because only `pyrunc events --stats` needs it; the managers import
it when asked.
"""

from __future__ import annotations

import os

from oci_runtime.cgroups import files

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["v1_stats", "v2_stats"]


def _hugetlb_files(d: str, suffix: str) -> list[str]:
    """Sorted names matching "hugetlb.*<suffix>" in `d`; [] when `d` is gone."""
    prefix = "hugetlb."
    try:
        names = os.listdir(d)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        n
        for n in names
        if n.startswith(prefix) and n.endswith(suffix) and len(n) >= len(prefix) + len(suffix)
    )


# -- cgroup v1 -------------------------------------------------------------------------------


def v1_stats(paths: Mapping[str, str]) -> dict[str, Any]:
    """Statistics of a v1 cgroup whose controller → directory map is `paths`."""
    out: dict[str, Any] = {}
    cpu = _v1_cpu_stats(paths)
    if cpu:
        out["cpu"] = cpu
    if (d := paths.get("memory")) is not None and os.path.isdir(d):
        out["memory"] = _v1_memory_stats(d)
    if (d := paths.get("pids")) is not None and os.path.isdir(d):
        out["pids"] = {
            "current": files.read_int(f"{d}/pids.current"),
            # runc reports an unlimited pids.max as 0.
            "limit": files.read_int(f"{d}/pids.max", max_value=0),
        }
    if (d := paths.get("blkio")) is not None and os.path.isdir(d):
        out["blkio"] = _v1_blkio_stats(d)
    if (d := paths.get("hugetlb")) is not None and os.path.isdir(d):
        out["hugetlb"] = _v1_hugetlb_stats(d)
    return out


def _v1_cpu_stats(paths: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (d := paths.get("cpuacct")) is not None and os.path.isdir(d):
        out["usage"] = _cpuacct_stats(d)
    if (d := paths.get("cpu")) is not None and os.path.isdir(d):
        stat = files.parse_flat_keyed(files.read_optional(f"{d}/cpu.stat") or "")
        out["throttling"] = {
            "periods": stat.get("nr_periods", 0),
            "throttledPeriods": stat.get("nr_throttled", 0),
            "throttledTime": stat.get("throttled_time", 0),
        }
    return out


def _cpuacct_stats(d: str) -> dict[str, Any]:
    usage: dict[str, Any] = {"total": files.read_int(f"{d}/cpuacct.usage")}
    percpu = files.read_optional(f"{d}/cpuacct.usage_percpu")
    if percpu:
        usage["percpu"] = [int(x) for x in percpu.split()]
    per_mode = files.read_optional(f"{d}/cpuacct.usage_all")
    if per_mode:
        kernel, user = [], []
        for line in per_mode.splitlines()[1:]:
            parts = line.split()
            if len(parts) == 3:
                user.append(int(parts[1]))
                kernel.append(int(parts[2]))
        usage["percpu_kernel"] = kernel
        usage["percpu_user"] = user
    sys_ns = files.read_optional(f"{d}/cpuacct.usage_sys")
    user_ns = files.read_optional(f"{d}/cpuacct.usage_user")
    if sys_ns is not None and user_ns is not None:
        usage["kernel"] = int(sys_ns)
        usage["user"] = int(user_ns)
    else:
        # Older kernels only give clock ticks.
        ticks = files.parse_flat_keyed(files.read_optional(f"{d}/cpuacct.stat") or "")
        ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        usage["kernel"] = ticks.get("system", 0) * ns_per_tick
        usage["user"] = ticks.get("user", 0) * ns_per_tick
    return usage


def _v1_memory_entry(d: str, prefix: str) -> dict[str, int]:
    return {
        "limit": files.read_int(f"{d}/{prefix}.limit_in_bytes"),
        "usage": files.read_int(f"{d}/{prefix}.usage_in_bytes"),
        "max": files.read_int(f"{d}/{prefix}.max_usage_in_bytes"),
        "failcnt": files.read_int(f"{d}/{prefix}.failcnt"),
    }


def _v1_memory_stats(d: str) -> dict[str, Any]:
    raw = files.parse_flat_keyed(files.read_optional(f"{d}/memory.stat") or "")
    out: dict[str, Any] = {
        "cache": raw.get("total_cache", raw.get("cache", 0)),
        "usage": _v1_memory_entry(d, "memory"),
    }
    if os.path.exists(f"{d}/memory.memsw.usage_in_bytes"):
        out["swap"] = _v1_memory_entry(d, "memory.memsw")
    if os.path.exists(f"{d}/memory.kmem.usage_in_bytes"):
        out["kernel"] = _v1_memory_entry(d, "memory.kmem")
    if os.path.exists(f"{d}/memory.kmem.tcp.usage_in_bytes"):
        out["kernelTCP"] = _v1_memory_entry(d, "memory.kmem.tcp")
    out["raw"] = raw
    return out


def _v1_blkio_stats(d: str) -> dict[str, Any]:
    def entries(*names: str) -> list[dict[str, int | str]]:
        # The CFQ files are the richer ones; without CFQ only the throttle layer counts.
        for name in names:
            text = files.read_optional(f"{d}/{name}")
            if text is not None:
                return files.parse_blkio_v1(text)
        return []

    out = {
        "ioServiceBytesRecursive": entries(
            "blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive"
        ),
        "ioServicedRecursive": entries(
            "blkio.io_serviced_recursive", "blkio.throttle.io_serviced_recursive"
        ),
        "ioQueueRecursive": entries("blkio.io_queued_recursive"),
        "ioServiceTimeRecursive": entries("blkio.io_service_time_recursive"),
        "ioWaitTimeRecursive": entries("blkio.io_wait_time_recursive"),
        "ioMergedRecursive": entries("blkio.io_merged_recursive"),
        "ioTimeRecursive": entries("blkio.time_recursive"),
        "sectorsRecursive": entries("blkio.sectors_recursive"),
    }
    return {k: v for k, v in out.items() if v}


def _v1_hugetlb_stats(d: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name in _hugetlb_files(d, ".limit_in_bytes"):
        size = name.split(".")[1]
        out[size] = {
            "usage": files.read_int(f"{d}/hugetlb.{size}.usage_in_bytes"),
            "max": files.read_int(f"{d}/hugetlb.{size}.max_usage_in_bytes"),
            "failcnt": files.read_int(f"{d}/hugetlb.{size}.failcnt"),
        }
    return out


# -- cgroup v2 -------------------------------------------------------------------------------


def v2_stats(d: str) -> dict[str, Any]:
    """Statistics of the v2 cgroup at `d`."""
    out: dict[str, Any] = {}
    cpu_text = files.read_optional(f"{d}/cpu.stat")
    if cpu_text is not None:
        out["cpu"] = _v2_cpu_stats(cpu_text)
    if os.path.exists(f"{d}/memory.current"):
        out["memory"] = _v2_memory_stats(d)
    if os.path.exists(f"{d}/pids.current"):
        out["pids"] = {
            "current": files.read_int(f"{d}/pids.current"),
            "limit": files.read_int(f"{d}/pids.max", max_value=0),
        }
    io_text = files.read_optional(f"{d}/io.stat")
    if io_text is not None:
        out["blkio"] = _v2_io_stats(io_text)
    hugetlb = _v2_hugetlb_stats(d)
    if hugetlb:
        out["hugetlb"] = hugetlb
    return out


def _v2_cpu_stats(text: str) -> dict[str, Any]:
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


def _v2_memory_stats(d: str) -> dict[str, Any]:
    raw = files.parse_flat_keyed(files.read_optional(f"{d}/memory.stat") or "")
    events = files.parse_flat_keyed(files.read_optional(f"{d}/memory.events") or "")
    usage = {
        "limit": files.read_int(f"{d}/memory.max", files.MAX_UINT64),
        "usage": files.read_int(f"{d}/memory.current"),
        "max": files.read_int(f"{d}/memory.peak"),
        "failcnt": events.get("max", 0),
    }
    out: dict[str, Any] = {"cache": raw.get("file", 0), "usage": usage}
    if os.path.exists(f"{d}/memory.swap.current"):
        # v1's memsw counts memory + swap and consumers of runc's stats expect that, so the
        # v2 swap-only numbers are reported the same way runc reports them.
        swap_limit = files.read_int(f"{d}/memory.swap.max", files.MAX_UINT64)
        if swap_limit != files.MAX_UINT64 and usage["limit"] != files.MAX_UINT64:
            swap_limit += usage["limit"]
        else:
            swap_limit = files.MAX_UINT64
        out["swap"] = {
            "limit": swap_limit,
            "usage": files.read_int(f"{d}/memory.swap.current") + usage["usage"],
            "max": files.read_int(f"{d}/memory.swap.peak"),
            "failcnt": files.parse_flat_keyed(
                files.read_optional(f"{d}/memory.swap.events") or ""
            ).get("max", 0),
        }
    out["raw"] = raw
    return out


def _v2_io_stats(text: str) -> dict[str, Any]:
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


def _v2_hugetlb_stats(d: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name in _hugetlb_files(d, ".max"):
        parts = name.split(".")
        if len(parts) != 3:
            continue
        size = parts[1]
        events = files.parse_flat_keyed(files.read_optional(f"{d}/hugetlb.{size}.events") or "")
        # v2 keeps no peak usage for huge pages, so runc's "max" has nothing to come from.
        out[size] = {
            "usage": files.read_int(f"{d}/hugetlb.{size}.current"),
            "failcnt": events.get("max", 0),
        }
    return out
