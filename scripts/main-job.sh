#!/usr/bin/env bash
# The main job on a fresh Debian 12 host (as root): install everything, build a busybox
# image locally (no registry needed), run a container from it with pyrunc, then start the
# stack (pycontainerd with its shims), run containers through pyctr, and push the image to
# a registry on 127.0.0.1 and pull it back.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh

work=$(mktemp -d /tmp/pyrunc-demo.XXXXXX)
trap 'pyrunc --root "$work/state" delete --force demo >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

echo "== building a busybox bundle with pymkimage"
pymkimage bundle "$work/bundle" --args /bin/sh -c 'echo "hello from $(hostname), pid $$"; id; cat /proc/self/cgroup | grep memory'

echo "== pyrunc run"
pyrunc --root "$work/state" run --bundle "$work/bundle" demo

echo "== create / start / state / exec / delete of a long-running container"
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
cfg = json.load(open(path))
cfg["process"]["args"] = ["sleep", "300"]
cfg["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
json.dump(cfg, open(path, "w"), indent=2)
PY
pyrunc --root "$work/state" create --bundle "$work/bundle" demo </dev/null >/dev/null 2>&1
pyrunc --root "$work/state" start demo
pyrunc --root "$work/state" state demo
pyrunc --root "$work/state" exec demo sh -c 'echo "exec sees: $(ps | wc -l) lines of ps"; cat /sys/fs/cgroup/memory/memory.limit_in_bytes'
pyrunc --root "$work/state" list
pyrunc --root "$work/state" delete --force demo

echo "== the stack: pycontainerd on a private socket, the image imported, containers run"
stack=$(mktemp -d /tmp/pystack.XXXXXX)
sock="$stack/c.sock"
pid=""
reg=""
cleanup_stack() {
  for id in web; do
    pyctr -a "$sock" tasks kill -s KILL "$id" >/dev/null 2>&1 || true
    pyctr -a "$sock" tasks rm "$id" >/dev/null 2>&1 || true
    pyctr -a "$sock" containers rm "$id" >/dev/null 2>&1 || true
  done
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$reg" ]; then kill "$reg" 2>/dev/null || true; wait "$reg" 2>/dev/null || true; fi
  grep -o " $stack[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$stack"
}
trap 'cleanup_stack; pyrunc --root "$work/state" delete --force demo >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
pycontainerd --root "$stack/root" --state "$stack/state" --address "$sock" 2>"$stack/daemon.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
pymkimage oci-layout --tar "$stack/busybox.tar"
pyctr -a "$sock" images import "$stack/busybox.tar"
pyctr -a "$sock" images ls
pyctr -a "$sock" run --rm docker.io/library/busybox:latest hello sh -c 'echo "hello from a task of pycontainerd: $(hostname)"'
pyctr -a "$sock" run -d docker.io/library/busybox:latest web sh -c 'while :; do echo tick; sleep 1; done'
pyctr -a "$sock" tasks ls
pyctr -a "$sock" tasks exec --exec-id probe web sh -c 'echo "exec in web: $(ps | wc -l) lines of ps"'
pyctr -a "$sock" tasks kill -s KILL web
pyctr -a "$sock" tasks rm web
pyctr -a "$sock" containers rm web

echo "== a registry on 127.0.0.1: push the image, remove it, pull it back, run it"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$stack/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $stack/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$stack/registry.yml" >"$stack/registry.log" 2>&1 &
reg=$!
for _ in $(seq 100); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null && break; sleep 0.1; done
pyctr -a "$sock" images tag docker.io/library/busybox:latest "127.0.0.1:$port/demo/busybox:1"
pyctr -a "$sock" images push --plain-http "127.0.0.1:$port/demo/busybox:1"
# Both names go and the blobs with them (--sync collects now): the pull fetches them again.
pyctr -a "$sock" images rm --sync docker.io/library/busybox:latest "127.0.0.1:$port/demo/busybox:1"
pyctr -a "$sock" images pull --plain-http "127.0.0.1:$port/demo/busybox:1"
pyctr -a "$sock" run --rm "127.0.0.1:$port/demo/busybox:1" pulled echo "hello from the pulled image"
echo "== done"
