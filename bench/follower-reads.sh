#!/usr/bin/env bash
# follower-reads.sh: follower-read throughput from all replicas against
# leader-only reads, in the same run, on one 3-node loopback cluster.
#
# Usage: bench/follower-reads.sh [BUILD] [SECONDS]   (default build, 10)
#
# Leader only: one cm-load with 63 clients sending follower reads to the
# leader. All replicas: three cm-load processes, 21 clients each, each pinned
# to one node (the same 63 requests in flight in all). One client, all
# listed: one cm-load with 63 clients given all three servers, which the
# client library spreads itself (the least-loaded replica). 256-byte values,
# 10,000 keys. Prints ops/s and p99 of each and the ratios. Cleans up on exit.
set -euo pipefail

build=${1:-build}
secs=${2:-10}
top=$(cd "$(dirname "$0")/.." && pwd)
load="$top/$build/bench/cm-load"
ctl="$top/$build/client/confmanctl"
port=19700
dir=$(mktemp -d /tmp/confman-fr-XXXXXX)
cl() { "$top/scripts/cluster" -d "$dir" -p "$port" -b "$top/$build" "$@"; }
trap 'cl down >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
servers="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
common=(--op get --consistency follower --value-size 256 --keys 10000 --duration "$secs"
	--warmup 2 --json)

num() { grep -o "\"$1\":[0-9.e+]*" "$2" | head -1 | cut -d: -f2; }

cl --insecure up >/dev/null
leader=""
for _ in $(seq 1 100); do
	leader=$("$ctl" --servers "$servers" status 2>/dev/null |
		awk '/^[0-9]/ { a = $1 } $2 == "/" && $3 == "leader" { print a; exit }')
	[ -n "$leader" ] && break
	sleep 0.1
done
[ -n "$leader" ] || { echo "no leader"; exit 1; }

"$load" --servers "$leader" --clients 63 "${common[@]}" >"$dir/leader.json"
pids=()
for i in 0 1 2; do
	"$load" --servers "127.0.0.1:$((port + i))" --clients 21 "${common[@]}" >"$dir/r$i.json" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$load" --servers "$servers" --clients 63 "${common[@]}" >"$dir/spread.json"

lo=$(num ops_per_s "$dir/leader.json")
lp=$(num p99 "$dir/leader.json")
all=0
worst=0
for i in 0 1 2; do
	all=$(awk -v a="$all" -v b="$(num ops_per_s "$dir/r$i.json")" 'BEGIN { print a + b }')
	worst=$(awk -v a="$worst" -v b="$(num p99 "$dir/r$i.json")" 'BEGIN { print (b > a ? b : a) }')
done
echo "follower reads, 63 in flight, 256-byte values, ${secs} s, $(nproc) cores, leader $leader"
printf "%-28s %12s %10s\n" case ops/s p99_us
printf '%-28s %12.0f %10s\n' "leader only" "$lo" "$lp"
printf '%-28s %12.0f %10s\n' "all 3 replicas (sum)" "$all" "$worst"
so=$(num ops_per_s "$dir/spread.json")
printf '%-28s %12.0f %10s\n' "one client, all listed" "$so" "$(num p99 "$dir/spread.json")"
awk -v a="$all" -v l="$lo" 'BEGIN { printf "ratio all/leader: %.2f\n", a / l }'
awk -v a="$so" -v l="$lo" 'BEGIN { printf "ratio one client spread/leader: %.2f\n", a / l }'
