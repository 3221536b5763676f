"""The busybox root filesystem: which directories, accounts and links it holds."""

from __future__ import annotations

from mkimage.busybox import Busybox
from mkimage.tree import Node, dir_node, file_node

BUSYBOX_PATH = "bin/busybox"

# The unprivileged account tests run containers as, with supplementary groups so that
# additionalGids and `id -G` have something to show.
USER_NAME = "user"
USER_UID = 1000
USER_GID = 1000
USER_HOME = "/home/user"
USER_GROUPS = {"wheel": 10, "audio": 29}

NOBODY_UID = 65534
NOGROUP_GID = 65534

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"{USER_NAME}:x:{USER_UID}:{USER_GID}::{USER_HOME}:/bin/sh\n"
    f"nobody:x:{NOBODY_UID}:{NOGROUP_GID}:nobody:/nonexistent:/bin/false\n"
)

GROUP = (
    "root:x:0:\n"
    + "".join(f"{name}:x:{gid}:{USER_NAME}\n" for name, gid in USER_GROUPS.items())
    + f"{USER_NAME}:x:{USER_GID}:\n"
    + f"nogroup:x:{NOGROUP_GID}:\n"
)

HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

_DIRS: dict[str, int] = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "run": 0o755,
    "sbin": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
}


def rootfs_nodes(busybox: Busybox) -> list[Node]:
    nodes = [dir_node(path, mode) for path, mode in _DIRS.items()]
    nodes.append(dir_node(USER_HOME.lstrip("/"), 0o755, USER_UID, USER_GID))
    nodes += [
        file_node("etc/passwd", PASSWD.encode()),
        file_node("etc/group", GROUP.encode()),
        file_node("etc/hosts", HOSTS.encode()),
        file_node(BUSYBOX_PATH, busybox.data, 0o755),
    ]
    # Hard links, as Docker's own busybox image has: one copy of the binary in the layer,
    # and argv[0] still names the applet.
    nodes += [Node(applet, "hardlink", 0o755, target=BUSYBOX_PATH) for applet in busybox.applets]
    return nodes
