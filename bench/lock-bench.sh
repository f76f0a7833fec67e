#!/usr/bin/env bash
# lock-bench.sh: cluster lock round trips, Confman against etcd in the same run.
#
# Usage: bench/lock-bench.sh [options]
#   --rounds N       lock runs per CLI measurement (default 200)
#   --lib-rounds N   acquire/release rounds through the library (default 2000)
#   --out DIR        keep the raw results (per-run times, logs) in DIR
#   -h, --help       this text
#
# In one run on this machine:
#  1. installs what is missing (etcd-server, etcd-client, jq) and builds build/;
#  2. a 3-node Confman cluster (scripts/cluster, plain TCP, data in /var/tmp):
#     N times `confmanctl lock /bench/lock -- true` one after the other (each
#     grants a lease, acquires, runs true, releases, revokes: a process and a
#     connection each), then build/bench/cm-lock-loop: one lease, then
#     acquire + release on one connection, uncontended;
#  3. a 3-node etcd (Debian's etcd-server, bench-lib.sh's bl_etcd_up, same
#     disk): N times `etcdctl lock /bench/lock true` (the same steps: lease,
#     acquire, run, release, revoke);
#  4. lock runs per second, their p50/p99 latency, the ratios Confman/etcd,
#     and the library's round trips per second and acquire latency.
#
# Ports 15300-15302 (+1000: HTTP) for Confman, 15320-15322 and 15330-15332 for
# etcd, on 127.0.0.1. Every process and directory it starts or makes is
# removed on exit, also on failure or Ctrl-C. Exit status: 0 ok, 1 a run
# failed, 2 bad usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # sourced files, by path
set -euo pipefail

die() { echo "lock-bench: $*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

ROUNDS=200
LIB_ROUNDS=2000
OUT=""
CM_PORT=15300
ETCD_CLIENT_PORT=15320
ETCD_PEER_PORT=15330

while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=${2:-}; shift 2 ;;
	--lib-rounds) LIB_ROUNDS=${2:-}; shift 2 ;;
	--out) OUT=${2:-}; shift 2 ;;
	*) bl_opt_other lock-bench "$1" ;;
	esac
done
bl_is_uint "$ROUNDS" || { echo "lock-bench: --rounds must be a positive integer" >&2; exit 2; }
bl_is_uint "$LIB_ROUNDS" || { echo "lock-bench: --lib-rounds must be a positive integer" >&2; exit 2; }

cd "$(dirname "$0")/.."
ROOT=$PWD
CTL=$ROOT/build/client/confmanctl
LOOP=$ROOT/build/bench/cm-lock-loop

CM_DIR=""
WORK=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$CM_DIR" ]; then
		"$ROOT/scripts/cluster" -d "$CM_DIR" -p "$CM_PORT" -b "$ROOT/build" down --wipe >/dev/null 2>&1 || true
	fi
	bl_stop_all # etcd
	bl_finish lock-bench "$CM_DIR" "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$ROOT/scripts/deps.sh"
mapfile -t missing < <(cm_deps_missing etcd-server etcd-client jq)
if [ ${#missing[@]} -gt 0 ]; then
	echo "==> installing ${missing[*]}"
	cm_deps_apt update -q >/dev/null
	cm_deps_apt install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null || die "build failed (ninja -C build)"

WORK=$(mktemp -d /var/tmp/confman-lock-bench.XXXXXX)
CM_DIR=$WORK/cm

# times_of FILE: "runs/s p50_ms p99_ms" of the per-run seconds in FILE.
times_of() {
	sort -n "$1" | awk '{ v[NR] = $1; s += $1 }
		END { printf "%.1f %.1f %.1f\n", NR / s, 1000 * v[int((NR - 1) * 0.5) + 1], 1000 * v[int((NR - 1) * 0.99) + 1] }'
}

# run_n FILE CMD...: run CMD ROUNDS times, one after the other, each one's
# seconds a line of FILE; exit 1 at the first failure.
run_n() {
	local file=$1 i t0 t1
	shift
	: >"$file"
	for ((i = 0; i < ROUNDS; i++)); do
		t0=$EPOCHREALTIME
		"$@" >/dev/null 2>>"$file.err" || die "$* failed (see $file.err)"
		t1=$EPOCHREALTIME
		awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }' >>"$file"
	done
}

# ---- Confman
bl_check_ports "$CM_PORT" "$((CM_PORT + 1))" "$((CM_PORT + 2))"
"$ROOT/scripts/cluster" -d "$CM_DIR" -p "$CM_PORT" -b "$ROOT/build" --insecure up >"$WORK/cm-up.txt" ||
	die "Confman did not start (see $CM_DIR/node*.log)"
SERVERS="127.0.0.1:$CM_PORT,127.0.0.1:$((CM_PORT + 1)),127.0.0.1:$((CM_PORT + 2))"
for t in $(seq 1 100); do
	"$CTL" -s "$SERVERS" -t 1000 put /bench/ready 1 >/dev/null 2>&1 && break
	[ "$t" = 100 ] && die "Confman: no leader"
	sleep 0.1
done
echo "==> Confman: 3 nodes, $ROUNDS x confmanctl lock, then $LIB_ROUNDS library rounds"
run_n "$WORK/cm-ctl.txt" "$CTL" -s "$SERVERS" lock /bench/lock -- true
read -r CM_RPS CM_P50 CM_P99 < <(times_of "$WORK/cm-ctl.txt")
"$LOOP" --servers "$SERVERS" --rounds "$LIB_ROUNDS" >"$WORK/cm-lib.json" || die "cm-lock-loop failed"
"$ROOT/scripts/cluster" -d "$CM_DIR" -p "$CM_PORT" -b "$ROOT/build" down >/dev/null

# ---- etcd
bl_etcd_up "$WORK/etcd" "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" cm-lock-bench
EPS="127.0.0.1:$ETCD_CLIENT_PORT,127.0.0.1:$((ETCD_CLIENT_PORT + 1)),127.0.0.1:$((ETCD_CLIENT_PORT + 2))"
echo "==> etcd $(etcd --version | head -1 | awk '{print $3}'): 3 nodes, $ROUNDS x etcdctl lock"
run_n "$WORK/etcd-ctl.txt" etcdctl --endpoints="$EPS" lock /bench/lock true
read -r ET_RPS ET_P50 ET_P99 < <(times_of "$WORK/etcd-ctl.txt")
bl_stop_all

# ---- report
printf '\n%-34s %10s %10s %10s\n' "lock runs, one after the other" "runs/s" "p50 ms" "p99 ms"
printf '%-34s %10s %10s %10s\n' "confmanctl lock PATH -- true" "$CM_RPS" "$CM_P50" "$CM_P99"
printf '%-34s %10s %10s %10s\n' "etcdctl lock PATH true" "$ET_RPS" "$ET_P50" "$ET_P99"
awk -v a="$CM_RPS" -v b="$ET_RPS" -v c="$CM_P50" -v d="$ET_P50" \
	'BEGIN { printf "ratio Confman/etcd: runs/s %.2f, p50 latency %.2f\n", a / b, c / d }'
jq -r '"library (cm-lock-loop, one connection): \(.round_trips_per_s) acquire+release round trips/s, acquire p50 \(.acquire_us.p50) us, p90 \(.acquire_us.p90) us, p99 \(.acquire_us.p99) us"' "$WORK/cm-lib.json"
