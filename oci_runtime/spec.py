"""The runtime-spec config.json as typed values: loaded, checked, and nothing else.

The value types are NamedTuples, not dataclasses: this module is imported by every
`pyrunc create`, and dataclasses cost more to import and build than the whole parse.

`load_bundle()` is the single entry point; everything past it can trust the types.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from oci_runtime import schema
from oci_runtime.linux import flags as F
from oci_runtime.schema import HOOK_KINDS, SpecError

SUPPORTED_MAJOR = "1."
PROPAGATIONS = {
    "": 0,
    "private": F.Mount.PRIVATE | F.Mount.REC,
    "rprivate": F.Mount.PRIVATE | F.Mount.REC,
    "slave": F.Mount.SLAVE | F.Mount.REC,
    "rslave": F.Mount.SLAVE | F.Mount.REC,
    "shared": F.Mount.SHARED | F.Mount.REC,
    "rshared": F.Mount.SHARED | F.Mount.REC,
    "unbindable": F.Mount.UNBINDABLE | F.Mount.REC,
    "runbindable": F.Mount.UNBINDABLE | F.Mount.REC,
}


class User(NamedTuple):
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None


class Rlimit(NamedTuple):
    type: str
    soft: int
    hard: int


class Capabilities(NamedTuple):
    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


class Process(NamedTuple):
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: User = User()
    terminal: bool = False
    console_size: tuple[int, int] | None = None  # (height, width)
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None


class Mount(NamedTuple):
    destination: str
    type: str = ""
    source: str = ""
    options: tuple[str, ...] = ()


class Hook(NamedTuple):
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


class Namespace(NamedTuple):
    type: str
    path: str = ""

    @property
    def flag(self) -> int:
        return F.NAMESPACES[self.type][0]


class IdMapping(NamedTuple):
    container_id: int
    host_id: int
    size: int


class Device(NamedTuple):
    type: str
    path: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


class Spec(NamedTuple):
    raw: dict[str, Any]
    bundle: str
    rootfs: str
    process: Process | None
    root_readonly: bool = False
    hostname: str | None = None
    domainname: str | None = None
    mounts: tuple[Mount, ...] = ()
    hooks: dict[str, tuple[Hook, ...]] = {}
    annotations: dict[str, str] = {}
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    cgroups_path: str = ""
    resources: dict[str, Any] = {}
    sysctl: dict[str, str] = {}
    seccomp: dict[str, Any] | None = None
    rootfs_propagation: str = ""
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


def _id_mappings(items: list[dict[str, Any]] | None, path: str) -> tuple[IdMapping, ...]:
    out = []
    for i, m in enumerate(items or []):
        for k in ("containerID", "hostID", "size"):
            if k not in m:
                raise SpecError(f"{path}[{i}].{k}: required")
        out.append(IdMapping(m["containerID"], m["hostID"], m["size"]))
    return tuple(out)


def parse_process(p: dict[str, Any], path: str = "process") -> Process:
    schema.check(p, schema.PROCESS, path)
    args = p.get("args") or []
    if not args:
        raise SpecError(f"{path}.args: must not be empty")
    cwd = p.get("cwd") or "/"
    if not cwd.startswith("/"):
        raise SpecError(f"{path}.cwd: must be an absolute path, got {cwd!r}")
    u = p.get("user") or {}
    user = User(
        uid=u.get("uid") or 0,
        gid=u.get("gid") or 0,
        additional_gids=tuple(u.get("additionalGids") or ()),
        umask=u.get("umask"),
    )
    caps = None
    if p.get("capabilities") is not None:
        c = p["capabilities"]
        for kind, names in c.items():
            for name in names or ():
                if name not in F.CAPABILITIES:
                    raise SpecError(f"{path}.capabilities.{kind}: unknown capability {name!r}")
        caps = Capabilities(**{k: tuple(c.get(k) or ()) for k in Capabilities._fields})
    rlimits = []
    for i, r in enumerate(p.get("rlimits") or []):
        if r.get("type") not in F.RLIMITS:
            raise SpecError(f"{path}.rlimits[{i}].type: unknown rlimit {r.get('type')!r}")
        rlimits.append(Rlimit(r["type"], r.get("soft", 0), r.get("hard", 0)))
    cs = p.get("consoleSize")
    return Process(
        args=tuple(args),
        env=tuple(p.get("env") or ()),
        cwd=cwd,
        user=user,
        terminal=bool(p.get("terminal")),
        console_size=(cs.get("height", 0), cs.get("width", 0)) if cs else None,
        capabilities=caps,
        rlimits=tuple(rlimits),
        no_new_privileges=bool(p.get("noNewPrivileges")),
        oom_score_adj=p.get("oomScoreAdj"),
    )


def parse(raw: Any, bundle: str | os.PathLike[str]) -> Spec:
    """Check every known field's type and meaning; raise SpecError naming the first bad one."""
    schema.check(raw, schema.CONFIG, "")
    version = raw.get("ociVersion")
    if not version:
        raise SpecError("ociVersion: required")
    if not version.startswith(SUPPORTED_MAJOR):
        raise SpecError(f"ociVersion: unsupported version {version!r} (want 1.x)")
    root = raw.get("root") or {}
    if not root.get("path"):
        raise SpecError("root.path: required")
    bundle = os.fspath(bundle)
    rootfs = os.path.join(bundle, root["path"])
    process = parse_process(raw["process"]) if raw.get("process") is not None else None

    mounts = []
    for i, m in enumerate(raw.get("mounts") or []):
        dest = m.get("destination")
        if not dest:
            raise SpecError(f"mounts[{i}].destination: required")
        if not dest.startswith("/"):
            raise SpecError(f"mounts[{i}].destination: must be absolute, got {dest!r}")
        mounts.append(
            Mount(dest, m.get("type") or "", m.get("source") or "", tuple(m.get("options") or ()))
        )

    hooks = {}
    for kind in HOOK_KINDS:
        items = (raw.get("hooks") or {}).get(kind) or []
        for i, h in enumerate(items):
            if not h.get("path"):
                raise SpecError(f"hooks.{kind}[{i}].path: required")
            if h.get("timeout") is not None and h["timeout"] <= 0:
                raise SpecError(f"hooks.{kind}[{i}].timeout: must be positive")
        hooks[kind] = tuple(
            Hook(h["path"], tuple(h.get("args") or ()), tuple(h.get("env") or ()), h.get("timeout"))
            for h in items
        )

    linux = raw.get("linux") or {}
    namespaces = []
    seen = set()
    for i, n in enumerate(linux.get("namespaces") or []):
        kind = n.get("type")
        if kind not in F.NAMESPACES:
            raise SpecError(f"linux.namespaces[{i}].type: unknown namespace type {kind!r}")
        if kind in seen:
            raise SpecError(f"linux.namespaces[{i}].type: duplicate namespace {kind!r}")
        seen.add(kind)
        ns_path = n.get("path") or ""
        if ns_path and not os.path.exists(ns_path):
            raise SpecError(f"linux.namespaces[{i}].path: {ns_path}: no such namespace file")
        namespaces.append(Namespace(kind, ns_path))

    uid_maps = _id_mappings(linux.get("uidMappings"), "linux.uidMappings")
    gid_maps = _id_mappings(linux.get("gidMappings"), "linux.gidMappings")
    userns = "user" in seen
    if (uid_maps or gid_maps) and not userns:
        raise SpecError("linux.uidMappings: mappings given without a user namespace")
    new_userns = userns and not any(n.path for n in namespaces if n.type == "user")
    if new_userns and (not uid_maps or not gid_maps):
        raise SpecError("linux.uidMappings: a new user namespace needs uid and gid mappings")

    devices = []
    for i, d in enumerate(linux.get("devices") or []):
        if d.get("type") not in ("c", "b", "u", "p"):
            raise SpecError(f"linux.devices[{i}].type: must be c, b, u or p")
        if not d.get("path"):
            raise SpecError(f"linux.devices[{i}].path: required")
        devices.append(
            Device(
                d["type"],
                d["path"],
                d.get("major", 0),
                d.get("minor", 0),
                d.get("fileMode"),
                d.get("uid"),
                d.get("gid"),
            )
        )

    resources = linux.get("resources") or {}
    if resources:
        from oci_runtime.cgroups.resources import Resources

        try:
            Resources.from_dict(resources)
        except ValueError as e:
            raise SpecError(str(e)) from None

    seccomp = linux.get("seccomp")
    if seccomp is not None:
        from oci_runtime import seccomp as sc

        try:
            sc.validate(seccomp)
        except ValueError as e:
            raise SpecError(str(e)) from None

    prop = linux.get("rootfsPropagation") or ""
    if prop not in PROPAGATIONS:
        raise SpecError(f"linux.rootfsPropagation: unknown propagation {prop!r}")

    return Spec(
        raw=raw,
        bundle=bundle,
        rootfs=rootfs,
        process=process,
        root_readonly=bool(root.get("readonly")),
        hostname=raw.get("hostname"),
        domainname=raw.get("domainname"),
        mounts=tuple(mounts),
        hooks=hooks,
        annotations=dict(raw.get("annotations") or {}),
        namespaces=tuple(namespaces),
        uid_mappings=uid_maps,
        gid_mappings=gid_maps,
        devices=tuple(devices),
        cgroups_path=linux.get("cgroupsPath") or "",
        resources=resources,
        sysctl=dict(linux.get("sysctl") or {}),
        seccomp=seccomp,
        rootfs_propagation=prop,
        masked_paths=tuple(linux.get("maskedPaths") or ()),
        readonly_paths=tuple(linux.get("readonlyPaths") or ()),
    )


def load_bundle(bundle: str | os.PathLike[str]) -> Spec:
    bundle = os.path.realpath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file (is {bundle} a bundle?)") from None
    except OSError as e:
        raise SpecError(f"{path}: {e.strerror}") from None
    from oci_runtime.jsonread import loads

    try:
        raw = loads(text)
    except ValueError as e:
        raise SpecError(f"{path}: invalid JSON: {e}") from None
    spec = parse(raw, bundle)
    if spec.process is None:
        raise SpecError("process: required")
    if not os.path.isdir(spec.rootfs):
        raise SpecError(f"root.path: {spec.rootfs}: not a directory")
    return spec
