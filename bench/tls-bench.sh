#!/usr/bin/env bash
# tls-bench.sh: what TLS costs: puts and follower reads through cm-load on a
# 3-node cluster on tmpfs with TLS and the same cluster plain (insecure =
# true), in one run, alternating TLS and plain ROUNDS times so that the
# machine's other load hits both alike; prints each run, the medians and
# the ratios TLS/plain (of the medians, and the median of each round's pair).
#
# Usage: bench/tls-bench.sh [ROUNDS] (default 3)
# Env:   BUILD (default build), PORT (default 27401), SECS per run (default 8),
#        CLIENTS (default 64)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
build=${BUILD:-build}
port=${PORT:-27401}
secs=${SECS:-8}
clients=${CLIENTS:-64}
base=$(mktemp -d /dev/shm/cm-tls-bench-XXXXXX)
out=$base/results
trap 'for m in tls plain; do scripts/cluster -d "$base/$m" -p "$port" down >/dev/null 2>&1 || true; done; rm -rf "$base"' EXIT

run_mode() { # mode op -> ops/s
	local mode=$1 op=$2 flag=()
	[ "$mode" = plain ] && flag=(--insecure)
	scripts/cluster -d "$base/$mode" -p "$port" -b "$build" "${flag[@]}" up >/dev/null
	(
		eval "$(scripts/cluster -d "$base/$mode" -p "$port" env | sed 's/^/export /')"
		[ "$mode" = plain ] && unset CONFMAN_CA CONFMAN_CERT CONFMAN_KEY
		for _ in $(seq 1 50); do
			"$build/client/confmanctl" --timeout 500 put /bench-ready x >/dev/null 2>&1 && break
			sleep 0.1
		done
		"$build/bench/cm-load" --op "$op" --clients "$clients" --duration "$secs" --warmup 2 \
			--consistency follower --json
	) | python3 -c 'import json,sys; print(json.load(sys.stdin)["ops_per_s"])'
	scripts/cluster -d "$base/$mode" -p "$port" down --wipe >/dev/null
}

for r in $(seq 1 "$rounds"); do
	for op in put get; do
		for mode in tls plain; do
			v=$(run_mode "$mode" "$op")
			echo "round $r  $op  $mode  $v ops/s"
			echo "$op $mode $v" >>"$out"
		done
	done
done
python3 - "$out" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    op, mode, v = line.split()
    runs.setdefault((op, mode), []).append(float(v))
for op in ("put", "get"):
    tls, plain = runs[(op, "tls")], runs[(op, "plain")]
    t, p = statistics.median(tls), statistics.median(plain)
    # Each TLS run is paired with the plain run right after it: the load
    # of a shared machine drifts less within a pair than across the run.
    paired = statistics.median(a / b for a, b in zip(tls, plain))
    print("%-4s median ops/s: TLS %9.0f  plain %9.0f  TLS/plain %.2f  (median of paired ratios %.2f)"
          % (op, t, p, t / p, paired))
PY
