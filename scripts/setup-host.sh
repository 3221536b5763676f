#!/usr/bin/env bash
# Installs what the project needs on a Debian 12 host (run as root): the system packages
# listed in .ci/apt-packages.txt and this Python package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=$(grep -v '^#' .ci/apt-packages.txt | grep -v '^$' | tr '\n' ' ')
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=" $p"
done
if [ -n "$missing" ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi
# The tests start their own registries on free loopback ports; the Debian package's own
# service (on hosts that run systemd) is not wanted.
if command -v systemctl >/dev/null && systemctl is-active -q docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry || true
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# Replace pip's console scripts for pyrunc and pyctr with fast launchers (python -IS, no
# .pth files run; pyctr's with the site-packages of typer, grpc and protobuf on its path).
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
python3 -m oci_runtime.launcher "$scripts/pyrunc"
python3 -m oci_runtime.launcher "$scripts/pyctr" cli.ctr:main typer grpc google.protobuf
python3 -m compileall -q oci_runtime mkimage cli containerd_py shim >/dev/null

# crun 1.8 refuses a hybrid cgroup layout while a controller (hugetlb on these hosts) is
# still bound to the v2 mount. Give such a controller its own v1 hierarchy, as a v1 host has.
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
  for c in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
    if [ ! -d "/sys/fs/cgroup/$c" ] || ! mountpoint -q "/sys/fs/cgroup/$c"; then
      mkdir -p "/sys/fs/cgroup/$c"
      mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" || echo "could not move $c to v1"
    fi
  done
fi
