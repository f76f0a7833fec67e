#!/usr/bin/env bash
# tls-etcd-bench.sh: Confman and etcd, each with TLS and without, in one run.
#
# Usage: bench/tls-etcd-bench.sh [options]
#   --duration S     measured seconds per workload (default 8)
#   --warmup S       seconds of load before each measurement (default 2)
#   --clients N      requests in flight (default 64)
#   --value-size B   value bytes (default 256)
#   --keys N         key space (default 10000)
#   --threads N      gateway threads (default 1: best for reads on 2 cores)
#   --build DIR      build directory (default build)
#   --out DIR        keep the raw results (JSON per run, logs) in DIR
#   -h, --help       this text
#
# Each system is a 3-node cluster on loopback with its data on /var/tmp
# (a disk, checked not to be tmpfs), measured once with TLS and once plain:
#  - Confman (scripts/cluster; TLS: mutual TLS 1.3 between nodes and from
#    every client, the admin's certificate): the native client (cm-load,
#    pipelined) puts and follower reads; confman-api (TLS: HTTPS, and
#    mutual TLS to the servers; plain: HTTP) driven by wrk through its etcd
#    v3 endpoints (bench/etcd-kv.lua: put, serializable range = a follower
#    read, the gateway's --servers naming a follower first) and its native
#    GET /v1/kv (bench/wrk/v1-kv.lua);
#  - etcd (Debian's etcd-server, bench-lib.sh's bl_etcd_up; TLS: certtool
#    certificates, https client URLs and mutual TLS between members), driven
#    by the SAME wrk script through etcd's own v3 JSON gateway: put on the
#    leader, serializable range on a follower.
# Neither HTTPS server asks wrk for a client certificate (wrk cannot send
# one): both sides' HTTP clients get server-authenticated TLS, both sides'
# peers mutual TLS. Then one table and the ratios: TLS/plain for each row,
# and Confman/etcd with both on TLS.
#
# Ports 29900-29999 on 127.0.0.1 (nodes 29900-29902, etcd clients
# 29921-29923 and peers 29931-29933, gateway 29990). Everything it starts
# or makes is removed on exit, also on failure or Ctrl-C. Exit status: 0
# all runs succeeded, 1 a run failed, 2 bad usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # sourced files, by absolute path
set -euo pipefail

die() { echo "tls-etcd-bench: $*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

bl_opt_defaults
DURATION=8
THREADS=1
BUILD=build
CM_PORT=29900
ETCD_CPORT=29921
ETCD_PPORT=29931
GW_PORT=29990

while [ $# -gt 0 ]; do
	if bl_opt "$@"; then shift 2; continue; fi
	case "$1" in
	--threads) THREADS=$2; shift 2 ;;
	--build) BUILD=$2; shift 2 ;;
	*) bl_opt_other tls-etcd-bench "$1" ;;
	esac
done
bl_check_opts tls-etcd-bench opt
if ! bl_is_uint "$THREADS" || [ "$THREADS" -gt 16 ]; then
	echo "tls-etcd-bench: --threads takes 1..16" >&2
	exit 2
fi

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
CM_UP=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	bl_stop_all
	if [ -n "$CM_UP" ]; then
		"$ROOT/scripts/cluster" -d "$CM_UP" -p "$CM_PORT" -b "$BUILD" down --wipe >/dev/null 2>&1 || true
	fi
	bl_finish tls-etcd-bench "$DATA" "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$ROOT/scripts/deps.sh"
mapfile -t missing < <(cm_deps_missing etcd-server etcd-client wrk jq gnutls-bin)
if [ ${#missing[@]} -gt 0 ]; then
	echo "==> installing ${missing[*]}"
	cm_deps_apt update -q >/dev/null
	cm_deps_apt install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! ninja_out=$(ninja -C "$BUILD" server/confmand client/confmanctl bench/cm-load api/confman-api 2>&1); then
	tail -n 30 <<<"$ninja_out" >&2
	die "build failed (above)"
fi

DATA=$(mktemp -d /var/tmp/cm-tls-etcd-bench.XXXXXX)
WORK=$(mktemp -d /tmp/cm-tls-etcd-bench-out.XXXXXX)
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

cm_run() { # cm_run NAME CM-LOAD-ARGS...: the native client (TLS from the environment)
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
	jq -c '. + {server_cpu_pct: ([.pid_cpu_pct[]] | add), gw_cpu_pct: 0}' "$WORK/$name.json" >"$WORK/$name.tmp"
	mv "$WORK/$name.tmp" "$WORK/$name.json"
	show "$name" "$WORK/$name.json"
}

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
bl_check_ports "$CM_PORT" "$((CM_PORT + 1))" "$((CM_PORT + 2))" "$GW_PORT"

# confman MODE (tls|plain): the cluster, the native client, the gateway.
confman() {
	local mode=$1 dir=$DATA/cm-$1 flag=() sch=http https=() k a
	[ "$mode" = plain ] && flag=(--insecure)
	CM_UP=$dir
	"$ROOT/scripts/cluster" -d "$dir" -p "$CM_PORT" -b "$BUILD" "${flag[@]}" up >"$WORK/cluster-$mode.txt" ||
		die "cluster did not start (see $dir/node*.log)"
	unset CONFMAN_CA CONFMAN_CERT CONFMAN_KEY
	eval "$("$ROOT/scripts/cluster" -d "$dir" -p "$CM_PORT" env | sed 's/^/export /')"
	local servers=$CONFMAN_SERVERS leader follower="" gws
	leader=$(bl_cm_leader "$servers" "$CTL") || die "no leader elected ($mode)"
	for k in 0 1 2; do
		a=127.0.0.1:$((CM_PORT + k))
		[ "$a" != "$leader" ] && [ -z "$follower" ] && follower=$a
	done
	gws=$follower
	for k in 0 1 2; do
		a=127.0.0.1:$((CM_PORT + k))
		[ "$a" != "$follower" ] && gws+=",$a"
	done
	CM_PIDS=$(cat "$dir"/node{1,2,3}.pid | paste -sd,)
	echo "==> confman, $mode: leader $leader, follower reads from $follower"
	cm_run "cm-$mode-native-put" --servers "$servers" --op put
	cm_run "cm-$mode-native-fol" --servers "$follower" --op get --consistency follower
	if [ "$mode" = tls ]; then
		# The HTTPS certificate: any from the cluster's CA (wrk does not verify).
		"$ROOT/scripts/mkcerts" "$dir/certs" host gateway >/dev/null 2>&1
		https=(--https-cert "$dir/certs/gateway.pem" --https-key "$dir/certs/gateway.key")
		sch=https
	fi
	"$API" --listen "127.0.0.1:$GW_PORT" --servers "$gws" --threads "$THREADS" "${https[@]}" \
		>"$WORK/gw-$mode.log" 2>&1 &
	local gw=$!
	BL_PIDS+=("$gw")
	for k in $(seq 1 100); do
		curl -skf "$sch://127.0.0.1:$GW_PORT/readyz" >/dev/null 2>&1 && break
		[ "$k" = 100 ] && die "confman-api not ready (see $WORK/gw-$mode.log)"
		sleep 0.1
	done
	echo "==> confman-api, $mode ($sch, $THREADS thread(s)): wrk -t2 -c$CLIENTS"
	local url=$sch://127.0.0.1:$GW_PORT
	wrk_run "cm-$mode-gw-put" "$CM_PIDS" "$gw" "$url" "$ETCD_LUA" put "$KEYS" "$VSIZE"
	wrk_run "cm-$mode-gw-ser" "$CM_PIDS" "$gw" "$url" "$ETCD_LUA" serial "$KEYS" "$VSIZE"
	wrk_run "cm-$mode-gw-v1get" "$CM_PIDS" "$gw" "$url" "$V1_LUA" get "$KEYS" "$VSIZE"
	bl_stop_pid "$gw"
	"$ROOT/scripts/cluster" -d "$dir" -p "$CM_PORT" -b "$BUILD" down >/dev/null
	for k in 1 2 3; do cp "$dir/node$k.log" "$WORK/cm-$mode-node$k.log" 2>/dev/null || true; done
	"$ROOT/scripts/cluster" -d "$dir" -p "$CM_PORT" -b "$BUILD" down --wipe >/dev/null 2>&1 || true
	CM_UP=""
	unset CONFMAN_CA CONFMAN_CERT CONFMAN_KEY CONFMAN_SERVERS
}

# etcd MODE (tls|plain)
etcd_mode() {
	local mode=$1 sch=http
	BL_ETCD_TLS=""
	if [ "$mode" = tls ]; then
		bl_etcd_certs "$DATA/etcd-certs"
		BL_ETCD_TLS=$DATA/etcd-certs
		sch=https
	fi
	bl_etcd_up "$DATA/etcd-$mode" "$ETCD_CPORT" "$ETCD_PPORT" "cm-tls-bench-$mode"
	local pids
	pids=$(IFS=,; echo "${BL_ETCD_PIDS[*]}")
	echo "==> etcd $(etcd --version | head -1 | awk '{print $3}'), $mode: leader $BL_ETCD_LEADER, serializable reads from $BL_ETCD_FOLLOWER"
	wrk_run "etcd-$mode-put" "$pids" "" "$sch://$BL_ETCD_LEADER" "$ETCD_LUA" put "$KEYS" "$VSIZE"
	bl_etcd_preload "$BL_ETCD_LEADER" "$KEYS" "$VSIZE"
	wrk_run "etcd-$mode-ser" "$pids" "" "$sch://$BL_ETCD_FOLLOWER" "$ETCD_LUA" serial "$KEYS" "$VSIZE"
	bl_stop_all
	rm -rf "${DATA:?}/etcd-$mode"
	BL_ETCD_TLS=""
}

confman tls
confman plain
etcd_mode tls
etcd_mode plain
echo "==> load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the table ----

ops() { [ -f "$WORK/$1.json" ] && jq -r '.ops_per_s | floor' "$WORK/$1.json" || echo -; }
lat() { [ -f "$WORK/$1.json" ] && jq -r ".latency_us.$2 / 1000" "$WORK/$1.json" | awk '{ printf "%.2f", $1 }' || echo -; }
cpu() { [ -f "$WORK/$1.json" ] && jq -r '.server_cpu_pct + .gw_cpu_pct' "$WORK/$1.json" | awk '{ printf "%.0f", $1 }' || echo -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }

echo
echo "Results: $CLIENTS requests in flight, $VSIZE-byte values, $KEYS keys, ${DURATION} s measured after ${WARMUP} s warmup"
echo "(CPU: the 3 servers plus the gateway, % of one core)"
echo
printf '| %-36s | %9s | %6s | %6s | %5s | %9s | %6s | %6s | %5s | %9s |\n' workload "TLS ops/s" p50 p99 CPU \
	"plain" p50 p99 CPU "TLS/plain"
echo "|--------------------------------------|----------:|-------:|-------:|------:|----------:|-------:|-------:|------:|----------:|"
for row in "cm-%s-native-put|confman native: put" "cm-%s-native-fol|confman native: follower get" \
	"cm-%s-gw-put|confman-api /v3: put" "cm-%s-gw-ser|confman-api /v3: range serializable" \
	"cm-%s-gw-v1get|confman-api /v1: GET (follower)" \
	"etcd-%s-put|etcd v3 gateway: put" "etcd-%s-ser|etcd v3 gateway: range serializable"; do
	pat=${row%%|*}
	# shellcheck disable=SC2059 # the pattern is ours
	t=$(printf "$pat" tls) p=$(printf "$pat" plain)
	printf '| %-36s | %9s | %6s | %6s | %5s | %9s | %6s | %6s | %5s | %9s |\n' "${row#*|}" \
		"$(ops "$t")" "$(lat "$t" p50)" "$(lat "$t" p99)" "$(cpu "$t")" \
		"$(ops "$p")" "$(lat "$p" p50)" "$(lat "$p" p99)" "$(cpu "$p")" "$(ratio "$(ops "$t")" "$(ops "$p")")"
done
echo
echo "Confman/etcd, both on TLS (ops/s; aim: >= 2 through the gateway):"
for pair in "cm-tls-gw-put etcd-tls-put confman-api put" "cm-tls-gw-ser etcd-tls-ser confman-api serializable range" \
	"cm-tls-gw-v1get etcd-tls-ser confman-api /v1 GET vs etcd serializable range" \
	"cm-tls-native-put etcd-tls-put native put" "cm-tls-native-fol etcd-tls-ser native follower get vs etcd serializable range"; do
	read -r a b label <<<"$pair"
	printf '  %-58s %s\n' "$label:" "$(ratio "$(ops "$a")" "$(ops "$b")")"
done
[ -z "$OUT" ] || echo "raw results in $OUT"
exit "$FAILED"
