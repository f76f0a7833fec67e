#!/usr/bin/env bash
# The local-cluster script as people use it: up, write, kill -9 a node, start
# it again, pause/resume, down --wipe. Cleans up even when a step fails.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${CONFMAN_BUILD:-$top/build}
dir=$(mktemp -d /tmp/confman-script-XXXXXX)
port=${CONFMAN_IT_PORT:-17400}
cl() { "$top/scripts/cluster" -d "$dir" -p "$port" -b "$build" "$@"; }
trap 'cl down --wipe >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
ctl() { "$build/client/confmanctl" --servers "$servers" --timeout 5000 "$@"; }
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

cl up | tee "$dir/up.txt"
servers=$(cl env | cut -d= -f2)
grep -q "export CONFMAN_SERVERS=$servers" "$dir/up.txt" || fail "up does not print the endpoints"
ctl put /script/k v1 || fail "put"
cl kill 1
[ "$(cl status | grep -c ' up ')" = 2 ] || fail "kill did not stop node 1"
ctl put /script/k v2 || fail "put with node 1 down"
cl start 1
cl pause 2
ctl put /script/k v3 || fail "put with node 2 paused"
cl resume 2
[ "$(ctl get /script/k)" = v3 ] || fail "get"
cl stop 3
cl down --wipe
[ ! -d "$dir" ] || fail "down --wipe left $dir"
echo "1 passed, 0 failed"
