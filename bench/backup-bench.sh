#!/usr/bin/env bash
# backup-bench.sh: backup and restore of the same data, Confman against etcd, in one run.
#
# Usage: bench/backup-bench.sh [options]
#   --keys N         keys in all (default 100000), spread over the shards
#   --value-size B   value bytes (default 256)
#   --shards S       shards /b0.. /b(S-1), each on nodes 1,2,3 (default 3)
#   --map-size MIB   confmand --map-size (default 1024; 4096 from 500,000 keys)
#   --out DIR        keep the raw results (outputs, logs, load samples) in DIR
#   --skip-etcd      Confman only
#   -h, --help       this text
#
# In one run on this machine, data on disk (/var/tmp, checked not to be tmpfs):
#  1. Confman: a 3-node cluster (scripts/cluster), shards /b0.. on 1,2,3,
#     filled by S parallel cm-load preloads (PREFIX/k%08d, random lowercase
#     values of B bytes, 64 puts in flight each). Then, timed:
#     `confmanctl snapshot save FILE --json` (followers, ReadIndex, 1 MiB
#     chunks, fsync, rename, read back and verified), `snapshot verify`;
#     the cluster is stopped; 3 `confmand --restore FILE` start at once on
#     empty directories (a new cluster id, other ports) and the clock runs
#     until a linearizable `confmanctl get` of PREFIX/k00000000 has
#     succeeded in every shard (polled every 50 ms, shard after shard); the
#     restore's own time is its node log's "restore:" lines minus the start
#     (the first group's line: the file verified; the last: all written).
#     The last key of every shard is read too (a check, not timed).
#  2. etcd (Debian's etcd 3.4: no etcdutl, so `etcdctl snapshot restore`):
#     3 members, the same keys and value sizes (bench/etcd_txn_load.py, 128
#     puts per transaction); timed: `etcdctl snapshot save` from a follower,
#     `etcdctl snapshot status` (etcd's integrity read: hash and counts);
#     the members are stopped; 3 `etcdctl snapshot restore` at once into new
#     data directories, then 3 etcd started on them, and the clock runs
#     until a linearizable `etcdctl get` of every shard's first key works.
#  3. a table: seconds, keys/s and MB/s (file size / seconds), CPU seconds,
#     and the Confman/etcd ratios; the 1-minute load average sampled every
#     5 s over the run (min/mean/max).
#
# Ports 19700-19760 on 127.0.0.1. Every process and directory this script
# starts or makes is removed on exit, also on failure or Ctrl-C.
# Not part of the test suite. Exit status: 0 ok, 1 a step failed, 2 bad usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # sourced files, by path
set -euo pipefail

die() { echo "backup-bench: $*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

KEYS=100000
VSIZE=256
SHARDS=3
MAPSIZE=""
OUT=""
SKIP_ETCD=0
CM_PORT=19700   # the cluster that is saved: node i on 19700+i-1
CM_RPORT=19710  # the restored one
ETCD_CPORT=19721 # etcd member i: client 19720+i, peer 19730+i
ETCD_PPORT=19731
ETCD_RCPORT=19741 # the restored etcd: client 19740+i, peer 19750+i
ETCD_RPPORT=19751

while [ $# -gt 0 ]; do
	case "$1" in
	--keys) KEYS=$2; shift 2 ;;
	--value-size) VSIZE=$2; shift 2 ;;
	--shards) SHARDS=$2; shift 2 ;;
	--map-size) MAPSIZE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--skip-etcd) SKIP_ETCD=1; shift ;;
	*) bl_opt_other backup-bench "$1" ;;
	esac
done
for v in KEYS VSIZE SHARDS; do
	bl_is_uint "${!v}" || { echo "backup-bench: ${v} must be a positive integer" >&2; exit 2; }
done
{ [ "$SHARDS" -le 10 ] && [ "$KEYS" -ge "$SHARDS" ]; } || { echo "backup-bench: 1-10 shards, at least one key each" >&2; exit 2; }
[ -n "$MAPSIZE" ] || MAPSIZE=$([ "$KEYS" -ge 500000 ] && echo 4096 || echo 1024)
bl_is_uint "$MAPSIZE" || { echo "backup-bench: --map-size must be a positive integer" >&2; exit 2; }

cd "$(dirname "$0")/.."
ROOT=$PWD
CTL=$ROOT/build/client/confmanctl
CONFMAND=$ROOT/build/server/confmand
LOAD=$ROOT/build/bench/cm-load

DATA=""
WORK=""
CM_UP=0
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	bl_stop_all # restored nodes, etcd
	[ -z "$SAMPLER" ] || bl_stop_pid "$SAMPLER"
	[ "$CM_UP" = 1 ] && "$ROOT/scripts/cluster" -d "$DATA/confman" -p "$CM_PORT" -b "$ROOT/build" down >/dev/null 2>&1
	bl_finish backup-bench "$DATA" "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- packages and build ----

. "$ROOT/scripts/deps.sh"
need=(etcd-server etcd-client jq python3)
mapfile -t missing < <(cm_deps_missing "${need[@]}")
if [ ${#missing[@]} -gt 0 ]; then
	echo "==> installing ${missing[*]}"
	cm_deps_apt update -q >/dev/null
	cm_deps_apt install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -f build/build.ninja ]; then
	cm_deps_install
	meson setup build >/dev/null
fi
if ! ninja_out=$(ninja -C build server/confmand client/confmanctl bench/cm-load 2>&1); then
	tail -n 30 <<<"$ninja_out" >&2
	die "build failed (above)"
fi

# ---- helpers ----

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
prefix() { echo "/b$1"; }
# keys_in I: the keys of shard I (N / S each, the remainder in the last).
keys_in() { local per=$((KEYS / SHARDS)); [ "$1" -lt $((SHARDS - 1)) ] && echo "$per" || echo $((KEYS - per * (SHARDS - 1))); }
first_key() { echo "$(prefix "$1")/k00000000"; }
last_key() { printf '%s/k%08d\n' "$(prefix "$1")" $(($(keys_in "$1") - 1)); }
servers_at() { echo "127.0.0.1:$1,127.0.0.1:$(($1 + 1)),127.0.0.1:$(($1 + 2))"; }
# res NAME VALUE: one result, "NAME VALUE", in $WORK/results.
res() { echo "$1 $2" >>"$WORK/results"; }
get_res() { awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "-" : v) }' "$WORK/results"; }

# timed FILE CMD...: run CMD, its stdout and stderr into FILE; sets T_REAL
# (wall seconds) and T_CPU (user + system of CMD and its children).
timed() {
	local f=$1 tf rc=0
	shift
	tf=$(mktemp "$WORK/time.XXXXXX")
	{ TIMEFORMAT='%R %U %S'; time "$@" >"$f" 2>&1; } 2>"$tf" || rc=$?
	T_REAL=$(tail -n 1 "$tf" | awk '{ print $1 }')
	T_CPU=$(tail -n 1 "$tf" | awk '{ printf "%.2f", $2 + $3 }')
	rm -f "$tf"
	return "$rc"
}

wait_port() { # PORT PID
	local t
	for t in $(seq 1 400); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# Its own pid, not in BL_PIDS: bl_stop_all between the phases leaves it running.
SAMPLER=""
start_load_sampler() {
	(while :; do cut -d' ' -f1 /proc/loadavg; sleep 5; done) >"$WORK/load" &
	SAMPLER=$!
}

load_summary() {
	awk '{ s += $1; n++; if (n == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
		END { if (n) printf "min %.1f, mean %.1f, max %.1f (%d samples)", lo, s / n, hi, n }' "$WORK/load"
}

# log_secs LINE: the seconds of the day of a confmand log line (HH:MM:SS.mmm ...).
log_secs() { awk '{ split($1, t, ":"); printf "%.3f", t[1] * 3600 + t[2] * 60 + t[3] }' <<<"$1"; }
day_secs() { date -d "@$1" +'%H %M %S.%N' | awk '{ printf "%.3f", $1 * 3600 + $2 * 60 + $3 }'; }

# ---- Confman ----

cm_fill() { # SERVERS
	local i pids=() rc=0 t0
	t0=$(now)
	for i in $(seq 0 $((SHARDS - 1))); do
		"$LOAD" --servers "$1" --op get --prefix "$(prefix "$i")" --keys "$(keys_in "$i")" \
			--value-size "$VSIZE" --clients 64 --warmup 0 --duration 0.1 --json \
			>"$SYS_DIR/load$i.json" 2>"$SYS_DIR/load$i.err" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || rc=1; done
	[ "$rc" = 0 ] || die "confman: the preload failed: $(cat "$SYS_DIR"/load*.err | tail -n 3)"
	echo "    preload: $KEYS keys of $VSIZE B in $(since "$t0") s"
}

cm_restored_ini() { # DIR
	{
		echo "[cluster]"
		echo "id = restored"
		for i in 1 2 3; do
			echo "[node.$i]"
			echo "address = 127.0.0.1:$((CM_RPORT + i - 1))"
		done
		echo "[group.1]"
		echo "prefix = /"
		echo "replicas = 1,2,3"
	} >"$1/cluster.ini"
}

# past T0 SECONDS: true once SECONDS have gone by since T0.
past() { awk -v a="$1" -v b="$(now)" -v s="$2" 'BEGIN { exit !(b - a > s) }'; }

# cm_poll SERVERS T0: until a linearizable get of every shard's first key
# works (the restored cluster's id); gives up 300 s after T0.
cm_poll() {
	local i
	for i in $(seq 0 $((SHARDS - 1))); do
		until "$CTL" -s "$1" -c restored -t 1000 get "$(first_key "$i")" >/dev/null 2>&1; do
			past "$2" 300 && die "confman: $(first_key "$i") not readable 300 s after the restore began"
			sleep 0.05
		done
	done
}

run_confman() {
	local dir=$DATA/confman rdir=$DATA/confman-restored servers rservers snap i t0 c0 c1 pids line first rpids
	SYS_DIR=$WORK/confman
	mkdir -p "$SYS_DIR" "$rdir"
	for i in 0 1 2; do bl_check_ports "$((CM_PORT + i))" "$((CM_RPORT + i))"; done
	servers=$(servers_at "$CM_PORT")
	rservers=$(servers_at "$CM_RPORT")
	snap=$DATA/confman.snap
	CM_UP=1
	"$ROOT/scripts/cluster" --insecure -d "$dir" -p "$CM_PORT" -b "$ROOT/build" up -- --map-size "$MAPSIZE" >/dev/null ||
		die "confman: cluster did not start (see $dir/node*.log)"
	for i in $(seq 0 $((SHARDS - 1))); do
		for t in $(seq 1 60); do
			"$CTL" -s "$servers" shard add --replicas 1,2,3 "$(prefix "$i")" >"$SYS_DIR/shard-add.txt" 2>&1 && break
			[ "$t" = 60 ] && die "confman: shard add failed: $(cat "$SYS_DIR/shard-add.txt")"
			sleep 1
		done
	done
	echo "==> confman: 3 nodes on $(df -P "$dir" | awk 'NR == 2 { print $1 }'), shards $(prefix 0)..$(prefix $((SHARDS - 1))) on 1,2,3"
	cm_fill "$servers"
	# shellcheck disable=SC2046
	pids=$(cat "$dir"/node{1,2,3}.pid | tr '\n' ' ')

	res load_save "$(cut -d' ' -f1 /proc/loadavg)"
	# shellcheck disable=SC2086
	c0=$(bl_cpu $pids)
	timed "$SYS_DIR/save.json" "$CTL" -s "$servers" -t 30000 snapshot save "$snap" --json ||
		die "confman: snapshot save failed: $(tail -n 3 "$SYS_DIR/save.json")"
	# shellcheck disable=SC2086
	c1=$(bl_cpu $pids)
	res cm_save_s "$T_REAL"
	res cm_save_cpu "$T_CPU"
	res cm_save_server_cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
	res cm_file_bytes "$(stat -c %s "$snap")"
	timed "$SYS_DIR/verify.txt" "$CTL" snapshot verify "$snap" || die "confman: verify failed: $(cat "$SYS_DIR/verify.txt")"
	res cm_verify_s "$T_REAL"
	res cm_verify_cpu "$T_CPU"
	"$CTL" snapshot inspect "$snap" --json >"$SYS_DIR/inspect.json" 2>&1 || true
	res cm_file_keys "$(jq '[.groups[]? | .keys] | add // 0' "$SYS_DIR/inspect.json" 2>/dev/null || echo -)"
	for i in 1 2 3; do cp "$dir/node$i.log" "$SYS_DIR/" 2>/dev/null || true; done
	"$ROOT/scripts/cluster" -d "$dir" -p "$CM_PORT" -b "$ROOT/build" down >/dev/null
	CM_UP=0
	echo "    save $(get_res cm_save_s) s, verify $(get_res cm_verify_s) s, $(get_res cm_file_bytes) bytes"

	cm_restored_ini "$rdir"
	res load_restore "$(cut -d' ' -f1 /proc/loadavg)"
	rpids=()
	t0=$(now)
	for i in 1 2 3; do
		setsid "$CONFMAND" --id "$i" --cluster-file "$rdir/cluster.ini" --data "$rdir/node$i" \
			--restore "$snap" --map-size "$MAPSIZE" -v >"$SYS_DIR/restored$i.log" 2>&1 </dev/null &
		rpids+=($!)
		BL_PIDS+=($!)
	done
	cm_poll "$rservers" "$t0"
	res cm_restore_s "$(since "$t0")"
	res cm_restore_server_cpu "$(bl_cpu "${rpids[@]}")"
	# The restore's own time from each node's log: its first "restore:
	# group" line (the file verified, the store open) and its last line;
	# the slowest node's.
	for i in 1 2 3; do
		first=$(grep -m1 'restore: group' "$SYS_DIR/restored$i.log" || true)
		line=$(grep -m1 'restore: a new cluster' "$SYS_DIR/restored$i.log" || true)
		{ [ -n "$line" ] && [ -n "$first" ]; } || die "confman: node $i logged no restore line (see $SYS_DIR/restored$i.log)"
		awk -v a="$(log_secs "$first")" -v b="$(log_secs "$line")" -v t="$(day_secs "$t0")" \
			'function d(x) { x -= t; if (x < -43200) x += 86400; return x }
			BEGIN { printf "%.3f %.3f\n", d(a), d(b) }'
	done >"$SYS_DIR/restore-own"
	res cm_restore_verify_s "$(sort -n -k1 "$SYS_DIR/restore-own" | tail -n 1 | cut -d' ' -f1)"
	res cm_restore_own_s "$(sort -n -k2 "$SYS_DIR/restore-own" | tail -n 1 | cut -d' ' -f2)"
	for i in $(seq 0 $((SHARDS - 1))); do
		"$CTL" -s "$rservers" -c restored get "$(last_key "$i")" | wc -c | grep -qx "$VSIZE" ||
			die "confman: the restored cluster lacks $(last_key "$i")"
	done
	echo "    restore to first reads $(get_res cm_restore_s) s (the restore itself: $(get_res cm_restore_own_s) s)"
	bl_stop_all
}

# ---- etcd ----

etcd_cluster() { # PEER_PORT: the --initial-cluster list
	echo "e1=http://127.0.0.1:$1,e2=http://127.0.0.1:$(($1 + 1)),e3=http://127.0.0.1:$(($1 + 2))"
}

# etcd_poll ENDPOINTS T0: until a linearizable get of every shard's first
# key works; gives up 300 s after T0.
etcd_poll() {
	local i
	for i in $(seq 0 $((SHARDS - 1))); do
		until etcdctl --endpoints="$1" --command-timeout=1s get "$(first_key "$i")" --print-value-only 2>/dev/null |
			grep -q .; do
			past "$2" 300 && die "etcd: $(first_key "$i") not readable 300 s after the restore began"
			sleep 0.05
		done
	done
}

run_etcd() {
	local dir=$DATA/etcd rdir=$DATA/etcd-restored snap=$DATA/etcd.snap n i t0 c0 c1 url pids=() rc rpids
	SYS_DIR=$WORK/etcd
	mkdir -p "$SYS_DIR" "$rdir"
	for i in 0 1 2; do bl_check_ports "$((ETCD_RCPORT + i))" "$((ETCD_RPPORT + i))"; done
	bl_etcd_up "$dir" "$ETCD_CPORT" "$ETCD_PPORT" cm-backup-bench
	echo "==> etcd $(etcd --version | head -1 | awk '{print $3}'): 3 members on $(df -P "$dir" | awk 'NR == 2 { print $1 }'), leader $BL_ETCD_LEADER"
	t0=$(now)
	# shellcheck disable=SC2046
	python3 "$ROOT/bench/etcd_txn_load.py" --url "http://127.0.0.1:$ETCD_CPORT" --keys "$KEYS" \
		--value-size "$VSIZE" --prefixes "$(for i in $(seq 0 $((SHARDS - 1))); do printf '%s,' "$(prefix "$i")"; done)" ||
		die "etcd: the preload failed"
	n=$(etcdctl --endpoints="127.0.0.1:$ETCD_CPORT" get --prefix /b --limit=1 -w json | jq -r .count)
	[ "$n" = "$KEYS" ] || die "etcd: the preload wrote $n keys, not $KEYS"
	echo "    preload: $KEYS keys of $VSIZE B in $(since "$t0") s"

	res load_etcd_save "$(cut -d' ' -f1 /proc/loadavg)"
	c0=$(bl_cpu "${BL_ETCD_PIDS[@]}")
	timed "$SYS_DIR/save.txt" etcdctl --endpoints="$BL_ETCD_FOLLOWER" --command-timeout=600s snapshot save "$snap" ||
		die "etcd: snapshot save failed: $(tail -n 3 "$SYS_DIR/save.txt")"
	c1=$(bl_cpu "${BL_ETCD_PIDS[@]}")
	res etcd_save_s "$T_REAL"
	res etcd_save_cpu "$T_CPU"
	res etcd_save_server_cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
	res etcd_file_bytes "$(stat -c %s "$snap")"
	timed "$SYS_DIR/status.json" etcdctl snapshot status "$snap" -w json ||
		die "etcd: snapshot status failed: $(cat "$SYS_DIR/status.json")"
	res etcd_verify_s "$T_REAL"
	res etcd_verify_cpu "$T_CPU"
	res etcd_file_keys "$(jq .totalKey "$SYS_DIR/status.json")"
	cp "$WORK"/etcd-e*.log "$SYS_DIR/" 2>/dev/null || true
	bl_stop_all
	echo "    save $(get_res etcd_save_s) s, status $(get_res etcd_verify_s) s, $(get_res etcd_file_bytes) bytes"

	res load_etcd_restore "$(cut -d' ' -f1 /proc/loadavg)"
	t0=$(now)
	for i in 1 2 3; do
		(
			timed "$SYS_DIR/restore$i.txt" etcdctl snapshot restore "$snap" --name "e$i" --data-dir "$rdir/e$i" \
				--initial-cluster "$(etcd_cluster "$ETCD_RPPORT")" --initial-cluster-token cm-backup-restored \
				--initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_RPPORT + i - 1))"
			echo "$T_CPU" >"$SYS_DIR/restore$i.cpu"
		) &
		pids+=($!)
	done
	rc=0
	for i in "${pids[@]}"; do wait "$i" || rc=1; done
	[ "$rc" = 0 ] || die "etcd: snapshot restore failed: $(cat "$SYS_DIR"/restore*.txt | tail -n 3)"
	res etcd_restore_own_s "$(since "$t0")"
	res etcd_restore_cmd_cpu "$(cat "$SYS_DIR"/restore?.cpu | awk '{ s += $1 } END { printf "%.2f", s }')"
	rpids=()
	for i in 1 2 3; do
		url=http://127.0.0.1:$((ETCD_RCPORT + i - 1))
		setsid etcd --name "e$i" --data-dir "$rdir/e$i" \
			--listen-client-urls "$url" --advertise-client-urls "$url" \
			--listen-peer-urls "http://127.0.0.1:$((ETCD_RPPORT + i - 1))" \
			--initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_RPPORT + i - 1))" \
			--initial-cluster "$(etcd_cluster "$ETCD_RPPORT")" --initial-cluster-token cm-backup-restored \
			--logger zap --log-level warn >"$SYS_DIR/restored-e$i.log" 2>&1 </dev/null &
		rpids+=($!)
		BL_PIDS+=($!)
	done
	etcd_poll "$(servers_at "$ETCD_RCPORT")" "$t0"
	res etcd_restore_s "$(since "$t0")"
	res etcd_restore_server_cpu "$(bl_cpu "${rpids[@]}")"
	for i in $(seq 0 $((SHARDS - 1))); do
		etcdctl --endpoints="$(servers_at "$ETCD_RCPORT")" get "$(last_key "$i")" --print-value-only |
			tr -d '\n' | wc -c | grep -qx "$VSIZE" || die "etcd: the restored cluster lacks $(last_key "$i")"
	done
	echo "    restore to first reads $(get_res etcd_restore_s) s (the restore commands: $(get_res etcd_restore_own_s) s)"
	bl_stop_all
}

# ---- the table ----

report() {
	awk -v keys="$KEYS" -v skip="$SKIP_ETCD" '
	{ r[$1] = $2 }
	function rate(n, s) { return (s > 0 && r[s] != "") ? n / r[s] : 0 }
	function row(name, c, e, fmt,   ratio) {
		ratio = (skip || c == "" || e == "" || e + 0 == 0) ? "-" : sprintf("%.2f", c / e)
		printf "%-34s %12s %12s %8s\n", name, c == "" ? "-" : sprintf(fmt, c),
			(skip || e == "") ? "-" : sprintf(fmt, e), ratio
	}
	END {
		printf "%-34s %12s %12s %8s\n", "", "confman", "etcd", "ratio"
		row("file bytes", r["cm_file_bytes"], r["etcd_file_bytes"], "%d")
		row("keys in the file", r["cm_file_keys"], r["etcd_file_keys"], "%s")
		row("save s", r["cm_save_s"], r["etcd_save_s"], "%.2f")
		row("save keys/s", rate(keys, "cm_save_s"), rate(keys, "etcd_save_s"), "%.0f")
		row("save MB/s (file)", rate(r["cm_file_bytes"] / 1e6, "cm_save_s"), rate(r["etcd_file_bytes"] / 1e6, "etcd_save_s"), "%.1f")
		row("save client CPU s", r["cm_save_cpu"], r["etcd_save_cpu"], "%.2f")
		row("save server CPU s (3 nodes)", r["cm_save_server_cpu"], r["etcd_save_server_cpu"], "%.2f")
		row("verify / snapshot status s", r["cm_verify_s"], r["etcd_verify_s"], "%.2f")
		row("restore: file verified s", r["cm_restore_verify_s"], "", "%.2f")
		row("restore itself s", r["cm_restore_own_s"], r["etcd_restore_own_s"], "%.2f")
		row("restore CPU s (etcdctl restore x3)", "", r["etcd_restore_cmd_cpu"], "%.2f")
		row("server CPU s until first reads", r["cm_restore_server_cpu"], r["etcd_restore_server_cpu"], "%.2f")
		row("restore to first reads s", r["cm_restore_s"], r["etcd_restore_s"], "%.2f")
		row("restore keys/s (to first reads)", rate(keys, "cm_restore_s"), rate(keys, "etcd_restore_s"), "%.0f")
		row("restore MB/s (to first reads)", rate(r["cm_file_bytes"] / 1e6, "cm_restore_s"), rate(r["etcd_file_bytes"] / 1e6, "etcd_restore_s"), "%.1f")
		printf "(ratio = confman / etcd: below 1 favours Confman for seconds, above 1 for rates)\n"
		printf "load average (1 min) before: confman save %s, restore %s; etcd save %s, restore %s\n",
			r["load_save"], r["load_restore"], r["load_etcd_save"], r["load_etcd_restore"]
	}' "$WORK/results"
}

# ---- main ----

DATA=$(mktemp -d /var/tmp/cm-backup-bench.XXXXXX)
WORK=$(mktemp -d /tmp/cm-backup-bench-out.XXXXXX)
[ "$(stat -f -c %T "$DATA")" != tmpfs ] || die "$DATA is on tmpfs: no disk to measure"
: >"$WORK/results"
start_load_sampler
echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> $KEYS keys of $VSIZE B over $SHARDS shards; confmand --map-size $MAPSIZE"
run_confman
[ "$SKIP_ETCD" = 1 ] || run_etcd
echo "==> load average at the end $(cut -d' ' -f1-3 /proc/loadavg); sampled over the run: $(load_summary)"
echo
report
[ -z "$OUT" ] || echo "raw results in $OUT"
