"""cgroup v1 (legacy and hybrid hosts): one directory per hierarchy.

`resource_files` and `device_writes` translate `Resources` into file writes and touch nothing;
`CgroupV1` does the I/O. The container's cgroup is created in every mounted hierarchy,
named ones ("name=systemd") included, and on a hybrid host also in the cgroup2 hierarchy
(key "" in `paths()`), so that systemd and anything else reading the unified tree see it.

What v1 does with each resource (runc's conventions: 0 means "not set" for limits, weights,
shares, quota and period; -1 means unlimited):

| resource | file |
|---|---|
| memory.limit | memory.limit_in_bytes |
| memory.reservation | memory.soft_limit_in_bytes |
| memory.swap (memory + swap) | memory.memsw.limit_in_bytes, skipped if swap accounting is off |
| memory.kernelTCP | memory.kmem.tcp.limit_in_bytes |
| memory.swappiness | memory.swappiness |
| memory.disableOOMKiller | memory.oom_control (1/0) |
| cpu.shares, idle | cpu.shares, cpu.idle |
| cpu.quota, period, burst | cpu.cfs_quota_us, cpu.cfs_period_us, cpu.cfs_burst_us |
| cpu.realtimeRuntime/Period | cpu.rt_runtime_us, cpu.rt_period_us |
| cpu.cpus, cpu.mems | cpuset.cpus, cpuset.mems |
| pids.limit | pids.max ("max" when <= 0) |
| blockIO.weight, leafWeight | blkio.weight (blkio.bfq.weight with only BFQ), blkio.leaf_weight |
| blockIO.weightDevice | blkio.weight_device (or blkio.bfq.weight_device), leaf_weight_device |
| blockIO.throttle* | blkio.throttle.{read,write}_{bps,iops}_device |
| hugepageLimits | hugetlb.<size>.limit_in_bytes |
| devices | devices.deny / devices.allow, one rule per write, in the spec's order |

memory.kernel is ignored: kernels since 5.16 refuse kernel memory limits, and runc ignores
them as well. memory.useHierarchy and checkBeforeUpdate are ignored (use_hierarchy is always
on in current kernels). `unified` is an error on v1.

Limits the kernel checks against each other (memsw >= limit, cfs quota vs period) are written
by `files.write_all`, which retries a write refused with EINVAL after its sibling has changed.

`destroy()` removes the container's own cgroup (and any cgroup created below it) in every
hierarchy, deepest first. Parents such as "/pydocker" are left in place even if empty: they
are shared by every container, and removing one races with another container's apply.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oci_runtime.cgroups import files
from oci_runtime.cgroups.files import CgroupError
from oci_runtime.cgroups.mountinfo import UNIFIED
from oci_runtime.cgroups.resources import BlockIO, DeviceRule, Resources

__all__ = ["CgroupV1", "device_writes", "resource_files"]

log = logging.getLogger(__name__)

MEMSW = ("memory", "memory.memsw.limit_in_bytes")

_THROTTLE_FILES = {
    "throttle_read_bps_device": "blkio.throttle.read_bps_device",
    "throttle_write_bps_device": "blkio.throttle.write_bps_device",
    "throttle_read_iops_device": "blkio.throttle.read_iops_device",
    "throttle_write_iops_device": "blkio.throttle.write_iops_device",
}

# Kernels with only the BFQ scheduler expose its weights under another name.
_BFQ_NAMES = {
    "blkio.weight": "blkio.bfq.weight",
    "blkio.weight_device": "blkio.bfq.weight_device",
}


def _set(v: int | None) -> bool:
    """runc's rule for limits and weights: absent and 0 both mean "leave as is"."""
    return v is not None and v != 0


def _blkio_files(bio: BlockIO, out: dict[tuple[str, str], str]) -> None:
    if _set(bio.weight):
        out["blkio", "blkio.weight"] = str(bio.weight)
    if _set(bio.leaf_weight):
        out["blkio", "blkio.leaf_weight"] = str(bio.leaf_weight)
    weights = [f"{d.major}:{d.minor} {d.weight}" for d in bio.weight_device or () if _set(d.weight)]
    if weights:
        out["blkio", "blkio.weight_device"] = "\n".join(weights)
    leaves = [
        f"{d.major}:{d.minor} {d.leaf_weight}"
        for d in bio.weight_device or ()
        if _set(d.leaf_weight)
    ]
    if leaves:
        out["blkio", "blkio.leaf_weight_device"] = "\n".join(leaves)
    for attr, filename in _THROTTLE_FILES.items():
        rules = getattr(bio, attr) or ()
        if rules:
            out["blkio", filename] = "\n".join(f"{d.major}:{d.minor} {d.rate}" for d in rules)


def resource_files(res: Resources) -> dict[tuple[str, str], str]:
    """(controller, file name) → value, in a sensible write order; a value with several lines
    (per-device rules) is written one line per write. Devices are not included: see
    `device_writes`, since their allow and deny rules interleave."""
    if res.unified:
        raise CgroupError("linux.resources.unified: only supported on cgroup v2 hosts")
    out: dict[tuple[str, str], str] = {}
    mem = res.memory
    if mem is not None:
        if _set(mem.limit):
            out["memory", "memory.limit_in_bytes"] = str(mem.limit)
        if _set(mem.swap):
            out[MEMSW] = str(mem.swap)
        if _set(mem.reservation):
            out["memory", "memory.soft_limit_in_bytes"] = str(mem.reservation)
        if _set(mem.kernel_tcp):
            out["memory", "memory.kmem.tcp.limit_in_bytes"] = str(mem.kernel_tcp)
        if mem.swappiness is not None:
            out["memory", "memory.swappiness"] = str(mem.swappiness)
        if mem.disable_oom_killer is not None:
            out["memory", "memory.oom_control"] = "1" if mem.disable_oom_killer else "0"
    cpu = res.cpu
    if cpu is not None:
        if _set(cpu.realtime_period):
            out["cpu", "cpu.rt_period_us"] = str(cpu.realtime_period)
        if _set(cpu.realtime_runtime):
            out["cpu", "cpu.rt_runtime_us"] = str(cpu.realtime_runtime)
        if _set(cpu.shares):
            out["cpu", "cpu.shares"] = str(cpu.shares)
        if _set(cpu.period):
            out["cpu", "cpu.cfs_period_us"] = str(cpu.period)
        if _set(cpu.quota):
            out["cpu", "cpu.cfs_quota_us"] = str(cpu.quota)
        if cpu.burst is not None:
            out["cpu", "cpu.cfs_burst_us"] = str(cpu.burst)
        if cpu.idle is not None:
            out["cpu", "cpu.idle"] = str(cpu.idle)
        if cpu.cpus:
            out["cpuset", "cpuset.cpus"] = cpu.cpus
        if cpu.mems:
            out["cpuset", "cpuset.mems"] = cpu.mems
    if res.pids is not None and res.pids.limit is not None:
        limit = res.pids.limit
        out["pids", "pids.max"] = "max" if limit <= 0 else str(limit)
    if res.block_io is not None:
        _blkio_files(res.block_io, out)
    for hp in res.hugepage_limits or ():
        out["hugetlb", f"hugetlb.{hp.page_size}.limit_in_bytes"] = str(hp.limit)
    return out


def device_rule_line(rule: DeviceRule) -> str | None:
    """A devices.allow/deny line such as "c 1:3 rwm"; None for rules v1 cannot express."""
    kind = rule.type or "a"
    if kind == "p":
        # FIFOs are not device nodes; the devices controller has nothing to say about them.
        return None
    if kind == "u":
        kind = "c"
    access = rule.access or "rwm"
    if kind == "a":
        return f"a *:* {access}"
    major = "*" if rule.major is None or rule.major < 0 else str(rule.major)
    minor = "*" if rule.minor is None or rule.minor < 0 else str(rule.minor)
    return f"{kind} {major}:{minor} {access}"


def device_writes(rules: tuple[DeviceRule, ...] | None) -> list[tuple[str, str]]:
    """(file name, line) in the spec's order, which decides what wins."""
    out: list[tuple[str, str]] = []
    for rule in rules or ():
        line = device_rule_line(rule)
        if line is not None:
            out.append(("devices.allow" if rule.allow else "devices.deny", line))
    return out


def _hierarchy_name(root: Path, path: Path) -> str:
    """The directory under `root` where a hierarchy is mounted, e.g. "cpu,cpuacct"."""
    rel = path.relative_to(root)
    return rel.parts[0] if rel.parts else ""


class CgroupV1:
    """A container's cgroup in every v1 hierarchy; `paths` maps controller → its directory."""

    is_v2 = False

    def __init__(
        self,
        root: Path,
        paths: Mapping[str, Path],
        *,
        freeze_timeout: float = 5.0,
        rmdir_timeout: float = 2.0,
    ) -> None:
        self.root = root
        self._paths = {name: Path(p) for name, p in paths.items()}
        self.freeze_timeout = freeze_timeout
        self.rmdir_timeout = rmdir_timeout

    def __repr__(self) -> str:
        return f"CgroupV1(root={self.root!r}, paths={self._paths!r})"

    def _dirs(self) -> list[Path]:
        return files.unique(self._paths.values())

    def _v1_dirs(self) -> list[Path]:
        return files.unique(p for name, p in self._paths.items() if name != UNIFIED)

    def _dir(self, controller: str, what: str) -> Path:
        try:
            return self._paths[controller]
        except KeyError:
            raise CgroupError(
                f"{what} needs the cgroup v1 {controller!r} controller, "
                f"but no hierarchy for it is mounted under {self.root}"
            ) from None

    # -- lifecycle -----------------------------------------------------------------------

    def apply(self, pid: int) -> None:
        """Create the cgroup in every hierarchy and move `pid` into it; idempotent, so it
        also serves to add an exec'd process. A pid <= 0 only creates the directories."""
        for d in self._v1_dirs():
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CgroupError(f"cannot create {d}: {exc.strerror or exc}") from exc
        if "cpuset" in self._paths:
            self._fill_cpuset(self._paths["cpuset"])
        if pid > 0:
            writes = [(d / "cgroup.procs", str(pid)) for d in self._v1_dirs()]
            files.write_all(writes, retry_einval=False)
        unified = self._paths.get(UNIFIED)
        if unified is not None:
            # Joining the hybrid cgroup2 tree only helps tools that track processes there
            # (systemd); a host where that fails must still run containers.
            try:
                unified.mkdir(parents=True, exist_ok=True)
                if pid > 0:
                    files.write_value(unified / "cgroup.procs", str(pid))
            except OSError as exc:
                log.warning("cannot join the hybrid cgroup2 hierarchy at %s: %s", unified, exc)

    def _fill_cpuset(self, leaf: Path) -> None:
        # A new cpuset cgroup starts with empty cpus and mems, and no task can join it until
        # both are filled; copy them down from the nearest ancestor that has them.
        for name in ("cpuset.cpus", "cpuset.mems"):
            empty: list[Path] = []
            d = leaf
            while not (value := files.read_optional(d / name)):
                if value is None or d == self.root:
                    raise CgroupError(f"cannot inherit {name} for {leaf}: {d / name} unreadable")
                empty.append(d)
                d = d.parent
            for child in reversed(empty):
                try:
                    files.write_value(child / name, value)
                except OSError as exc:
                    raise files.describe_write_error(child / name, value, exc) from exc

    def set(self, resources: Resources) -> None:
        wanted = resource_files(resources)
        writes: list[tuple[Path, str]] = []
        for (controller, name), value in wanted.items():
            d = self._dir(controller, name)
            if not d.is_dir():
                raise CgroupError(f"cannot set {name}: cgroup {d} does not exist")
            path = d / name
            if (controller, name) == MEMSW and not path.exists():
                log.warning("swap accounting is off (%s missing): swap limit not set", path)
                continue
            if name in _BFQ_NAMES and not path.exists() and (d / _BFQ_NAMES[name]).exists():
                path = d / _BFQ_NAMES[name]
            writes.extend(files.split_lines(path, value))
        files.write_all(writes)
        devices = device_writes(resources.devices)
        if devices:
            d = self._dir("devices", "linux.resources.devices")
            files.write_all([(d / name, line) for name, line in devices], retry_einval=False)

    def destroy(self) -> None:
        problems: list[CgroupError] = []
        for d in self._dirs():
            try:
                files.remove_cgroup_tree(d, timeout=self.rmdir_timeout)
            except CgroupError as exc:
                problems.append(exc)
        if problems:
            raise CgroupError("; ".join(str(p) for p in problems), errno=problems[0].errno)

    def exists(self) -> bool:
        return any(d.is_dir() for d in self._dirs())

    # -- freezer -------------------------------------------------------------------------

    def _freezer_state(self) -> Path:
        return self._dir("freezer", "freeze") / "freezer.state"

    def freeze(self, frozen: bool) -> None:
        path = self._freezer_state()
        target = "FROZEN" if frozen else "THAWED"

        def write() -> None:
            try:
                files.write_value(path, target)
            except OSError as exc:
                raise files.describe_write_error(path, target, exc) from exc

        def rewrite(attempt: int) -> None:
            # A task that is in the middle of vfork() or of an uninterruptible wait can make
            # the kernel give up with the cgroup left FREEZING; asking again moves it on.
            if attempt % 10 == 0:
                write()

        write()
        if files.wait_for(
            lambda: files.read_optional(path) == target,
            self.freeze_timeout,
            on_retry=rewrite if frozen else None,
        ):
            return
        if frozen:
            # Never leave a half-frozen container behind.
            try:
                files.write_value(path, "THAWED")
            except OSError:
                pass
        state = files.read_optional(path)
        raise CgroupError(
            f"{path} did not reach {target} within {self.freeze_timeout:g}s (it reads {state})",
            errno=errno.ETIMEDOUT,
        )

    def is_frozen(self) -> bool:
        if "freezer" not in self._paths:
            return False
        return files.read_optional(self._freezer_state()) == "FROZEN"

    # -- queries -------------------------------------------------------------------------

    def pids(self) -> list[int]:
        # A process belongs to the container when it is in its cgroup in any hierarchy.
        found: set[int] = set()
        for d in self._dirs():
            found |= files.read_pids(d)
        return sorted(found)

    def paths(self) -> dict[str, str]:
        return {name: str(p) for name, p in self._paths.items()}

    def mounts(self) -> list[tuple[str, str]]:
        """Hierarchies as a container's /sys/fs/cgroup shows them. The hybrid cgroup2
        hierarchy is left out, as runc leaves it out of a v1 container's mounts."""
        out: dict[str, str] = {}
        for name, p in self._paths.items():
            if name == UNIFIED:
                continue
            out.setdefault(_hierarchy_name(self.root, p), str(p))
        return sorted(out.items())

    def oom_kill_count(self) -> int:
        d = self._paths.get("memory")
        if d is None:
            return 0
        text = files.read_optional(d / "memory.oom_control") or ""
        return files.parse_flat_keyed(text).get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        cpu = self._cpu_stats()
        if cpu:
            out["cpu"] = cpu
        if (d := self._paths.get("memory")) is not None and d.is_dir():
            out["memory"] = memory_stats(d)
        if (d := self._paths.get("pids")) is not None and d.is_dir():
            out["pids"] = {
                "current": files.read_int(d / "pids.current"),
                # runc reports an unlimited pids.max as 0.
                "limit": files.read_int(d / "pids.max", max_value=0),
            }
        if (d := self._paths.get("blkio")) is not None and d.is_dir():
            out["blkio"] = blkio_stats(d)
        if (d := self._paths.get("hugetlb")) is not None and d.is_dir():
            out["hugetlb"] = hugetlb_stats(d)
        return out

    def _cpu_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if (d := self._paths.get("cpuacct")) is not None and d.is_dir():
            out["usage"] = cpuacct_stats(d)
        if (d := self._paths.get("cpu")) is not None and d.is_dir():
            stat = files.parse_flat_keyed(files.read_optional(d / "cpu.stat") or "")
            out["throttling"] = {
                "periods": stat.get("nr_periods", 0),
                "throttledPeriods": stat.get("nr_throttled", 0),
                "throttledTime": stat.get("throttled_time", 0),
            }
        return out


def cpuacct_stats(d: Path) -> dict[str, Any]:
    usage: dict[str, Any] = {"total": files.read_int(d / "cpuacct.usage")}
    percpu = files.read_optional(d / "cpuacct.usage_percpu")
    if percpu:
        usage["percpu"] = [int(x) for x in percpu.split()]
    per_mode = files.read_optional(d / "cpuacct.usage_all")
    if per_mode:
        kernel, user = [], []
        for line in per_mode.splitlines()[1:]:
            parts = line.split()
            if len(parts) == 3:
                user.append(int(parts[1]))
                kernel.append(int(parts[2]))
        usage["percpu_kernel"] = kernel
        usage["percpu_user"] = user
    sys_ns = files.read_optional(d / "cpuacct.usage_sys")
    user_ns = files.read_optional(d / "cpuacct.usage_user")
    if sys_ns is not None and user_ns is not None:
        usage["kernel"] = int(sys_ns)
        usage["user"] = int(user_ns)
    else:
        # Older kernels only give clock ticks.
        ticks = files.parse_flat_keyed(files.read_optional(d / "cpuacct.stat") or "")
        ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        usage["kernel"] = ticks.get("system", 0) * ns_per_tick
        usage["user"] = ticks.get("user", 0) * ns_per_tick
    return usage


def _memory_entry(d: Path, prefix: str) -> dict[str, int]:
    return {
        "limit": files.read_int(d / f"{prefix}.limit_in_bytes"),
        "usage": files.read_int(d / f"{prefix}.usage_in_bytes"),
        "max": files.read_int(d / f"{prefix}.max_usage_in_bytes"),
        "failcnt": files.read_int(d / f"{prefix}.failcnt"),
    }


def memory_stats(d: Path) -> dict[str, Any]:
    raw = files.parse_flat_keyed(files.read_optional(d / "memory.stat") or "")
    out: dict[str, Any] = {
        "cache": raw.get("total_cache", raw.get("cache", 0)),
        "usage": _memory_entry(d, "memory"),
    }
    if (d / "memory.memsw.usage_in_bytes").exists():
        out["swap"] = _memory_entry(d, "memory.memsw")
    if (d / "memory.kmem.usage_in_bytes").exists():
        out["kernel"] = _memory_entry(d, "memory.kmem")
    if (d / "memory.kmem.tcp.usage_in_bytes").exists():
        out["kernelTCP"] = _memory_entry(d, "memory.kmem.tcp")
    out["raw"] = raw
    return out


def blkio_stats(d: Path) -> dict[str, Any]:
    def entries(*names: str) -> list[dict[str, int | str]]:
        # The CFQ files are the richer ones; without CFQ only the throttle layer counts.
        for name in names:
            text = files.read_optional(d / name)
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


def hugetlb_stats(d: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for entry in sorted(d.glob("hugetlb.*.limit_in_bytes")):
        size = entry.name.split(".")[1]
        out[size] = {
            "usage": files.read_int(d / f"hugetlb.{size}.usage_in_bytes"),
            "max": files.read_int(d / f"hugetlb.{size}.max_usage_in_bytes"),
            "failcnt": files.read_int(d / f"hugetlb.{size}.failcnt"),
        }
    return out
