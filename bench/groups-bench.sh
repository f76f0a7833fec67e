#!/usr/bin/env bash
# groups-bench.sh: many mostly idle groups on one 3-node loopback cluster.
#
# Usage: bench/groups-bench.sh [GROUPS] [BUILD]     (default 1000, build)
#
# For quiescence on (the default) and off (--quiesce-ticks 0, the reference
# in the same run) it measures: the time until every group has a leader after
# a cold start, the idle CPU of each node over 10 s once the groups went
# quiet, and the time until every group has a leader again after all three
# nodes were killed with SIGKILL and restarted. Cleans up on any exit.
set -euo pipefail

groups=${1:-1000}
build=${2:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
ctl="$top/$build/client/confmanctl"
port=19500
dir=$(mktemp -d /tmp/confman-groups-XXXXXX)
cl() { "$top/scripts/cluster" -d "$dir" -p "$port" -b "$top/$build" "$@"; }
trap 'cl down >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
servers="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
hz=$(getconf CLK_TCK)

write_ini() {
	{
		echo "[cluster]"
		echo "insecure = true"
		echo "id = confman"
		for i in 1 2 3; do
			echo "[node.$i]"
			echo "address = 127.0.0.1:$((port + i - 1))"
		done
		echo "[group.1]"
		echo "prefix = /"
		echo "replicas = 1,2,3"
		for g in $(seq 2 "$groups"); do
			printf '[group.%d]\nprefix = /g%05d\nreplicas = 1,2,3\n' "$g" "$g"
		done
	} >"$dir/cluster.ini"
}

# Leaders across the three nodes (each group's leader reports it), meta included.
leaders() {
	local n=0 i c
	for i in 0 1 2; do
		c=$("$ctl" --servers "127.0.0.1:$((port + i))" --timeout 2000 status --json 2>/dev/null |
			grep -o '"role":"leader"' | wc -l || true)
		n=$((n + c))
	done
	echo "$n"
}

wait_leaders() {
	local start=$1 want=$((groups + 1))
	while [ "$(leaders)" -lt "$want" ]; do
		if [ $(($(date +%s%N) - start)) -gt 120000000000 ]; then
			echo "timeout"
			return
		fi
		sleep 0.2
	done
	echo "$(( ($(date +%s%N) - start) / 1000000 ))"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

idle_cpu() {
	local pids=() before=() i
	for i in 1 2 3; do pids+=("$(cat "$dir/node$i.pid")"); done
	for i in 0 1 2; do before+=("$(cpu_ticks "${pids[$i]}")"); done
	sleep 10
	local out=""
	for i in 0 1 2; do
		local d=$(($(cpu_ticks "${pids[$i]}") - before[i]))
		out="$out $(awk -v d="$d" -v hz="$hz" 'BEGIN { printf "%.1f%%", 100 * d / hz / 10 }')"
	done
	echo "$out"
}

run_case() {
	local name=$1 quiesce=$2
	cl down >/dev/null 2>&1 || true
	rm -rf "$dir"/node*
	write_ini
	local t0
	t0=$(date +%s%N)
	cl --insecure up -- --quiesce-ticks "$quiesce" >/dev/null
	local cold
	cold=$(wait_leaders "$t0")
	sleep 5 # long enough for every idle group to go quiet
	local cpu
	cpu=$(idle_cpu)
	for i in 1 2 3; do cl kill "$i"; done
	t0=$(date +%s%N)
	for i in 1 2 3; do cl start "$i" -- --quiesce-ticks "$quiesce"; done
	local warm
	warm=$(wait_leaders "$t0")
	printf '%-22s %10s %12s   %s\n' "$name" "$cold" "$warm" "$cpu"
}

echo "groups: $groups on 3 nodes (loopback), tick 50 ms, election 10 ticks; $(nproc) cores"
printf '%-22s %10s %12s   %s\n' "case" "cold ms" "restart ms" "idle CPU per node (10 s)"
run_case "quiescence (default)" 20
run_case "no quiescence (ref)" 0
