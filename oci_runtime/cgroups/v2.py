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
import os

from oci_runtime.cgroups import files
from oci_runtime.cgroups.files import UNIFIED, CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from oci_runtime.cgroups.resources import BlockIO, Resources

__all__ = [
    "CgroupV2",
    "blkio_weight_to_io_weight",
    "convert_swap",
    "resource_files",
    "shares_to_weight",
]

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
    """A container's cgroup in the unified hierarchy mounted at `root`.

    Best-effort failures (swap accounting being off) go to `warn`, one line each; stderr by
    default.
    """

    is_v2 = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        path: str | os.PathLike[str],
        *,
        freeze_timeout: float = 5.0,
        rmdir_timeout: float = 2.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.root = os.path.normpath(os.fspath(root))
        self.path = os.path.normpath(os.fspath(path))
        self.freeze_timeout = freeze_timeout
        self.rmdir_timeout = rmdir_timeout
        self._warn = warn or files.warn

    def __repr__(self) -> str:
        return f"CgroupV2(root={self.root!r}, path={self.path!r})"

    # -- lifecycle -----------------------------------------------------------------------

    def apply(self, pid: int, *, single_thread: bool = False) -> None:
        """Create the cgroup (enabling controllers on the way down) and move `pid` into it;
        idempotent, so it also adds exec'd processes. A pid <= 0 only creates it."""
        rel = files.relative_to(self.path, self.root)
        d = self.root
        for part in rel.split("/") if rel else ():
            self._enable_controllers(d)
            d = os.path.join(d, part)
            try:
                files.make_dirs(d)
            except OSError as exc:
                raise CgroupError(f"cannot create {d}: {exc.strerror or exc}") from exc
        if pid > 0:
            files.write_all([(f"{self.path}/cgroup.procs", str(pid))], retry_einval=False)

    def _enable_controllers(self, d: str) -> None:
        available = (files.read_optional(f"{d}/cgroup.controllers") or "").split()
        if not available:
            return
        control = f"{d}/cgroup.subtree_control"
        enabled = set((files.read_optional(control) or "").split())
        missing = [c for c in available if c not in enabled]
        if not missing:
            return
        try:
            files.write_value(control, " ".join(f"+{c}" for c in missing))
            return
        except OSError:
            pass
        # One refused controller (say, cpu with realtime tasks around, or EBUSY because the
        # parent holds processes) must not keep the others off: try them one by one. What
        # stays off is reported by `set`, as the missing file of the limit that needs it.
        for c in missing:
            try:
                files.write_value(control, f"+{c}")
            except OSError:
                pass

    def set(self, resources: Resources) -> None:
        d = self.path
        bfq = not os.path.exists(f"{d}/io.weight") and os.path.exists(f"{d}/io.bfq.weight")
        wanted = resource_files(resources, bfq=bfq)
        if wanted and not os.path.isdir(d):
            raise CgroupError(f"cannot set resources: cgroup {d} does not exist")
        writes: list[tuple[str, str]] = []
        for name, value in wanted.items():
            path = f"{d}/{name}"
            if name == "memory.swap.max" and not os.path.exists(path):
                self._warn(f"swap accounting is off ({path} missing): swap limit not set")
                continue
            writes.extend(files.split_lines(path, value))
        files.write_all(writes)

    def destroy(self) -> None:
        files.remove_cgroup_tree(self.path, timeout=self.rmdir_timeout)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    # -- freezer -------------------------------------------------------------------------

    def freeze(self, frozen: bool) -> None:
        target = "1" if frozen else "0"
        control = f"{self.path}/cgroup.freeze"
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
        text = files.read_optional(f"{self.path}/cgroup.events")
        if text is None:
            return None
        return files.parse_flat_keyed(text).get("frozen") == 1

    def is_frozen(self) -> bool:
        state = self._events_frozen()
        if state is None:
            return files.read_optional(f"{self.path}/cgroup.freeze") == "1"
        return state

    # -- queries -------------------------------------------------------------------------

    def pids(self) -> list[int]:
        return sorted(files.read_pids(self.path))

    def paths(self) -> dict[str, str]:
        return {UNIFIED: self.path}

    def mounts(self) -> list[tuple[str, str]]:
        return [(UNIFIED, self.path)]

    def oom_kill_count(self) -> int:
        text = files.read_optional(f"{self.path}/memory.events") or ""
        return files.parse_flat_keyed(text).get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        # Only `pyrunc events --stats` reads statistics: the other commands skip its code.
        from oci_runtime.cgroups import stats

        return stats.v2_stats(self.path)
