#!/usr/bin/env bash
# lock-bench.sh: cluster lock round trips, Confman against etcd in the same run.
#
# Usage: bench/lock-bench.sh [options]
#   --rounds N       lock runs per CLI measurement (default 200)
#   --lib-rounds N   acquire/release rounds through the library (default 2000)
#   --fs-rounds N    flock rounds through a confman-fs mount, each way (default 1000)
#   --port P         Confman on P..P+2, etcd on P+20..P+22 and P+30..P+32
#                    (default 15300)
#   --out DIR        keep the raw results (per-run times, logs) in DIR
#   -h, --help       this text
#
# In one run on this machine:
#  1. installs what is missing (etcd-server, etcd-client, jq) and builds build/;
#  2. a 3-node Confman cluster (scripts/cluster, plain TCP, data in /var/tmp):
#     N times `confmanctl lock /bench/lock -- true` one after the other (each
#     grants a lease, acquires, runs true, releases, revokes: a process and a
#     connection each), then build/bench/cm-lock-loop: one lease, then
#     acquire + release on one connection, uncontended; then a confman-fs
#     mount (cache=none) and bench/flock_loop.py on a file of it: N times
#     open, flock(LOCK_EX), flock(LOCK_UN), close, then N times open,
#     flock(LOCK_EX), close (the lock given back by the close);
#  3. a 3-node etcd (Debian's etcd-server, bench-lib.sh's bl_etcd_up, same
#     disk): N times `etcdctl lock /bench/lock true` (the same steps: lease,
#     acquire, run, release, revoke);
#  4. lock runs per second, their p50/p99 latency, the ratios Confman/etcd,
#     the library's and the mount's round trips per second and acquire
#     latency, and their ratios to etcdctl lock.
#
# Ports 15300-15302 for Confman, 15320-15322 and 15330-15332 for etcd, on
# 127.0.0.1 (--port moves them). Every process, mount and directory it
# starts or makes is removed on exit, also on failure or Ctrl-C. Exit
# status: 0 ok, 1 a run failed, 2 bad usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # sourced files, by path
set -euo pipefail

die() { echo "lock-bench: $*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

ROUNDS=200
LIB_ROUNDS=2000
FS_ROUNDS=1000
OUT=""
CM_PORT=15300

while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=${2:-}; shift 2 ;;
	--lib-rounds) LIB_ROUNDS=${2:-}; shift 2 ;;
	--fs-rounds) FS_ROUNDS=${2:-}; shift 2 ;;
	--port) CM_PORT=${2:-}; shift 2 ;;
	--out) OUT=${2:-}; shift 2 ;;
	*) bl_opt_other lock-bench "$1" ;;
	esac
done
bl_is_uint "$ROUNDS" || { echo "lock-bench: --rounds must be a positive integer" >&2; exit 2; }
bl_is_uint "$LIB_ROUNDS" || { echo "lock-bench: --lib-rounds must be a positive integer" >&2; exit 2; }
bl_is_uint "$FS_ROUNDS" || { echo "lock-bench: --fs-rounds must be a positive integer" >&2; exit 2; }
{ bl_is_uint "$CM_PORT" && [ "$CM_PORT" -le 65500 ]; } ||
	{ echo "lock-bench: --port must be a port number" >&2; exit 2; }
ETCD_CLIENT_PORT=$((CM_PORT + 20))
ETCD_PEER_PORT=$((CM_PORT + 30))

cd "$(dirname "$0")/.."
ROOT=$PWD
CTL=$ROOT/build/client/confmanctl
LOOP=$ROOT/build/bench/cm-lock-loop
FSBIN=$ROOT/build/fs/confman-fs

CM_DIR=""
WORK=""
MNT=""
FS_PID=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$MNT" ] && mountpoint -q "$MNT"; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	fi
	[ -n "$FS_PID" ] && bl_stop_pid "$FS_PID"
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
echo "==> Confman: a confman-fs mount, 2 x $FS_ROUNDS flock rounds"
MNT=$WORK/mnt
mkdir -p "$MNT"
setsid "$FSBIN" -f -o cache=none "$SERVERS" "$MNT" >"$WORK/fs.log" 2>&1 </dev/null &
FS_PID=$!
for t in $(seq 1 100); do
	mountpoint -q "$MNT" && break
	[ "$t" = 100 ] && die "confman-fs did not mount (see $WORK/fs.log)"
	sleep 0.05
done
mkdir -p "$MNT/bench"
python3 "$ROOT/bench/flock_loop.py" "$MNT/bench/lock" "$FS_ROUNDS" >"$WORK/cm-fs.json" ||
	die "flock_loop.py failed (see $WORK/fs.log)"
fusermount3 -u "$MNT" || die "cannot unmount $MNT"
bl_stop_pid "$FS_PID"
FS_PID=""
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
jq -r '"mount, open+flock+unlock+close: \(.unlock.round_trips_per_s) round trips/s, acquire p50 \(.unlock.acquire_us.p50) us, p90 \(.unlock.acquire_us.p90) us, p99 \(.unlock.acquire_us.p99) us; release p50 \(.unlock.release_us.p50) us, p99 \(.unlock.release_us.p99) us"' "$WORK/cm-fs.json"
jq -r '"mount, open+flock+close (released by the close): \(.close.round_trips_per_s) round trips/s, acquire p50 \(.close.acquire_us.p50) us, p99 \(.close.acquire_us.p99) us"' "$WORK/cm-fs.json"
FS_RPS=$(jq -r .unlock.round_trips_per_s "$WORK/cm-fs.json")
LIB_RPS=$(jq -r .round_trips_per_s "$WORK/cm-lib.json")
awk -v f="$FS_RPS" -v l="$LIB_RPS" -v e="$ET_RPS" -v c="$CM_RPS" \
	'BEGIN { printf "ratio mount flock/etcdctl lock: round trips/s %.1f; mount/library %.2f; mount/confmanctl lock %.1f\n", f / e, f / l, f / c }'
