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
import os

from oci_runtime.cgroups import files
from oci_runtime.cgroups.files import UNIFIED, CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from oci_runtime.cgroups.resources import BlockIO, DeviceRule, Resources

__all__ = ["CgroupV1", "device_writes", "resource_files"]

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


def _hierarchy_name(root: str, path: str) -> str:
    """The directory under `root` where a hierarchy is mounted, e.g. "cpu,cpuacct"."""
    return files.relative_to(path, root).split("/", 1)[0]


class CgroupV1:
    """A container's cgroup in every v1 hierarchy; `paths` maps controller → its directory.

    Best-effort failures (joining the hybrid cgroup2 tree, swap accounting being off) go to
    `warn`, one line each; stderr by default.
    """

    is_v2 = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        paths: Mapping[str, str | os.PathLike[str]],
        *,
        freeze_timeout: float = 5.0,
        rmdir_timeout: float = 2.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.root = os.path.normpath(os.fspath(root))
        self._paths = {name: os.path.normpath(os.fspath(p)) for name, p in paths.items()}
        self.freeze_timeout = freeze_timeout
        self.rmdir_timeout = rmdir_timeout
        self._warn = warn or files.warn

    def __repr__(self) -> str:
        return f"CgroupV1(root={self.root!r}, paths={self._paths!r})"

    def _dirs(self) -> list[str]:
        return files.unique(self._paths.values())

    def _v1_dirs(self) -> list[str]:
        return files.unique(p for name, p in self._paths.items() if name != UNIFIED)

    def _dir(self, controller: str, what: str) -> str:
        try:
            return self._paths[controller]
        except KeyError:
            raise CgroupError(
                f"{what} needs the cgroup v1 {controller!r} controller, "
                f"but no hierarchy for it is mounted under {self.root}"
            ) from None

    # -- lifecycle -----------------------------------------------------------------------

    def apply(self, pid: int, *, single_thread: bool = False) -> None:
        """Create the cgroup in every hierarchy and move `pid` into it; idempotent, so it
        also serves to add an exec'd process. A pid <= 0 only creates the directories.

        `single_thread` says pid has one thread (pyrunc's own forked stages): moving it
        through `tasks` is then the same move, without the process-wide lock a
        cgroup.procs write takes (an RCU grace period, 10-20 ms, per container)."""
        dirs = self._v1_dirs()
        for d in dirs:
            try:
                files.make_dirs(d)
            except OSError as exc:
                raise CgroupError(f"cannot create {d}: {exc.strerror or exc}") from exc
        cpuset = self._paths.get("cpuset")
        if cpuset is not None:
            self._fill_cpuset(cpuset)
        if pid > 0:
            # Most of apply's time is the kernel's, not ours: the first cgroup.procs write
            # of a migration waits for an RCU grace period (cgroup_threadgroup_rwsem).
            target = "tasks" if single_thread else "cgroup.procs"
            files.write_all([(f"{d}/{target}", str(pid)) for d in dirs], retry_einval=False)
        unified = self._paths.get(UNIFIED)
        if unified is not None:
            # Joining the hybrid cgroup2 tree only helps tools that track processes there
            # (systemd); a host where that fails must still run containers.
            try:
                files.make_dirs(unified)
                if pid > 0:
                    files.write_value(f"{unified}/cgroup.procs", str(pid))
            except OSError as exc:
                self._warn(f"cannot join the hybrid cgroup2 hierarchy at {unified}: {exc}")

    def _fill_cpuset(self, leaf: str) -> None:
        # A new cpuset cgroup starts with empty cpus and mems, and no task can join it until
        # both are filled; copy them down from the nearest ancestor that has them. Only
        # empty ones are written: just the new leaf below an existing parent, none on exec.
        for name in ("cpuset.cpus", "cpuset.mems"):
            empty: list[str] = []
            d = leaf
            while not (value := files.read_optional(f"{d}/{name}")):
                if value is None or d == self.root:
                    raise CgroupError(f"cannot inherit {name} for {leaf}: {d}/{name} unreadable")
                empty.append(d)
                d = os.path.dirname(d)
            for child in reversed(empty):
                path = f"{child}/{name}"
                try:
                    files.write_value(path, value)
                except OSError as exc:
                    raise files.describe_write_error(path, value, exc) from exc

    def set(self, resources: Resources) -> None:
        wanted = resource_files(resources)
        writes: list[tuple[str, str]] = []
        present: set[str] = set()
        for (controller, name), value in wanted.items():
            d = self._dir(controller, name)
            if d not in present:
                if not os.path.isdir(d):
                    raise CgroupError(f"cannot set {name}: cgroup {d} does not exist")
                present.add(d)
            path = f"{d}/{name}"
            if (controller, name) == MEMSW and not os.path.exists(path):
                self._warn(f"swap accounting is off ({path} missing): swap limit not set")
                continue
            if name in _BFQ_NAMES and not os.path.exists(path):
                bfq = f"{d}/{_BFQ_NAMES[name]}"
                if os.path.exists(bfq):
                    path = bfq
            writes.extend(files.split_lines(path, value))
        files.write_all(writes)
        devices = device_writes(resources.devices)
        if devices:
            d = self._dir("devices", "linux.resources.devices")
            files.write_all([(f"{d}/{name}", line) for name, line in devices], retry_einval=False)

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
        return any(os.path.isdir(d) for d in self._dirs())

    # -- freezer -------------------------------------------------------------------------

    def _freezer_state(self) -> str:
        return f"{self._dir('freezer', 'freeze')}/freezer.state"

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
        return dict(self._paths)

    def mounts(self) -> list[tuple[str, str]]:
        """Hierarchies as a container's /sys/fs/cgroup shows them. The hybrid cgroup2
        hierarchy is left out, as runc leaves it out of a v1 container's mounts."""
        out: dict[str, str] = {}
        for name, p in self._paths.items():
            if name == UNIFIED:
                continue
            out.setdefault(_hierarchy_name(self.root, p), p)
        return sorted(out.items())

    def oom_kill_count(self) -> int:
        d = self._paths.get("memory")
        if d is None:
            return 0
        text = files.read_optional(f"{d}/memory.oom_control") or ""
        return files.parse_flat_keyed(text).get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        # Only `pyrunc events --stats` reads statistics: the other commands skip its code.
        from oci_runtime.cgroups import stats

        return stats.v1_stats(self._paths)
