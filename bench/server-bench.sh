#!/usr/bin/env bash
# server-bench.sh: confmand under load, against tmpfs and etcd measured in the same run.
#
# Usage: bench/server-bench.sh [options]
#   --duration S     measured seconds per workload (default 10)
#   --warmup S       seconds of load before each measurement (default 2)
#   --clients N      requests in flight (default 64; wrk: connections)
#   --value-size B   value bytes (default 256)
#   --keys N         key space (default 10000)
#   --perf           after the measured runs, one more put run on disk with
#                    `perf record -g` on the leader; prints its top symbols
#   --out DIR        keep the raw results (JSON per run, logs) in DIR
#   --skip-etcd      Confman only (no etcd reference, no Confman/etcd ratios)
#   -h, --help       this text
#
# In one run on this machine:
#  1. installs what is missing (etcd-server, etcd-client, wrk, jq; linux-perf
#     for --perf) with apt-get, and builds build/ if needed;
#  2. a 3-node Confman cluster with its data on disk (/var/tmp, checked not
#     to be tmpfs): cm-load put, linearizable get, follower get;
#  3. the same on tmpfs (/dev/shm), the "no disk" reference;
#  4. a 3-node etcd cluster (Debian's etcd-server) with its data on the same
#     disk as 2, driven by wrk through etcd's v3 JSON gateway (bench/etcd-kv.lua):
#     put, linearizable range, serializable range;
#  5. one table (ops/s, p50, p99, errors, CPU) and the ratios Confman/etcd
#     and disk/tmpfs.
#
# Confman is driven through its native protocol (cm-load, asynchronous client
# library, requests pipelined on one connection per server); etcd through its
# HTTP/JSON gateway (wrk, one request per connection at a time). The two
# client paths differ: this measures the servers as their own clients reach
# them; bench/api-bench.sh compares both through the same HTTP/JSON path
# (confman-api against etcd's gateway). See BENCHMARKS.md.
#
# Writes go to the leader. Linearizable reads: Confman's client routes them to
# the leader (ReadIndex), wrk targets etcd's leader. Follower reads: both are
# sent to one follower (cm-load lists only that follower; wrk targets it).
#
# Ports 19300-19339 on 127.0.0.1. Every process and directory this script
# starts or makes is removed on exit, also on failure or Ctrl-C.
# Exit status: 0 all runs succeeded, 1 a run failed, 2 bad usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # sourced files, by path
set -euo pipefail

die() { echo "server-bench: $*" >&2; exit 1; }
# The helpers shared with api-bench.sh (bl_*); its etcd processes go in BL_PIDS.
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

bl_opt_defaults
PERF=0
SKIP_ETCD=0

CM_DISK_PORT=19300  # node i on 19300+i-1
CM_SHM_PORT=19310
ETCD_CLIENT_PORT=19321 # etcd i: client 19320+i, peer 19330+i
ETCD_PEER_PORT=19331

while [ $# -gt 0 ]; do
	if bl_opt "$@"; then shift 2; continue; fi
	case "$1" in
	--perf) PERF=1; shift ;;
	--skip-etcd) SKIP_ETCD=1; shift ;;
	*) bl_opt_other server-bench "$1" ;;
	esac
done
bl_check_opts server-bench var

cd "$(dirname "$0")/.."
ROOT=$PWD
CMLOAD=$ROOT/build/bench/cm-load
CTL=$ROOT/build/client/confmanctl
LUA=$ROOT/bench/etcd-kv.lua

# ---- cleanup: everything below registers what it starts here ----

DISK_DIR=""
SHM_DIR=""
WORK=""
CLUSTERS=() # "dir port" of Confman clusters started
PERF_PID=""

cleanup() {
	local rc=$? c
	trap - EXIT INT TERM
	[ -n "$PERF_PID" ] && bl_stop_pid "$PERF_PID"
	for c in "${CLUSTERS[@]}"; do
		# shellcheck disable=SC2086
		set -- $c
		"$ROOT/scripts/cluster" -d "$1" -p "$2" -b "$ROOT/build" down --wipe >/dev/null 2>&1 || true
	done
	bl_stop_all # etcd
	bl_finish server-bench "$DISK_DIR" "$SHM_DIR" "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. packages and build ----

. "$ROOT/scripts/deps.sh"
need=(etcd-server etcd-client wrk jq curl)
[ "$PERF" = 1 ] && need+=(linux-perf)
mapfile -t missing < <(cm_deps_missing "${need[@]}")
if [ ${#missing[@]} -gt 0 ]; then
	echo "==> installing ${missing[*]}"
	cm_deps_apt update -q >/dev/null
	cm_deps_apt install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -f build/build.ninja ]; then
	. "$ROOT/scripts/deps.sh" && cm_deps_install
	meson setup build >/dev/null
fi
if ! ninja_out=$(ninja -C build 2>&1); then
	tail -n 30 <<<"$ninja_out" >&2
	die "build failed (above)"
fi
if [ ! -x "$CMLOAD" ] || [ ! -x build/server/confmand ]; then die "cm-load or confmand not built"; fi

# ---- helpers (and bench-lib.sh's) ----

# CPU seconds of this shell's finished children (bash `times`, second line).
# `times` must run in this shell, not in a $(...) subshell, which has no
# children of its own: it writes to a file that awk then reads.
children_cpu() {
	times >"$WORK/times"
	awk 'NR == 2 {
		n = split($0, f, " "); s = 0
		for (i = 1; i <= n; i++) { split(f[i], a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] }
		printf "%.3f", s }' "$WORK/times"
}

# ---- 2/3. Confman ----

cm_servers() { echo "127.0.0.1:$1,127.0.0.1:$(($1 + 1)),127.0.0.1:$(($1 + 2))"; }

FAILED=0

# run_cm NAME DIR PORT: put, linearizable get, follower get on a fresh cluster.
run_cm() {
	local name=$1 dir=$2 port=$3 servers leader follower pids k
	bl_check_ports "$port" "$((port + 1))" "$((port + 2))"
	CLUSTERS+=("$dir $port")
	"$ROOT/scripts/cluster" --insecure -d "$dir" -p "$port" -b "$ROOT/build" up >"$WORK/$name-cluster.txt" ||
		die "$name: cluster did not start (see $dir/node*.log)"
	servers=$(cm_servers "$port")
	leader=$(bl_cm_leader "$servers" "$CTL") || die "$name: no leader elected"
	for k in 0 1 2; do
		[ "127.0.0.1:$((port + k))" != "$leader" ] && { follower=127.0.0.1:$((port + k)); break; }
	done
	pids=$(cat "$dir"/node1.pid "$dir"/node2.pid "$dir"/node3.pid | paste -sd,)
	echo "==> $name: 3 nodes on $(cm_fs "$dir"), leader $leader, follower reads from $follower"
	local common=(--clients "$CLIENTS" --value-size "$VSIZE" --keys "$KEYS" --duration "$DURATION"
		--warmup "$WARMUP" --cpu-pids "$pids" --json)
	cm_one "$name" put --servers "$servers" --op put "${common[@]}"
	cm_one "$name" lin --servers "$servers" --op get --consistency linearizable "${common[@]}"
	cm_one "$name" fol --servers "$follower" --op get --consistency follower "${common[@]}"
	if [ "$PERF" = 1 ] && [ "$name" = disk ]; then
		cm_perf "$dir" "$servers" "$leader" "${common[@]}"
	fi
	"$ROOT/scripts/cluster" -d "$dir" -p "$port" -b "$ROOT/build" down >/dev/null
	for k in 1 2 3; do cp "$dir/node$k.log" "$WORK/$name-node$k.log" 2>/dev/null || true; done
}

cm_fs() { df -P "$1" | awk 'NR == 2 { print $1 }'; }

cm_one() {
	local name=$1 wl=$2 rc=0
	shift 2
	"$CMLOAD" "$@" >"$WORK/$name-$wl.json" 2>"$WORK/$name-$wl.err" || rc=$?
	if [ $rc != 0 ] || ! jq -e .ops_per_s "$WORK/$name-$wl.json" >/dev/null 2>&1; then
		echo "    $wl: FAILED (exit $rc): $(tail -n 3 "$WORK/$name-$wl.err" | tr '\n' ' ')"
		rm -f "$WORK/$name-$wl.json"
		FAILED=1
		return 0
	fi
	jq -r --arg wl "$wl" '"    \($wl): \(.ops_per_s) ops/s, p50 \(.latency_us.p50) us, p99 \(.latency_us.p99) us, errors \(.errors_total)"' \
		"$WORK/$name-$wl.json"
}

# One more put run with perf recording the leader; not part of the table.
cm_perf() {
	local dir=$1 servers=$2 leader=$3 lpid port k
	shift 3
	port=${leader##*:}
	k=$((port - CM_DISK_PORT + 1))
	lpid=$(cat "$dir/node$k.pid")
	echo "==> perf: put run with perf record -g on the leader (pid $lpid), not in the table"
	perf record -q -g -F 999 -p "$lpid" -o "$WORK/perf-put.data" -- sleep $((WARMUP + DURATION)) \
		>/dev/null 2>&1 &
	PERF_PID=$!
	"$CMLOAD" --servers "$servers" --op put "$@" >"$WORK/disk-put-perf.json" 2>/dev/null || true
	wait "$PERF_PID" || true
	PERF_PID=""
	perf report -i "$WORK/perf-put.data" --stdio --no-children --sort symbol --percent-limit 1.5 \
		-g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25 >"$WORK/perf-put.txt" || true
	perf report -i "$WORK/perf-put.data" --stdio --children --sort symbol --percent-limit 5 \
		-g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 >"$WORK/perf-put-children.txt" || true
	echo "    put under perf: $(jq -r .ops_per_s "$WORK/disk-put-perf.json" 2>/dev/null) ops/s; leader's top symbols (self):"
	sed 's/^/    /' "$WORK/perf-put.txt"
}

# ---- 4. etcd ----

run_etcd() {
	local dir=$1 leader follower
	bl_etcd_up "$dir" "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" cm-server-bench
	leader=$BL_ETCD_LEADER
	follower=$BL_ETCD_FOLLOWER
	echo "==> etcd $(etcd --version | head -1 | awk '{print $3}'): 3 nodes on $(cm_fs "$dir"), leader $leader, serializable reads from $follower"
	etcd_one put "$leader" put
	# Every key once, in transactions of 100 puts (etcd's --max-txn-ops is 128).
	bl_etcd_preload "$leader" "$KEYS" "$VSIZE"
	etcd_one lin "$leader" range
	etcd_one fol "$follower" serial
}

etcd_one() {
	local wl=$1 ep=$2 mode=$3 c0 c1 w0 w1 h0 h1 rc=0
	local args=(-t"$((CLIENTS < 2 ? 1 : 2))" -c"$CLIENTS" -s "$LUA" "http://$ep" -- "$mode" "$KEYS" "$VSIZE")
	if [ "$WARMUP" -gt 0 ]; then
		wrk -d"${WARMUP}s" "${args[@]}" >/dev/null 2>&1 || true
	fi
	c0=$(bl_cpu "${BL_ETCD_PIDS[@]}")
	h0=$(bl_host_busy)
	children_cpu >"$WORK/w0"
	wrk -d"${DURATION}s" "${args[@]}" >"$WORK/etcd-$wl.txt" 2>&1 || rc=$?
	children_cpu >"$WORK/w1"
	h1=$(bl_host_busy)
	w0=$(cat "$WORK/w0")
	w1=$(cat "$WORK/w1")
	c1=$(bl_cpu "${BL_ETCD_PIDS[@]}")
	if [ $rc != 0 ] || ! grep '^{"tool":"wrk"' "$WORK/etcd-$wl.txt" >"$WORK/etcd-$wl.raw"; then
		echo "    $wl: FAILED (wrk exit $rc)"
		FAILED=1
		return 0
	fi
	# The same fields as cm-load's JSON, CPU in % of one core over the run.
	jq -c --argjson d "$DURATION" --argjson s "$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" \
		--argjson c "$(awk -v a="$w0" -v b="$w1" 'BEGIN{print b-a}')" \
		--argjson h "$(awk -v a="$h0" -v b="$h1" 'BEGIN{print b-a}')" \
		'. + {errors_total: (.errors.connect + .errors.read + .errors.write + .errors.status + .errors.timeout),
		      server_cpu_pct: (100 * $s / .window_s), client_cpu_pct: (100 * $c / .window_s),
		      host_cpu_pct: (100 * $h / .window_s)}' \
		"$WORK/etcd-$wl.raw" >"$WORK/etcd-$wl.json"
	jq -r --arg wl "$wl" '"    \($wl): \(.ops_per_s) ops/s, p50 \(.latency_us.p50) us, p99 \(.latency_us.p99) us, errors \(.errors_total)"' \
		"$WORK/etcd-$wl.json"
}

# ---- the table ----

# Fields of one result: ops p50_ms p99_ms errors server_cpu% ops_per_cpu_s
# client_cpu% other_cpu% (the machine's busy CPU less servers and client:
# other programs, and the kernel's work not charged to a process).
fields() {
	local f=$1
	[ -f "$f" ] || { echo "- - - - - - - -"; return; }
	jq -r '(if has("server_cpu_pct") then .server_cpu_pct else ([.pid_cpu_pct[]] | add) end) as $s
		| [(.ops_per_s | floor), (.latency_us.p50 / 1000), (.latency_us.p99 / 1000),
		   .errors_total, $s, (if $s > 0 then .ops_per_s * 100 / $s | floor else "-" end),
		   .client_cpu_pct, ([.host_cpu_pct - $s - .client_cpu_pct, 0] | max)] | @tsv' "$f" |
		awk -F'\t' '{ printf "%s %.2f %.2f %s %.0f %s %.0f %.0f\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
}

row() {
	local label=$1 f=$2
	# shellcheck disable=SC2046,SC2183 # fields prints the 8 values
	printf '| %-34s | %9s | %8s | %8s | %6s | %11s | %15s | %11s | %10s |\n' "$label" $(fields "$f")
}

ratio() { # ratio A B: A/B with two decimals, or - when either is missing
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}

field() { fields "$1" | awk -v n="$2" '{ print $n }'; }

report() {
	echo
	echo "Results: $CLIENTS requests in flight, $VSIZE-byte values, $KEYS keys, ${DURATION} s measured after ${WARMUP} s warmup"
	echo "(CPU in % of one core over the measured window, $(nproc) cores: server = the 3 nodes together;"
	echo " ops/server-CPUs = ops per server CPU-second; other = the rest of the machine's busy time)"
	echo
	printf '| %-34s | %9s | %8s | %8s | %6s | %11s | %15s | %11s | %10s |\n' system "ops/s" "p50 ms" "p99 ms" \
		errors "server CPU%" "ops/server-CPUs" "client CPU%" "other CPU%"
	echo "|------------------------------------|----------:|---------:|---------:|-------:|------------:|----------------:|------------:|-----------:|"
	row "confman disk: put" "$WORK/disk-put.json"
	row "confman disk: get linearizable" "$WORK/disk-lin.json"
	row "confman disk: get follower" "$WORK/disk-fol.json"
	row "confman tmpfs: put" "$WORK/shm-put.json"
	row "confman tmpfs: get linearizable" "$WORK/shm-lin.json"
	row "confman tmpfs: get follower" "$WORK/shm-fol.json"
	if [ "$SKIP_ETCD" = 0 ]; then
		row "etcd disk (HTTP gw): put" "$WORK/etcd-put.json"
		row "etcd disk (HTTP gw): range lin." "$WORK/etcd-lin.json"
		row "etcd disk (HTTP gw): range serial." "$WORK/etcd-fol.json"
	fi
	echo
	printf '| %-30s | %9s | %12s | %12s | %20s |\n' ratio "ops/s" "p50" "p99" "ops/server-CPU-s"
	echo "|--------------------------------|----------:|-------------:|-------------:|---------------------:|"
	local wl name a b
	for wl in put lin fol; do
		name=$(case $wl in put) echo put ;; lin) echo "get linearizable" ;; fol) echo "get follower" ;; esac)
		a=$WORK/disk-$wl.json
		b=$WORK/shm-$wl.json
		printf '| %-30s | %9s | %12s | %12s | %20s |\n' "disk/tmpfs: $name" \
			"$(ratio "$(field "$a" 1)" "$(field "$b" 1)")" "$(ratio "$(field "$a" 2)" "$(field "$b" 2)")" \
			"$(ratio "$(field "$a" 3)" "$(field "$b" 3)")" "$(ratio "$(field "$a" 6)" "$(field "$b" 6)")"
	done
	if [ "$SKIP_ETCD" = 0 ]; then
		for wl in put lin fol; do
			name=$(case $wl in put) echo put ;; lin) echo "get linearizable" ;; fol) echo "get follower" ;; esac)
			a=$WORK/disk-$wl.json
			b=$WORK/etcd-$wl.json
			printf '| %-30s | %9s | %12s | %12s | %20s |\n' "confman/etcd: $name" \
				"$(ratio "$(field "$a" 1)" "$(field "$b" 1)")" "$(ratio "$(field "$a" 2)" "$(field "$b" 2)")" \
				"$(ratio "$(field "$a" 3)" "$(field "$b" 3)")" "$(ratio "$(field "$a" 6)" "$(field "$b" 6)")"
		done
	fi
	echo
	echo "(ops/s ratios above 1 favour the numerator; latency ratios below 1 do)"
}

# ---- main ----

DISK_DIR=$(mktemp -d /var/tmp/cm-server-bench.XXXXXX)
SHM_DIR=$(mktemp -d /dev/shm/cm-server-bench.XXXXXX)
WORK=$(mktemp -d /tmp/cm-server-bench-out.XXXXXX)
[ "$(stat -f -c %T "$DISK_DIR")" != tmpfs ] || die "$DISK_DIR is on tmpfs: no disk to measure"
[ "$(stat -f -c %T "$SHM_DIR")" = tmpfs ] || die "$SHM_DIR is not tmpfs"

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
# The disk's synchronous write rate, for context: what one fsync costs here.
dd_out=$(dd if=/dev/zero of="$DISK_DIR/dd.probe" bs=4k count=300 oflag=dsync 2>&1 | tail -1)
rm -f "$DISK_DIR/dd.probe"
dd_secs=$(awk -F', ' '{ split($(NF - 1), t, " "); print t[1] }' <<<"$dd_out")
echo "==> disk $(cm_fs "$DISK_DIR"): 300 x 4 KiB O_DSYNC writes in $dd_secs s:" \
	"$(awk -v s="$dd_secs" 'BEGIN { printf "%.0f/s, %.2f ms each", 300 / s, 1000 * s / 300 }')"

run_cm disk "$DISK_DIR/confman" "$CM_DISK_PORT"
run_cm shm "$SHM_DIR/confman" "$CM_SHM_PORT"
[ "$SKIP_ETCD" = 1 ] || run_etcd "$DISK_DIR/etcd"
echo "==> load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
report
[ -z "$OUT" ] || echo "raw results in $OUT"
exit "$FAILED"
