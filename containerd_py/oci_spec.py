"""The OCI runtime spec of a container made from an image (containerd's `oci.WithImageConfig`).

Our default spec (`oci_runtime.default_spec`, what `pyrunc spec` writes), then the image
config on top:

| image config     | spec                                                                |
|------------------|---------------------------------------------------------------------|
| Entrypoint + Cmd | process.args (args given by the caller replace Cmd, not Entrypoint) |
| Env              | process.env: the default PATH/TERM, overridden key by key by the    |
|                  | image's, then by the caller's                                       |
| WorkingDir       | process.cwd ("/" when unset)                                        |
| User             | process.user: "uid", "uid:gid", "name", "name:group"; names looked  |
|                  | up in the image's own /etc/passwd and /etc/group                    |

and for every container: a writable root at "rootfs" (the snapshot is writable), hostname
the container id, `linux.cgroupsPath` "/<namespace>/<id>" as containerd sets it, and no
terminal unless asked. Clients (pyctr, the Tasks service) build the spec; the Containers
service only stores it.

Names in User need the image's files: `passwd_lookup` reads /etc/passwd and /etc/group out of
the layer tars, topmost layer first, honouring whiteouts, without unpacking anything.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO

from containerd_py.errdefs import InvalidArgument, NotFound
from oci_runtime.default_spec import default_spec

SPEC_TYPE_URL = "types.pycontainerd/opencontainers/runtime-spec/1/Spec"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class User:
    uid: int
    gid: int


class PasswdLookup:
    """Users and groups of an image, from the text of its /etc/passwd and /etc/group."""

    def __init__(self, passwd: str = "", group: str = "") -> None:
        self.users: dict[str, tuple[int, int]] = {}
        self.uids: dict[int, int] = {}
        self.groups: dict[str, int] = {}
        for line in passwd.splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
                entry = (int(parts[2]), int(parts[3]))
                self.users.setdefault(parts[0], entry)
                self.uids.setdefault(entry[0], entry[1])
        for line in group.splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[2].isdigit():
                self.groups.setdefault(parts[0], int(parts[2]))

    def resolve(self, spec: str) -> User:
        """A Docker USER value ("1000", "1000:1000", "app", "app:staff", "1000:staff")."""
        user, _, group = spec.partition(":")
        if not user:
            raise InvalidArgument(f"invalid user {spec!r}")
        if user.isdigit():
            uid = int(user)
            gid = self.uids.get(uid, 0)
        elif user in self.users:
            uid, gid = self.users[user]
        else:
            raise NotFound(f"no user {user!r} in the image's /etc/passwd")
        if group:
            if group.isdigit():
                gid = int(group)
            elif group in self.groups:
                gid = self.groups[group]
            else:
                raise NotFound(f"no group {group!r} in the image's /etc/group")
        return User(uid, gid)


def _needs_lookup(user: str) -> bool:
    name, _, group = user.partition(":")
    return not name.isdigit() or bool(group and not group.isdigit())


def find_files(
    layers_top_first: Iterable[Callable[[], AbstractContextManager[BinaryIO]]],
    paths: Sequence[str],
    limit: int = 1 << 20,
) -> dict[str, str]:
    """The text of `paths` ("etc/passwd") as the image's merged filesystem shows them.

    Each layer is a function opening its (possibly compressed) tar. The first layer that
    has a path, or a whiteout for it or a parent, decides; files larger than `limit` are
    treated as absent.
    """
    from containerd_py.archive.compression import open_decompressed

    wanted = {p.strip("/") for p in paths}
    found: dict[str, str] = {}
    decided: set[str] = set()
    for open_layer in layers_top_first:
        if decided >= wanted:
            break
        here: dict[str, str | None] = {}  # path -> text (None: present, but not readable)
        hidden: set[str] = set()  # whited-out paths of lower layers
        opaque: set[str] = set()  # directories whose lower contents are hidden
        with open_layer() as raw:
            plain, _ = open_decompressed(raw)
            with tarfile.open(fileobj=plain, mode="r|") as tar:
                for member in tar:
                    name = "/".join(p for p in member.name.split("/") if p not in ("", "."))
                    head, _, base = name.rpartition("/")
                    if base == ".wh..wh..opq":
                        opaque.add(head)
                    elif base.startswith(".wh."):
                        hidden.add(f"{head}/{base[4:]}" if head else base[4:])
                    elif name in wanted and name not in decided:
                        text = None
                        if member.isreg() and member.size <= limit:
                            f = tar.extractfile(member)
                            if f is not None:
                                text = f.read().decode("utf-8", "replace")
                        here[name] = text
        for want in wanted - decided:
            if want in here:
                decided.add(want)
                if here[want] is not None:
                    found[want] = here[want]  # type: ignore[assignment]
                continue
            parts = want.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(len(parts))]  # "" is the root
            if any(p in opaque for p in prefixes) or any(
                "/".join(parts[: i + 1]) in hidden for i in range(len(parts))
            ):
                decided.add(want)
    return found


def build_spec(
    image_config: Mapping[str, Any],
    *,
    container_id: str,
    namespace: str = "default",
    args: Sequence[str] | None = None,
    env: Sequence[str] = (),
    terminal: bool = False,
    lookup: PasswdLookup | Callable[[], PasswdLookup] | None = None,
) -> dict[str, Any]:
    """The spec for a container of an image whose config document is `image_config`.

    `lookup` (or a function making one, called only when the image's User has names) resolves
    user and group names; without it such a User is InvalidArgument.
    """
    cfg = image_config.get("config") or {}
    if not isinstance(cfg, Mapping):
        raise InvalidArgument("image config: 'config' must be an object")
    entrypoint = _strings(cfg.get("Entrypoint"), "Entrypoint")
    cmd = _strings(cfg.get("Cmd"), "Cmd")
    argv = [*entrypoint, *(list(args) if args else cmd)]
    if not argv:
        raise InvalidArgument("the image has no Cmd or Entrypoint: give the command to run")
    spec = default_spec(
        argv, terminal=terminal, readonly=False, hostname=container_id[:63] or "pyctr"
    )
    process = spec["process"]
    process["env"] = merge_env(
        [DEFAULT_PATH, "TERM=xterm"] if terminal else [DEFAULT_PATH],
        _strings(cfg.get("Env"), "Env"),
        env,
    )
    workdir = cfg.get("WorkingDir") or "/"
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise InvalidArgument(f"image config: WorkingDir {workdir!r} must be an absolute path")
    process["cwd"] = workdir
    user = cfg.get("User") or ""
    if not isinstance(user, str):
        raise InvalidArgument("image config: User must be a string")
    if user:
        if _needs_lookup(user):
            if lookup is None:
                raise InvalidArgument(f"cannot resolve user {user!r} without the image's files")
            table = lookup if isinstance(lookup, PasswdLookup) else lookup()
        else:
            table = PasswdLookup()
        u = table.resolve(user)
        process["user"] = {"uid": u.uid, "gid": u.gid}
    spec["linux"]["cgroupsPath"] = f"/{namespace}/{container_id}"
    return spec


def merge_env(*lists: Iterable[str]) -> list[str]:
    """KEY=VALUE lists, later ones replacing earlier values of the same key."""
    out: dict[str, str] = {}
    for items in lists:
        for item in items:
            # A dict keeps the position of the first insertion: a replaced variable stays
            # where the image put it, as containerd's replaceOrAppendEnvValues does.
            out[item.partition("=")[0]] = item
    return list(out.values())


def _strings(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"image config: {what} must be a list of strings")
    return list(value)
