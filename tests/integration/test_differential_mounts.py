"""Differential: the container's filesystem view under pyrunc, runc and crun.

The normalized mount table (see `probes.mount_table` for what counts as implementation detail)
is compared with runc's on the same bundle; masked and read-only paths, the read-only root,
bind mounts and tmpfs options are checked by what a process can and cannot do.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import probes
from tests.probes import Background, MountRow, Outcome, chain, mount_table, probe, sh

pytestmark = [pytest.mark.root]
reference = probes.reference  # the fixture

MOUNTINFO = "cat /proc/self/mountinfo"


def table(o: Outcome) -> list[MountRow]:
    assert o.code == 0, o
    return mount_table(o.out)


def add_mounts(*mounts: dict):
    def edit(cfg):
        cfg["mounts"].extend(mounts)

    return edit


def bind(dest: str, source: str | Path, *options: str) -> dict:
    return {"destination": dest, "type": "bind", "source": str(source), "options": list(options)}


def fstype_of(path: str | Path) -> str:
    """The type of the filesystem `path` is on, from the test process's own mount table."""
    p = os.path.realpath(path)
    best, fstype = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mp = left.split()[4]
        if (p == mp or p.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
            best, fstype = mp, right.split()[0]
    return fstype


def rows_at(rows: list[MountRow], mountpoint: str) -> list[str]:
    return [str(r) for r in rows if r.mountpoint == mountpoint]


def test_default_mount_table(runtime, bundle, reference, rootfs_template):
    rows = table(probe(runtime, bundle, MOUNTINFO))
    # What the default spec asks for, whatever the runtime.
    assert rows_at(rows, "/") == [f"/ {fstype_of(rootfs_template)} ro"]
    assert rows_at(rows, "/proc") == ["/proc proc rw"]
    assert rows_at(rows, "/dev") == ["/dev tmpfs rw,nosuid"]
    assert rows_at(rows, "/dev/pts") == ["/dev/pts devpts rw,nosuid,noexec"]
    assert rows_at(rows, "/dev/shm") == ["/dev/shm tmpfs rw,nosuid,nodev,noexec"]
    assert rows_at(rows, "/dev/mqueue") == ["/dev/mqueue mqueue rw,nosuid,nodev,noexec"]
    assert rows_at(rows, "/sys") == ["/sys sysfs ro,nosuid,nodev,noexec"]
    assert rows_at(rows, "/proc/sys") == ["/proc/sys proc ro"]
    assert rows_at(rows, "/proc/keys") == ["/proc/keys masked-file "]
    assert rows_at(rows, "/sys/firmware") == ["/sys/firmware tmpfs ro"]
    # No device node is a mount: they are made with mknod, not bound from the host.
    assert not [r for r in rows if r.mountpoint in ("/dev/null", "/dev/zero", "/dev/tty")]
    reference.same(runtime, rows, bundle, MOUNTINFO, table)


@pytest.mark.cgroup_v1
def test_cgroup_mounts(runtime, bundle, reference):
    # The v1 layout: a tmpfs at /sys/fs/cgroup (read-write under every runtime) with one
    # read-only mount per hierarchy the host has.
    rows = table(probe(runtime, bundle, MOUNTINFO))
    cg = [r for r in rows if r.mountpoint.startswith("/sys/fs/cgroup")]
    assert str(cg[0]) == "/sys/fs/cgroup tmpfs rw,nosuid,nodev,noexec"
    hierarchies = {r.mountpoint.rsplit("/", 1)[1]: r for r in cg[1:]}
    for name in ("cpu", "memory", "pids", "freezer", "devices"):
        if Path("/sys/fs/cgroup", name).is_dir():
            assert hierarchies[name].fstype == "cgroup"
            assert hierarchies[name].flags == "ro,nosuid,nodev,noexec"
    reference.same(runtime, cg, bundle, MOUNTINFO, lambda o: _cg(table(o)))


def _cg(rows: list[MountRow]) -> list[MountRow]:
    return [r for r in rows if r.mountpoint.startswith("/sys/fs/cgroup")]


@pytest.fixture
def host_dir(short_tmp: Path) -> Path:
    d = short_tmp / "share"
    d.mkdir()
    d.chmod(0o755)
    (d / "hello.txt").write_text("from the host\n")
    return d


def test_mount_table_with_binds_and_tmpfs(runtime, bundle, reference, host_dir):
    edit = add_mounts(
        bind("/home", host_dir, "rbind", "ro"),
        bind("/var", host_dir, "rbind"),
        bind("/etc/hosts", host_dir / "hello.txt", "bind", "ro", "nosuid", "nodev", "noexec"),
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=1777"],
        },
    )
    rows = table(probe(runtime, bundle, MOUNTINFO, edit=edit))
    assert rows_at(rows, "/home") == [f"/home {fstype_of(host_dir)} ro"]
    assert rows_at(rows, "/var") == [f"/var {fstype_of(host_dir)} rw"]
    assert rows_at(rows, "/etc/hosts") == [
        f"/etc/hosts {fstype_of(host_dir)} ro,nosuid,nodev,noexec"
    ]
    assert rows_at(rows, "/tmp") == ["/tmp tmpfs rw,nosuid,nodev,noexec"]
    reference.same(runtime, rows, bundle, MOUNTINFO, table, edit=edit)


def _first_existing(*paths: str) -> str:
    for p in paths:
        if os.path.exists(p):
            return p
    pytest.skip(f"none of {paths} exists on this kernel")


def test_masked_paths(runtime, bundle):
    # Which masked files exist depends on the kernel's config (no /proc/kcore here).
    masked_file = _first_existing("/proc/kcore", "/proc/keys", "/proc/timer_list")
    masked_dir = _first_existing("/proc/acpi", "/proc/scsi", "/proc/asound")
    script = (
        f"echo file=$(wc -c < {masked_file}); "
        f"echo dir=$(ls -A {masked_dir} | wc -l); "
        "echo firmware=$(ls -A /sys/firmware | wc -l); "
        f"echo x > {masked_file}; echo write=$?; "
        "touch /sys/firmware/x; echo touch=$?"
    )
    got = probe(runtime, bundle, script)
    # The file is /dev/null's node: it reads empty, writes succeed and go nowhere.
    assert got.out.splitlines() == ["file=0", "dir=0", "firmware=0", "write=0", "touch=1"], got
    assert "Read-only file system" in got.err, got


def test_masked_path_that_does_not_exist_is_skipped(runtime, bundle):
    def edit(cfg):
        cfg["linux"]["maskedPaths"].append("/no/such/path")

    got = probe(runtime, bundle, "test -e /no/such/path; echo exists=$?", edit=edit)
    assert (got.code, got.out) == (0, "exists=1\n"), got


def test_readonly_paths(runtime, bundle):
    script = (
        "echo 1 > /proc/sys/kernel/ns_last_pid; echo sys=$?; "
        "cat /proc/sys/kernel/ostype; "
        "grep -c . /proc/irq/default_smp_affinity"
    )
    got = probe(runtime, bundle, script)
    assert got.out.splitlines() == ["sys=1", "Linux", "1"], got
    assert "Read-only file system" in got.err, got


def test_readonly_root(runtime, bundle):
    got = probe(runtime, bundle, "touch /x; echo touch=$?; mkdir /etc/d; echo mkdir=$?")
    assert got.out.splitlines() == ["touch=1", "mkdir=1"], got
    assert got.err.count("Read-only file system") == 2, got


def test_writable_root(runtime, bundle):
    b = bundle(["sh", "-c", "echo hi > /x && cat /x && rm /x && echo removed"], writable=True)
    p = runtime.run(b)
    assert (p.returncode, p.stdout) == (0, b"hi\nremoved\n"), p.stderr


def test_bind_mounts_ro_and_rw(runtime, bundle, host_dir):
    edit = add_mounts(
        bind("/home", host_dir, "rbind", "ro"),
        bind("/var", host_dir, "rbind", "rw"),
    )
    script = (
        "cat /home/hello.txt; echo a > /home/new; echo ro=$?; "
        "echo written-inside > /var/new; echo rw=$?"
    )
    got = probe(runtime, bundle, script, edit=edit)
    assert got.out.splitlines() == ["from the host", "ro=1", "rw=0"], got
    assert "Read-only file system" in got.err
    assert (host_dir / "new").read_text() == "written-inside\n"


def test_bind_mount_of_a_file(runtime, bundle, host_dir):
    edit = add_mounts(bind("/etc/hosts", host_dir / "hello.txt", "bind", "ro"))
    got = probe(runtime, bundle, "cat /etc/hosts", edit=edit)
    assert (got.code, got.out) == (0, "from the host\n"), got


def test_tmpfs_with_options(runtime, bundle):
    # A writable copy of the rootfs, so that /scratch is new under every runtime: runc 1.1
    # gives a tmpfs over an existing directory that directory's mode instead of mode=
    # (crun and pyrunc keep mode=), a runc/crun difference the test stays clear of.
    def edit(cfg):
        cfg["mounts"].append(
            {
                "destination": "/scratch",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": [
                    "nosuid",
                    "nodev",
                    "noexec",
                    "size=2m",
                    "mode=1770",
                    "uid=1000",
                    "gid=29",
                ],
            }
        )
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [29]}

    script = (
        "stat -c '%a %u %g' /scratch; df -k /scratch | tail -1 | awk '{print $2}'; "
        "cp /bin/busybox /scratch/bb && /scratch/bb true; echo exec=$?; "
        "rm -f /scratch/bb; head -c 3000000 /dev/zero > /scratch/big; echo fill=$?; "
        "wc -c < /scratch/big"
    )
    got = probe(runtime, bundle, script, edit=edit, writable=True)
    lines = got.out.splitlines()
    assert lines[0] == "1770 1000 29", got
    assert lines[1] == "2048", got
    assert lines[2] == "exec=126", got  # noexec: Permission denied
    assert lines[3] == "fill=1", got  # size=2m: the write fails (ENOSPC)...
    assert int(lines[4]) == 2048 * 1024, got  # ...once 2 MiB are in


def test_tmpfs_readonly(runtime, bundle):
    edit = add_mounts(
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]}
    )
    got = probe(runtime, bundle, "touch /run/x; echo touch=$?", edit=edit)
    assert got.out == "touch=1\n", got


def test_mount_propagation_from_host(runtime, bundle, host_dir, short_tmp):
    # rslave: a mount made on the host below a bind's source, after start, shows inside. The
    # root propagation is given: runc and pyrunc default to rslave, crun to rprivate, which
    # cuts every mount off the host's before the per-mount "rslave" could take effect.
    src = short_tmp / "prop"
    src.mkdir()
    edit = chain(
        add_mounts(
            bind("/root", src, "rbind", "rslave"),
            bind("/var", host_dir, "rbind"),
        ),
        lambda cfg: cfg["linux"].update(rootfsPropagation="rslave"),
    )
    script = "while [ ! -e /var/go ]; do sleep 0.02; done; cat /root/sub/marker"
    # The source must be a shared mount on the host for mount events to propagate.
    subprocess.run(["mount", "--bind", src, src], check=True)
    try:
        subprocess.run(["mount", "--make-shared", src], check=True)
        bg = Background(runtime, bundle(sh(script), edit=edit))
        try:
            bg.wait_running()
            (src / "sub").mkdir()
            inner = short_tmp / "inner"
            inner.mkdir()
            (inner / "marker").write_text("propagated\n")
            subprocess.run(["mount", "--bind", str(inner), str(src / "sub")], check=True)
            try:
                (host_dir / "go").write_text("")
                got = bg.finish()
            finally:
                subprocess.run(["umount", "-l", str(src / "sub")], check=False)
        finally:
            bg.close()
    finally:
        subprocess.run(["umount", "-l", src], check=False)
    assert (got.code, got.out) == (0, "propagated\n"), got


DEV_LISTING = (
    "cd /dev; for f in * pts/* shm mqueue; do "
    "stat -c '%n %F %a %t:%T %u:%g' $f; readlink $f || true; done"
)


def dev_listing(o: Outcome) -> list[str]:
    assert o.code == 0, o
    lines = o.out.splitlines()
    # crun adds a /dev/core -> /proc/kcore link that runc and pyrunc do not make.
    if lines[:2] == ["core symbolic link 777 0:0 0:0", "/proc/kcore"]:
        lines = lines[2:]
    return lines


def test_dev_contents(runtime, bundle, reference):
    # The default devices, the standard links and modes, made with mknod (owned by root).
    rows = dev_listing(probe(runtime, bundle, DEV_LISTING))
    assert "null character special file 666 1:3 0:0" in rows
    assert "tty character special file 666 5:0 0:0" in rows
    assert rows[rows.index("ptmx symbolic link 777 0:0 0:0") + 1] == "pts/ptmx"
    assert "console" not in " ".join(rows)  # no terminal, no /dev/console
    reference.same(runtime, rows, bundle, DEV_LISTING, dev_listing)
