#!/usr/bin/env bash
# The main job on a fresh Debian 12 host (as root): install everything, build a busybox
# image locally (no registry needed), and run a container from it with pyrunc.
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
echo "== done"
