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
# TLS by default: env gives the servers and the admin's certificate.
eval "$(cl env | sed 's/^/export /')"
servers=$CONFMAN_SERVERS
grep -q "export CONFMAN_SERVERS=$servers" "$dir/up.txt" || fail "up does not print the endpoints"
grep -q "export CONFMAN_CERT=$dir/certs/admin.pem" "$dir/up.txt" || fail "up does not print the certificate"
grep -q "^ca = $dir/certs/ca.pem" "$dir/cluster.ini" || fail "the local cluster is not on TLS"
[ "$(stat -c %a "$dir/certs/node1.key")" = 600 ] || fail "a key file is not 0600"
ctl put /script/k v1 || fail "put"
[ "$(ctl get /script/k)" = v1 ] || fail "get over TLS"
env -u CONFMAN_CA -u CONFMAN_CERT -u CONFMAN_KEY "$build/client/confmanctl" --servers "$servers" \
	--timeout 2000 get /script/k 2>/dev/null && fail "a plain client was served"
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
