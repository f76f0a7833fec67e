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
#   --rounds N       rounds of every workload on every variant (default 2)
#   --build DIR      build directory (default build)
#   --out DIR        keep the raw results (JSON per run, logs) in DIR
#   -h, --help       this text
#
# Four 3-node clusters run side by side on loopback, their data on /var/tmp
# (a disk, checked not to be tmpfs): Confman with TLS and plain, etcd with
# TLS and plain. Each workload is run on every variant back to back, ROUNDS
# times, so that the machine's other load drifts across all of them alike
# (one system after the other put a change of load between them); the table
# shows each variant's median run (by ops/s; of an even number, the lower):
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
# Ports 29900-29999 on 127.0.0.1 (Confman nodes 29900-29902 with TLS,
# 29903-29905 plain; etcd clients 29921-29923 and peers 29931-29933 with
# TLS, 29924-29926 and 29934-29936 plain; gateways 29990 HTTPS, 29991 HTTP). Everything it starts
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
ROUNDS=2
BUILD=build
CM_PORT=29900
ETCD_CPORT=29921
ETCD_PPORT=29931
GW_PORT=29990

while [ $# -gt 0 ]; do
	if bl_opt "$@"; then shift 2; continue; fi
	case "$1" in
	--threads) THREADS=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--build) BUILD=$2; shift 2 ;;
	*) bl_opt_other tls-etcd-bench "$1" ;;
	esac
done
bl_check_opts tls-etcd-bench opt
if ! bl_is_uint "$THREADS" || [ "$THREADS" -gt 16 ]; then
	echo "tls-etcd-bench: --threads takes 1..16" >&2
	exit 2
fi
bl_is_uint "$ROUNDS" || { echo "tls-etcd-bench: --rounds must be a positive integer" >&2; exit 2; }

# TLS or not is each command's own flags and variables, never the caller's.
unset CONFMAN_CA CONFMAN_CERT CONFMAN_KEY CONFMAN_SERVERS
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
CM_UP=()

cm_port() { [ "$1" = tls ] && echo "$CM_PORT" || echo "$((CM_PORT + 3))"; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	bl_stop_all
	local u
	for u in "${CM_UP[@]}"; do
		"$ROOT/scripts/cluster" -d "$DATA/cm-$u" -p "$(cm_port "$u")" -b "$BUILD" down --wipe >/dev/null 2>&1 || true
	done
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
	local BL_WRK_HEADER=
	[[ $name == cm-tls-gw-* ]] && BL_WRK_HEADER="Authorization: Bearer $GW_TOKEN"
	if bl_wrk "$WORK/$name.json" "$@"; then
		show "$name" "$WORK/$name.json"
	else
		echo "    $name: FAILED ($(tail -n 2 "$WORK/$name.json.txt" 2>/dev/null | tr '\n' ' '))"
		rm -f "$WORK/$name.json"
		FAILED=1
	fi
}

cm_run() { # cm_run MODE NAME CM-LOAD-ARGS...: the native client, TLS as MODE says
	local mode=$1 name=$2 rc=0 env=()
	shift 2
	[ "$mode" = tls ] && env=(CONFMAN_CA="$CM_CA" CONFMAN_CERT="$CM_CERT" CONFMAN_KEY="$CM_KEY")
	env "${env[@]}" "$CMLOAD" "$@" --clients "$CLIENTS" --value-size "$VSIZE" --keys "$KEYS" --duration "$DURATION" \
		--warmup "$WARMUP" --cpu-pids "${CM_PIDS[$mode]}" --json >"$WORK/$name.json" 2>"$WORK/$name.err" || rc=$?
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

declare -A CM_PIDS CM_SERVERS CM_FOLLOWER GW_PID GW_URL ETCD_PIDS ETCD_LEADER ETCD_FOLLOWER ETCD_SCH

# confman_up MODE (tls|plain): a cluster and its gateway.
confman_up() {
	local mode=$1 dir=$DATA/cm-$1 port flag=() sch=http https=() k a leader follower="" gws gwport
	port=$(cm_port "$mode")
	[ "$mode" = plain ] && flag=(--insecure)
	CM_UP+=("$mode")
	"$ROOT/scripts/cluster" -d "$dir" -p "$port" -b "$BUILD" "${flag[@]}" up >"$WORK/cluster-$mode.txt" ||
		die "cluster did not start (see $dir/node*.log)"
	local servers=127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))
	if [ "$mode" = tls ]; then
		CM_CA=$dir/certs/ca.pem CM_CERT=$dir/certs/admin.pem CM_KEY=$dir/certs/admin.key
		leader=$(CONFMAN_CA=$CM_CA CONFMAN_CERT=$CM_CERT CONFMAN_KEY=$CM_KEY bl_cm_leader "$servers" "$CTL") ||
			die "no leader elected ($mode)"
	else
		leader=$(bl_cm_leader "$servers" "$CTL") || die "no leader elected ($mode)"
	fi
	for k in 0 1 2; do
		a=127.0.0.1:$((port + k))
		[ "$a" != "$leader" ] && [ -z "$follower" ] && follower=$a
	done
	gws=$follower
	for k in 0 1 2; do
		a=127.0.0.1:$((port + k))
		[ "$a" != "$follower" ] && gws+=",$a"
	done
	CM_SERVERS[$mode]=$servers
	CM_FOLLOWER[$mode]=$follower
	CM_PIDS[$mode]=$(cat "$dir"/node{1,2,3}.pid | paste -sd,)
	gwport=$GW_PORT
	local tlsargs=()
	if [ "$mode" = tls ]; then
		# The HTTPS certificate: any from the cluster's CA (wrk does not verify).
		"$ROOT/scripts/mkcerts" "$dir/certs" host gateway >/dev/null 2>&1
		https=(--https-cert "$dir/certs/gateway.pem" --https-key "$dir/certs/gateway.key")
		# The gateway talks to the servers as confman-gw, a trusted proxy
		# (scripts/cluster marks it), forwarding its callers' identity:
		# wrk's is the admin's, by a bearer token (wrk sends no certificate).
		tlsargs=(--server-ca "$CM_CA" --server-cert "$dir/certs/confman-gw.pem"
			--server-key "$dir/certs/confman-gw.key")
		GW_TOKEN=$(CONFMAN_CA=$CM_CA CONFMAN_CERT=$CM_CERT CONFMAN_KEY=$CM_KEY \
			"$CTL" -s "$servers" token create admin --group admins) ||
			die "token create failed"
		sch=https
	else
		gwport=$((GW_PORT + 1))
	fi
	"$API" --listen "127.0.0.1:$gwport" \
		--servers "$gws" --threads "$THREADS" "${tlsargs[@]}" "${https[@]}" >"$WORK/gw-$mode.log" 2>&1 &
	GW_PID[$mode]=$!
	BL_PIDS+=("${GW_PID[$mode]}")
	GW_URL[$mode]=$sch://127.0.0.1:$gwport
	for k in $(seq 1 100); do
		curl -skf "${GW_URL[$mode]}/readyz" >/dev/null 2>&1 && break
		[ "$k" = 100 ] && die "confman-api not ready (see $WORK/gw-$mode.log)"
		sleep 0.1
	done
	echo "==> confman, $mode: leader $leader, follower reads from $follower; confman-api ($sch, $THREADS thread(s)) at ${GW_URL[$mode]}"
}

# etcd_up MODE (tls|plain)
etcd_up() {
	local mode=$1 off=0
	BL_ETCD_TLS=""
	ETCD_SCH[$mode]=http
	if [ "$mode" = tls ]; then
		bl_etcd_certs "$DATA/etcd-certs"
		BL_ETCD_TLS=$DATA/etcd-certs
		ETCD_SCH[$mode]=https
	else
		off=3
	fi
	bl_etcd_up "$DATA/etcd-$mode" "$((ETCD_CPORT + off))" "$((ETCD_PPORT + off))" "cm-tls-bench-$mode"
	ETCD_PIDS[$mode]=$(IFS=,; echo "${BL_ETCD_PIDS[*]}")
	ETCD_LEADER[$mode]=$BL_ETCD_LEADER
	ETCD_FOLLOWER[$mode]=$BL_ETCD_FOLLOWER
	echo "==> etcd $(etcd --version | head -1 | awk '{print $3}'), $mode: leader $BL_ETCD_LEADER, serializable reads from $BL_ETCD_FOLLOWER"
	BL_ETCD_TLS=""
}

etcd_preload() { # MODE
	BL_ETCD_TLS=""
	[ "$1" = tls ] && BL_ETCD_TLS=$DATA/etcd-certs
	bl_etcd_preload "${ETCD_LEADER[$1]}" "$KEYS" "$VSIZE"
	BL_ETCD_TLS=""
}

for m in tls plain; do
	bl_check_ports "$(cm_port $m)" "$(($(cm_port $m) + 1))" "$(($(cm_port $m) + 2))"
done
bl_check_ports "$GW_PORT" "$((GW_PORT + 1))"
confman_up tls
confman_up plain
etcd_up tls
etcd_up plain
preloaded=0
for r in $(seq 1 "$ROUNDS"); do
	echo "==> round $r of $ROUNDS"
	for m in tls plain; do
		cm_run "$m" "cm-$m-native-put-r$r" --servers "${CM_SERVERS[$m]}" --op put
	done
	for m in tls plain; do # (the first also writes every key, for the reads below)
		cm_run "$m" "cm-$m-native-fol-r$r" --servers "${CM_FOLLOWER[$m]}" --op get --consistency follower
	done
	for m in tls plain; do
		wrk_run "cm-$m-gw-put-r$r" "${CM_PIDS[$m]}" "${GW_PID[$m]}" "${GW_URL[$m]}" "$ETCD_LUA" put "$KEYS" "$VSIZE"
		wrk_run "etcd-$m-put-r$r" "${ETCD_PIDS[$m]}" "" "${ETCD_SCH[$m]}://${ETCD_LEADER[$m]}" "$ETCD_LUA" put "$KEYS" "$VSIZE"
	done
	if [ "$preloaded" = 0 ]; then
		etcd_preload tls
		etcd_preload plain
		preloaded=1
	fi
	for m in tls plain; do
		wrk_run "cm-$m-gw-ser-r$r" "${CM_PIDS[$m]}" "${GW_PID[$m]}" "${GW_URL[$m]}" "$ETCD_LUA" serial "$KEYS" "$VSIZE"
		wrk_run "etcd-$m-ser-r$r" "${ETCD_PIDS[$m]}" "" "${ETCD_SCH[$m]}://${ETCD_FOLLOWER[$m]}" "$ETCD_LUA" serial "$KEYS" "$VSIZE"
	done
	for m in tls plain; do
		wrk_run "cm-$m-gw-v1get-r$r" "${CM_PIDS[$m]}" "${GW_PID[$m]}" "${GW_URL[$m]}" "$V1_LUA" get "$KEYS" "$VSIZE"
	done
done
bl_stop_all
for m in tls plain; do
	"$ROOT/scripts/cluster" -d "$DATA/cm-$m" -p "$(cm_port $m)" -b "$BUILD" down >/dev/null 2>&1 || true
	for k in 1 2 3; do cp "$DATA/cm-$m/node$k.log" "$WORK/cm-$m-node$k.log" 2>/dev/null || true; done
done
echo "==> load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

# The median run of each variant (by ops/s) stands for it in the table.
for f in "$WORK"/*-r1.json; do
	[ -e "$f" ] || continue
	base=${f%-r1.json}
	ls "$base"-r*.json | while read -r x; do echo "$(jq -r .ops_per_s "$x") $x"; done | sort -n |
		awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }' | xargs -I{} cp {} "$base.json"
done

# ---- the table ----

ops() { [ -f "$WORK/$1.json" ] && jq -r '.ops_per_s | floor' "$WORK/$1.json" || echo -; }
lat() { [ -f "$WORK/$1.json" ] && jq -r ".latency_us.$2 / 1000" "$WORK/$1.json" | awk '{ printf "%.2f", $1 }' || echo -; }
cpu() { [ -f "$WORK/$1.json" ] && jq -r '.server_cpu_pct + .gw_cpu_pct' "$WORK/$1.json" | awk '{ printf "%.0f", $1 }' || echo -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }

echo
echo "Results: $CLIENTS requests in flight, $VSIZE-byte values, $KEYS keys, ${DURATION} s measured after ${WARMUP} s warmup; each variant's median run of $ROUNDS round(s)"
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
