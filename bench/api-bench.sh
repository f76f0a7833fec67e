#!/usr/bin/env bash
# api-bench.sh: Confman behind confman-api against etcd, through the same HTTP endpoints.
#
# Usage: bench/api-bench.sh [options]
#   --duration S     measured seconds per workload (default 10)
#   --warmup S       seconds of load before each measurement (default 2)
#   --clients N      wrk connections = requests in flight (default 64)
#   --value-size B   value bytes (default 256)
#   --keys N         key space (default 10000)
#   --threads LIST   gateway thread counts to measure, e.g. "1 2" (default "1 2")
#   --build DIR      build directory (default build; built if missing)
#   --out DIR        keep the raw results (JSON per run, logs) in DIR
#   -h, --help       this text
#
# In one run on this machine:
#  1. a 3-node Confman cluster (data on /var/tmp, checked not to be tmpfs)
#     and confman-api in front of it (--servers lists a follower first, so
#     its follower reads go there); for each --threads value, wrk with
#     bench/etcd-kv.lua through the etcd-compatible endpoints: put
#     (/v3/kv/put), serializable range, linearizable range; plus, for the
#     first value, the native GET /v1/kv (bench/wrk/v1-kv.lua);
#  2. the native client (cm-load, pipelined on the async library) against
#     the same cluster: put, linearizable get, follower get (its preload
#     writes every key; the gateway's ranges read them);
#  3. a 3-node etcd (Debian's etcd-server) with its data on the same disk,
#     driven by the SAME wrk script (bench/etcd-kv.lua) through etcd's own
#     v3 JSON gateway: put and linearizable range on the leader,
#     serializable range on a follower;
#  4. one table (ops/s, p50, p99, errors, CPU) and the ratios Confman/etcd.
#
# Ports 21400-21499 on 127.0.0.1 (nodes 21400-21402, their admin HTTP
# 22400-22402, etcd clients 21421-21423 and peers 21431-21433, gateway
# 21490). Everything it starts or makes is removed on exit, also on
# failure or Ctrl-C. Exit status: 0 all runs succeeded, 1 a run failed,
# 2 bad usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # sourced files, by absolute path
set -euo pipefail

die() { echo "api-bench: $*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

bl_opt_defaults
THREADS="1 2"
BUILD=build

CM_PORT=21400
ETCD_CPORT=21421
ETCD_PPORT=21431
GW_PORT=21490

while [ $# -gt 0 ]; do
	if bl_opt "$@"; then shift 2; continue; fi
	case "$1" in
	--threads) THREADS=$2; shift 2 ;;
	--build) BUILD=$2; shift 2 ;;
	*) bl_opt_other api-bench "$1" ;;
	esac
done
bl_check_opts api-bench opt
for t in $THREADS; do
	if ! bl_is_uint "$t" || [ "$t" -gt 16 ]; then echo "api-bench: --threads takes 1..16" >&2; exit 2; fi
done

cd "$(dirname "$0")/.."
ROOT=$PWD
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
CMLOAD=$BUILD/bench/cm-load
CTL=$BUILD/client/confmanctl
API=$BUILD/api/confman-api
ETCD_LUA=$ROOT/bench/etcd-kv.lua
V1_LUA=$ROOT/bench/wrk/v1-kv.lua
BL_CONNS=$CLIENTS
BL_DURATION=$DURATION
BL_WARMUP=$WARMUP

DATA=""
WORK=""
CLUSTER_UP=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	bl_stop_all
	if [ "$CLUSTER_UP" = 1 ]; then
		"$ROOT/scripts/cluster" --insecure -d "$DATA/confman" -p "$CM_PORT" -b "$BUILD" down --wipe >/dev/null 2>&1 || true
	fi
	bl_finish api-bench "$DATA" "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- packages and build ----

. "$ROOT/scripts/deps.sh"
mapfile -t missing < <(cm_deps_missing etcd-server etcd-client wrk jq)
if [ ${#missing[@]} -gt 0 ]; then
	echo "==> installing ${missing[*]}"
	cm_deps_apt update -q >/dev/null
	cm_deps_apt install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -f "$BUILD/build.ninja" ]; then
	cm_deps_install
	meson setup "$BUILD" >/dev/null
fi
if ! ninja_out=$(ninja -C "$BUILD" server/confmand client/confmanctl bench/cm-load api/confman-api 2>&1); then
	tail -n 30 <<<"$ninja_out" >&2
	die "build failed (above)"
fi

DATA=$(mktemp -d /var/tmp/cm-api-bench.XXXXXX)
WORK=$(mktemp -d /tmp/cm-api-bench-out.XXXXXX)
[ "$(stat -f -c %T "$DATA")" != tmpfs ] || die "$DATA is on tmpfs: no disk to measure"
FAILED=0

show() { # show NAME FILE: one line of a finished run
	jq -r --arg n "$1" '"    \($n): \(.ops_per_s | floor) ops/s, p50 \(.latency_us.p50 / 10 | round / 100) ms, p99 \(.latency_us.p99 / 10 | round / 100) ms, errors \(.errors_total)"' "$2"
}

wrk_run() { # wrk_run NAME SERVER_PIDS GW_PIDS URL LUA ARGS...
	local name=$1
	shift
	if bl_wrk "$WORK/$name.json" "$@"; then
		show "$name" "$WORK/$name.json"
	else
		echo "    $name: FAILED ($(tail -n 2 "$WORK/$name.json.txt" 2>/dev/null | tr '\n' ' '))"
		rm -f "$WORK/$name.json"
		FAILED=1
	fi
}

cm_run() { # cm_run NAME CM-LOAD-ARGS...: the native client
	local name=$1 rc=0
	shift
	"$CMLOAD" "$@" --clients "$CLIENTS" --value-size "$VSIZE" --keys "$KEYS" --duration "$DURATION" \
		--warmup "$WARMUP" --cpu-pids "$CM_PIDS" --json >"$WORK/$name.json" 2>"$WORK/$name.err" || rc=$?
	if [ $rc != 0 ] || ! jq -e .ops_per_s "$WORK/$name.json" >/dev/null 2>&1; then
		echo "    $name: FAILED (exit $rc): $(tail -n 3 "$WORK/$name.err" | tr '\n' ' ')"
		rm -f "$WORK/$name.json"
		FAILED=1
		return 0
	fi
	# The same fields as the wrk rows: the servers' CPU, no gateway.
	jq -c '. + {server_cpu_pct: ([.pid_cpu_pct[]] | add), gw_cpu_pct: 0}' "$WORK/$name.json" >"$WORK/$name.tmp"
	mv "$WORK/$name.tmp" "$WORK/$name.json"
	show "$name" "$WORK/$name.json"
}

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1, 2. Confman ----

bl_check_ports "$CM_PORT" "$((CM_PORT + 1))" "$((CM_PORT + 2))" "$GW_PORT"
CLUSTER_UP=1
"$ROOT/scripts/cluster" --insecure -d "$DATA/confman" -p "$CM_PORT" -b "$BUILD" up >"$WORK/cluster.txt" ||
	die "cluster did not start (see $DATA/confman/node*.log)"
SERVERS="127.0.0.1:$CM_PORT,127.0.0.1:$((CM_PORT + 1)),127.0.0.1:$((CM_PORT + 2))"
LEADER=$(bl_cm_leader "$SERVERS" "$CTL") || die "no leader elected"
FOLLOWER=""
for k in 0 1 2; do
	a=127.0.0.1:$((CM_PORT + k))
	[ "$a" != "$LEADER" ] && [ -z "$FOLLOWER" ] && FOLLOWER=$a
done
GW_SERVERS=$FOLLOWER
for k in 0 1 2; do
	a=127.0.0.1:$((CM_PORT + k))
	[ "$a" != "$FOLLOWER" ] && GW_SERVERS+=",$a"
done
CM_PIDS=$(cat "$DATA"/confman/node{1,2,3}.pid | paste -sd,)
echo "==> confman: 3 nodes on $(df -P "$DATA" | awk 'NR == 2 { print $1 }'), leader $LEADER, gateway --servers $GW_SERVERS"

GW_PID=""
gw_start() { # gw_start THREADS
	"$API" --listen "127.0.0.1:$GW_PORT" --servers "$GW_SERVERS" --threads "$1" \
		>"$WORK/gw-$1.log" 2>&1 &
	GW_PID=$!
	BL_PIDS+=("$GW_PID")
	local t
	for t in $(seq 1 100); do
		curl -sf "http://127.0.0.1:$GW_PORT/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "confman-api not ready (see $WORK/gw-$1.log)"
}

first=1
for T in $THREADS; do
	gw_start "$T"
	echo "==> confman-api, $T thread(s): wrk -t2 -c$CLIENTS through /v3 (bench/etcd-kv.lua)"
	URL=http://127.0.0.1:$GW_PORT
	wrk_run "gw$T-put" "$CM_PIDS" "$GW_PID" "$URL" "$ETCD_LUA" put "$KEYS" "$VSIZE"
	if [ "$first" = 1 ]; then
		# Every key once (cm-load's preload), measured as the native follower get.
		echo "==> native client (cm-load, one pipelined connection per server)"
		cm_run native-fol --servers "$FOLLOWER" --op get --consistency follower
	fi
	wrk_run "gw$T-ser" "$CM_PIDS" "$GW_PID" "$URL" "$ETCD_LUA" serial "$KEYS" "$VSIZE"
	wrk_run "gw$T-lin" "$CM_PIDS" "$GW_PID" "$URL" "$ETCD_LUA" range "$KEYS" "$VSIZE"
	if [ "$first" = 1 ]; then
		wrk_run "gw$T-v1get" "$CM_PIDS" "$GW_PID" "$URL" "$V1_LUA" get "$KEYS" "$VSIZE"
	fi
	bl_stop_pid "$GW_PID"
	first=0
done
echo "==> native client, continued"
cm_run native-put --servers "$SERVERS" --op put
cm_run native-lin --servers "$SERVERS" --op get --consistency linearizable
"$ROOT/scripts/cluster" --insecure -d "$DATA/confman" -p "$CM_PORT" -b "$BUILD" down >/dev/null
for k in 1 2 3; do cp "$DATA/confman/node$k.log" "$WORK/node$k.log" 2>/dev/null || true; done
CLUSTER_UP=0
"$ROOT/scripts/cluster" --insecure -d "$DATA/confman" -p "$CM_PORT" -b "$BUILD" down --wipe >/dev/null 2>&1 || true

# ---- 3. etcd ----

bl_etcd_up "$DATA/etcd" "$ETCD_CPORT" "$ETCD_PPORT"
ETCD_PIDS=$(IFS=,; echo "${BL_ETCD_PIDS[*]}")
echo "==> etcd $(etcd --version | head -1 | awk '{print $3}'): 3 nodes, leader $BL_ETCD_LEADER, serializable reads from $BL_ETCD_FOLLOWER"
wrk_run etcd-put "$ETCD_PIDS" "" "http://$BL_ETCD_LEADER" "$ETCD_LUA" put "$KEYS" "$VSIZE"
bl_etcd_preload "$BL_ETCD_LEADER" "$KEYS" "$VSIZE"
wrk_run etcd-ser "$ETCD_PIDS" "" "http://$BL_ETCD_FOLLOWER" "$ETCD_LUA" serial "$KEYS" "$VSIZE"
wrk_run etcd-lin "$ETCD_PIDS" "" "http://$BL_ETCD_LEADER" "$ETCD_LUA" range "$KEYS" "$VSIZE"
bl_stop_all
echo "==> load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 4. the table ----

fields() { # ops p50_ms p99_ms errors server_cpu gw_cpu, or dashes
	[ -f "$1" ] || { echo "- - - - - -"; return; }
	jq -r '[(.ops_per_s | floor), (.latency_us.p50 / 1000), (.latency_us.p99 / 1000), .errors_total,
		.server_cpu_pct, .gw_cpu_pct] | @tsv' "$1" |
		awk -F'\t' '{ printf "%s %.2f %.2f %s %.0f %.0f\n", $1, $2, $3, $4, $5, $6 }'
}
field() { fields "$1" | awk -v n="$2" '{ print $n }'; }
row() {
	# shellcheck disable=SC2046,SC2183 # fields prints the 6 values
	printf '| %-40s | %9s | %7s | %7s | %6s | %11s | %8s |\n' "$1" $(fields "$2")
}
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}

echo
echo "Results: $CLIENTS requests in flight, $VSIZE-byte values, $KEYS keys, ${DURATION} s measured after ${WARMUP} s warmup"
echo "(CPU in % of one core: server = the 3 confmand + the gateway, or the 3 etcd; gw = the gateway alone)"
echo
printf '| %-40s | %9s | %7s | %7s | %6s | %11s | %8s |\n' system "ops/s" "p50 ms" "p99 ms" errors "server CPU%" "gw CPU%"
echo "|------------------------------------------|----------:|--------:|--------:|-------:|------------:|---------:|"
for T in $THREADS; do
	row "confman-api ${T}t /v3: put" "$WORK/gw$T-put.json"
	row "confman-api ${T}t /v3: range serializable" "$WORK/gw$T-ser.json"
	row "confman-api ${T}t /v3: range linearizable" "$WORK/gw$T-lin.json"
	[ -f "$WORK/gw$T-v1get.json" ] && row "confman-api ${T}t /v1: GET (follower)" "$WORK/gw$T-v1get.json"
done
row "confman native (cm-load): put" "$WORK/native-put.json"
row "confman native (cm-load): get follower" "$WORK/native-fol.json"
row "confman native (cm-load): get lineariz." "$WORK/native-lin.json"
row "etcd (its v3 JSON gateway): put" "$WORK/etcd-put.json"
row "etcd (its v3 JSON gateway): range serial." "$WORK/etcd-ser.json"
row "etcd (its v3 JSON gateway): range lin." "$WORK/etcd-lin.json"
echo
printf '| %-40s | %9s | %7s | %7s |\n' "ratio Confman/etcd" "ops/s" "p50" "p99"
echo "|------------------------------------------|----------:|--------:|--------:|"
for T in $THREADS native; do
	for wl in put ser lin; do
		name=$(case $wl in put) echo put ;; ser) echo "range serializable" ;; lin) echo "range linearizable" ;; esac)
		if [ "$T" = native ]; then
			a=$WORK/native-${wl/ser/fol}.json
			label="native client: $name"
		else
			a=$WORK/gw$T-$wl.json
			label="confman-api ${T}t: $name"
		fi
		b=$WORK/etcd-$wl.json
		printf '| %-40s | %9s | %7s | %7s |\n' "$label" \
			"$(ratio "$(field "$a" 1)" "$(field "$b" 1)")" "$(ratio "$(field "$a" 2)" "$(field "$b" 2)")" \
			"$(ratio "$(field "$a" 3)" "$(field "$b" 3)")"
	done
done
echo
echo "(ops/s ratios above 1 favour Confman; latency ratios below 1 do. Aim: ops/s ratio >= 2 through the gateway)"
[ -z "$OUT" ] || echo "raw results in $OUT"
exit "$FAILED"
