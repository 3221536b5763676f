"""Who the container process is: user, groups, capabilities, rlimits, no_new_privs.

`finalize()` is the last step before exec: it drops the bounding set while it still may,
switches uid/gid keeping capabilities across the switch, then sets the exact sets asked for.
"""

from __future__ import annotations

import os
import resource

from oci_runtime.linux import flags as F
from oci_runtime.linux.syscalls import Syscalls
from oci_runtime.spec import Capabilities, Process


def cap_mask(names: tuple[str, ...]) -> int:
    mask = 0
    last = F.last_cap()
    for n in names:
        bit = F.CAPABILITIES[n]
        if bit <= last:
            mask |= 1 << bit
    return mask


def _rlim(value: int) -> int:
    """A spec rlimit (uint64) as setrlimit takes it: Python wants a signed C long, so
    18446744073709551615 (RLIM_INFINITY) and friends go in as the same bits, negative."""
    return value - (1 << 64) if value >= 1 << 63 else value


def set_rlimits(proc: Process) -> None:
    for r in proc.rlimits:
        resource.setrlimit(F.RLIMITS[r.type], (_rlim(r.soft), _rlim(r.hard)))


def finalize(sys: Syscalls, proc: Process) -> None:
    caps = proc.capabilities or Capabilities()
    last = F.last_cap()
    if proc.capabilities is not None:
        keep = cap_mask(caps.bounding)
        for bit in range(last + 1):
            if not keep & (1 << bit):
                sys.prctl(F.PR_CAPBSET_DROP, bit)

    user = proc.user
    sys.prctl(F.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(user.additional_gids))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    sys.prctl(F.PR_SET_KEEPCAPS, 0)

    if proc.capabilities is not None:
        sys.capset(cap_mask(caps.effective), cap_mask(caps.permitted), cap_mask(caps.inheritable))
        sys.prctl(F.PR_CAP_AMBIENT, F.PR_CAP_AMBIENT_CLEAR_ALL)
        for name in caps.ambient:
            bit = F.CAPABILITIES[name]
            if bit <= last:
                sys.prctl(F.PR_CAP_AMBIENT, F.PR_CAP_AMBIENT_RAISE, bit)
    if user.umask is not None:
        os.umask(user.umask)


def home_dir(uid: int, passwd: str = "/etc/passwd") -> str:
    """The home directory of `uid` in the current root's passwd file, "/" when none.

    Read by hand: the pwd module would go through NSS, loading the host's or the
    container's libraries at this point."""
    try:
        with open(passwd, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid) and fields[5]:
                    return fields[5]
    except OSError:
        pass
    return "/"


def lookup_path(args0: str, env: tuple[str, ...], cwd: str) -> str | None:
    """Resolve args[0] as execvp would, in the current root, with the container's PATH."""
    if "/" in args0:
        path = args0 if args0.startswith("/") else os.path.join(cwd, args0)
        return path if os.path.isfile(path) else None
    search = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for e in env:
        if e.startswith("PATH="):
            search = e[5:]
    for d in search.split(":"):
        cand = os.path.join(d or ".", args0)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None
