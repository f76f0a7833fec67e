#!/usr/bin/env bash
# move-bench.sh: moving a loaded shard to a new node under a writer, against etcd in the same run.
#
# Usage: bench/move-bench.sh [options]
#   --keys N         keys in the shard (default 100000)
#   --value-size B   value bytes (default 256)
#   --rate R         the writer's puts per second (default 500; 0: closed loop)
#   --conns N        the writer's connections, one put in flight each (default 64)
#   --before S       seconds of writing before the move starts (default 10)
#   --after S        seconds of writing after it ended (default 10)
#   --out DIR        keep the raw results (buckets, step lines, logs) in DIR
#   --skip-etcd      Confman only
#   -h, --help       this text
#
# In one run on this machine, data on disk (/var/tmp, checked not to be tmpfs):
#  1. Confman: a 3-node cluster (scripts/cluster), shard /move on 1,2,3,
#     confman-api in front of it; bench/move_writer.py preloads /move/k%08d
#     (N keys of B bytes) through the gateway's etcd endpoint /v3/kv/put,
#     then writes random keys of /move at R puts/s; after --before s:
#     `confmanctl node add 4`, `confmand --id 4 --join`, `confmanctl shard
#     move /move --replicas 1,2,4 --json` (each step line timestamped);
#     --after s later the writer stops.
#  2. etcd (Debian's etcd-server): 3 members, the same preload and the same
#     writer through etcd's own JSON gateway on member 1; then `etcdctl
#     member add e4 --learner`, start e4, `member promote` every 100 ms until
#     etcd accepts it (it refuses a learner not yet in sync), `move-leader`
#     to e1 if e3 leads (Confman's move transfers leadership itself), and
#     `member remove` e3.
#  3. the phases, the bytes the new node read (rchar of its process: sockets,
#     plus its few file reads) and wrote to disk, the writer's ops/s and
#     p50/p99 per second before, during and after the move, and the ratios.
#
# The writer goes through an HTTP/JSON gateway for both systems (confman-api
# is an extra process on Confman's path; etcd's gateway is inside etcd), to
# member 1 / a gateway that lists nodes 1-3, never to the node that leaves.
# Ports 19600-19640 on 127.0.0.1. Every process and directory this script
# starts or makes is removed on exit, also on failure or Ctrl-C.
# Exit status: 0 both moves completed, 1 a step failed, 2 bad usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # sourced files, by path
set -euo pipefail

die() { echo "move-bench: $*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

KEYS=100000
VSIZE=256
RATE=500
CONNS=64
BEFORE=10
AFTER=10
OUT=""
SKIP_ETCD=0
CM_PORT=19600      # node i on 19600+i-1, node 4 on 19603
GW_PORT=19610      # confman-api
ETCD_CLIENT_PORT=19621 # etcd i: client 19620+i, peer 19630+i
ETCD_PEER_PORT=19631

while [ $# -gt 0 ]; do
	case "$1" in
	--keys) KEYS=$2; shift 2 ;;
	--value-size) VSIZE=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--before) BEFORE=$2; shift 2 ;;
	--after) AFTER=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--skip-etcd) SKIP_ETCD=1; shift ;;
	*) bl_opt_other move-bench "$1" ;;
	esac
done
for v in KEYS VSIZE CONNS BEFORE AFTER; do
	bl_is_uint "${!v}" || { echo "move-bench: ${v} must be a positive integer" >&2; exit 2; }
done
[[ "$RATE" =~ ^[0-9]+$ ]] || { echo "move-bench: --rate must be an integer" >&2; exit 2; }

cd "$(dirname "$0")/.."
ROOT=$PWD
CTL=$ROOT/build/client/confmanctl
API=$ROOT/build/api/confman-api
CONFMAND=$ROOT/build/server/confmand
WRITER=$ROOT/bench/move_writer.py

DATA=""
WORK=""
CM_UP=0
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	bl_stop_all # writers, gateway, node 4, etcd
	[ "$CM_UP" = 1 ] && "$ROOT/scripts/cluster" -d "$DATA/confman" -p "$CM_PORT" -b "$ROOT/build" down >/dev/null 2>&1
	bl_finish move-bench "$DATA" "$WORK"
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
if ! ninja_out=$(ninja -C build server/confmand client/confmanctl api/confman-api 2>&1); then
	tail -n 30 <<<"$ninja_out" >&2
	die "build failed (above)"
fi

# ---- helpers ----

now() { date +%s.%N; }
# ev NAME [VALUE]: one line "NAME TIME [VALUE]" in the system's event file.
ev() { echo "$1 $(now)${2:+ $2}" >>"$EVENTS"; }
# stamp: each line of stdin prefixed with its arrival time.
stamp() { local l; while IFS= read -r l; do echo "$(now) $l"; done; }
io_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/io" 2>/dev/null || echo 0; }

start_writer() { # URL: the writer in the background, its pid in WRITER_PID
	python3 "$WRITER" --url "$1" --conns "$CONNS" --keys "$KEYS" --value-size "$VSIZE" \
		put --rate "$RATE" --out "$SYS_DIR/buckets.jsonl" --raw "$SYS_DIR/raw.txt" 2>"$SYS_DIR/writer.err" &
	WRITER_PID=$!
	BL_PIDS+=("$WRITER_PID")
}

stop_writer() {
	kill -TERM "$WRITER_PID"
	wait "$WRITER_PID" || die "the writer failed: $(tail -n 3 "$SYS_DIR/writer.err")"
}

preload() { # URL
	local t0
	t0=$(now)
	python3 "$WRITER" --url "$1" --conns 32 --keys "$KEYS" --value-size "$VSIZE" preload ||
		die "preload through $1 failed"
	echo "    preload: $KEYS keys of $VSIZE B in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"
}

wait_port() { # PORT PID
	local t
	for t in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# ---- Confman ----

run_confman() {
	local dir=$DATA/confman servers gw n4 i
	SYS_DIR=$WORK/confman
	EVENTS=$SYS_DIR/events
	mkdir -p "$SYS_DIR"
	bl_check_ports "$CM_PORT" "$((CM_PORT + 1))" "$((CM_PORT + 2))" "$((CM_PORT + 3))" "$GW_PORT"
	servers=127.0.0.1:$CM_PORT,127.0.0.1:$((CM_PORT + 1)),127.0.0.1:$((CM_PORT + 2))
	CM_UP=1
	"$ROOT/scripts/cluster" --insecure -d "$dir" -p "$CM_PORT" -b "$ROOT/build" up >/dev/null ||
		die "confman: cluster did not start (see $dir/node*.log)"
	# Until the groups have leaders (the machine may be busy: up to 60 s).
	for i in $(seq 1 60); do
		"$CTL" -s "$servers" shard add --replicas 1,2,3 /move >"$SYS_DIR/shard-add.txt" 2>&1 && break
		[ "$i" = 60 ] && die "confman: shard add failed: $(cat "$SYS_DIR/shard-add.txt")"
		sleep 1
	done
	setsid "$API" --listen "127.0.0.1:$GW_PORT" --servers "$servers" >"$SYS_DIR/api.log" 2>&1 </dev/null &
	gw=$!
	BL_PIDS+=("$gw")
	wait_port "$GW_PORT" "$gw" || die "confman-api did not start (see $SYS_DIR/api.log)"
	echo "==> confman: 3 nodes on $(df -P "$dir" | awk 'NR == 2 { print $1 }'), shard /move, confman-api on :$GW_PORT"
	preload "http://127.0.0.1:$GW_PORT"
	"$CTL" -s "$servers" status >"$SYS_DIR/status-before.txt" 2>&1 || true
	echo "    /move's leader: node $(awk '$2 == "/move" { print $5 }' "$SYS_DIR/status-before.txt" | head -1)"
	start_writer "http://127.0.0.1:$GW_PORT"
	sleep "$BEFORE"

	ev start
	"$CTL" -s "$servers" node add 4 --address "127.0.0.1:$((CM_PORT + 3))" >"$SYS_DIR/node-add.txt" 2>&1 ||
		die "confman: node add failed: $(cat "$SYS_DIR/node-add.txt")"
	ev node_added
	mkdir -p "$dir/node4"
	setsid "$CONFMAND" --id 4 --join "$servers" --listen "127.0.0.1:$((CM_PORT + 3))" \
		--data "$dir/node4" -v >"$SYS_DIR/node4.log" 2>&1 </dev/null &
	n4=$!
	BL_PIDS+=("$n4")
	ev node4_started
	# Re-run as the README's runbook says if it stops (each run goes on
	# from where the cluster is); the re-runs are counted and reported.
	for i in 1 2 3 4 5; do
		{ "$CTL" -s "$servers" shard move /move --replicas 1,2,4 --json 2>&1 && echo '{"step":"exit0"}'; } |
			stamp >>"$SYS_DIR/move.txt" || true # a stop is read from the last line
		tail -n 1 "$SYS_DIR/move.txt" | grep -q '"exit0"' && break
		[ "$i" = 5 ] && die "confman: shard move failed 5 times: $(tail -n 3 "$SYS_DIR/move.txt")"
		echo "    shard move stopped: $(tail -n 1 "$SYS_DIR/move.txt" | cut -d' ' -f2-); running it again"
	done
	ev end
	ev move_reruns "$((i - 1))"
	ev rchar "$(io_field "$n4" rchar)"
	ev write_bytes "$(io_field "$n4" write_bytes)"
	ev peer_bytes "$("$CTL" -s "127.0.0.1:$((CM_PORT + 3))" status --json 2>/dev/null |
		jq '[.servers[0].health.peers[].bytes_received] | add')"
	sleep "$AFTER"
	stop_writer
	"$CTL" -s "127.0.0.1:$((CM_PORT + 1)),127.0.0.1:$((CM_PORT + 3))" status >"$SYS_DIR/status-after.txt" 2>&1 || true
	# Node 4 holds the shard: the last preloaded key, read from its replica.
	"$CTL" -s "127.0.0.1:$((CM_PORT + 3))" get --from "127.0.0.1:$((CM_PORT + 3))" \
		"/move/k$(printf %08d $((KEYS - 1)))" >/dev/null 2>&1 ||
		die "confman: node 4 cannot read the last key"
	for i in 1 2 3; do cp "$dir/node$i.log" "$SYS_DIR/" 2>/dev/null || true; done
	"$ROOT/scripts/cluster" -d "$dir" -p "$CM_PORT" -b "$ROOT/build" down >/dev/null
	CM_UP=0
	bl_stop_all
}

# ---- etcd ----

etcd_eps() { echo "127.0.0.1:$ETCD_CLIENT_PORT"; }
etcd_id() { # NAME: the member id (hex) of that member (the simple format: no uint64 through jq)
	etcdctl --endpoints="$(etcd_eps)" member list -w simple | awk -F', ' -v n="$1" '$3 == n { print $1 }'
}

run_etcd() {
	local dir=$DATA/etcd ep eps3 leader id1 id3 id4 url4 peer4 cluster e4 t
	SYS_DIR=$WORK/etcd
	EVENTS=$SYS_DIR/events
	mkdir -p "$SYS_DIR"
	bl_check_ports "$((ETCD_CLIENT_PORT + 3))" "$((ETCD_PEER_PORT + 3))"
	bl_etcd_up "$dir" "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" cm-move-bench
	ep=$(etcd_eps)
	echo "==> etcd $(etcd --version | head -1 | awk '{print $3}'): 3 members on $(df -P "$dir" | awk 'NR == 2 { print $1 }'), writer on e1's gateway"
	preload "http://$ep"
	echo "    leader: $BL_ETCD_LEADER"
	start_writer "http://$ep"
	sleep "$BEFORE"

	url4=http://127.0.0.1:$((ETCD_CLIENT_PORT + 3))
	peer4=http://127.0.0.1:$((ETCD_PEER_PORT + 3))
	# Looked up before the clock starts (a lookup under load takes seconds).
	id1=$(etcd_id e1)
	id3=$(etcd_id e3)
	eps3="$ep,127.0.0.1:$((ETCD_CLIENT_PORT + 1)),127.0.0.1:$((ETCD_CLIENT_PORT + 2))"
	ev start
	etcdctl --endpoints="$ep" member add e4 --learner --peer-urls="$peer4" >"$SYS_DIR/member-add.txt" 2>&1 ||
		die "etcd: member add failed: $(cat "$SYS_DIR/member-add.txt")"
	ev node_added
	cluster=$(grep '^ETCD_INITIAL_CLUSTER=' "$SYS_DIR/member-add.txt" | sed 's/^[^=]*=//; s/"//g')
	setsid etcd --name e4 --data-dir "$dir/e4" \
		--listen-client-urls "$url4" --advertise-client-urls "$url4" \
		--listen-peer-urls "$peer4" --initial-advertise-peer-urls "$peer4" \
		--initial-cluster "$cluster" --initial-cluster-token cm-move-bench \
		--initial-cluster-state existing --logger zap --log-level info \
		>"$SYS_DIR/etcd-e4.log" 2>&1 </dev/null &
	e4=$!
	BL_PIDS+=("$e4")
	ev node4_started
	id4=$(grep -o 'Member [0-9a-f]* added' "$SYS_DIR/member-add.txt" | awk '{ print $2 }')
	[ -n "$id4" ] || die "etcd: no member id in: $(cat "$SYS_DIR/member-add.txt")"
	# etcd refuses to promote a learner that is not in sync yet: ask until it accepts.
	for t in $(seq 1 3000); do
		if etcdctl --endpoints="$ep" member promote "$id4" >"$SYS_DIR/promote.txt" 2>&1; then break; fi
		[ "$t" = 3000 ] && die "etcd: e4 not promoted after 300 s: $(cat "$SYS_DIR/promote.txt")"
		kill -0 "$e4" 2>/dev/null || die "etcd: e4 exited (see $SYS_DIR/etcd-e4.log)"
		sleep 0.1
	done
	echo "$t" >"$SYS_DIR/promote-tries"
	ev promoted
	leader=$(etcdctl --endpoints="$eps3" endpoint status -w simple | awk -F', ' '$5 == "true" { print $2 }')
	echo "$leader" >"$SYS_DIR/leader-at-remove"
	ev leader_checked
	if [ "$leader" = "$id3" ]; then
		# move-leader must reach the leader: every member's endpoint.
		etcdctl --endpoints="$eps3" move-leader "$id1" >"$SYS_DIR/move-leader.txt" 2>&1 ||
			die "etcd: move-leader failed: $(cat "$SYS_DIR/move-leader.txt")"
	fi
	ev transferred
	etcdctl --endpoints="$ep" member remove "$id3" >"$SYS_DIR/member-remove.txt" 2>&1 ||
		die "etcd: member remove failed: $(cat "$SYS_DIR/member-remove.txt")"
	ev end
	ev rchar "$(io_field "$e4" rchar)"
	ev write_bytes "$(io_field "$e4" write_bytes)"
	ev peer_bytes "$(curl -s "$url4/metrics" | awk '/^etcd_network_peer_received_bytes_total/ { s += $2 } END { printf "%d", s }')"
	sleep "$AFTER"
	stop_writer
	etcdctl --endpoints="127.0.0.1:$((ETCD_CLIENT_PORT + 3))" get "/move/k$(printf %08d $((KEYS - 1)))" \
		--consistency=s --print-value-only | grep -q . || die "etcd: e4 cannot read the last key"
	etcdctl --endpoints="$ep" member list >"$SYS_DIR/members-after.txt" 2>&1 || true
	cp "$WORK"/etcd-e*.log "$SYS_DIR/" 2>/dev/null || true
	grep -c 'snapshot' "$SYS_DIR/etcd-e4.log" >"$SYS_DIR/e4-snapshot-lines" || true
	bl_stop_all
}

# ---- main ----

DATA=$(mktemp -d /var/tmp/cm-move-bench.XXXXXX)
WORK=$(mktemp -d /tmp/cm-move-bench-out.XXXXXX)
[ "$(stat -f -c %T "$DATA")" != tmpfs ] || die "$DATA is on tmpfs: no disk to measure"
echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> $KEYS keys of $VSIZE B; writer: $CONNS connections, $([ "$RATE" = 0 ] && echo "closed loop" || echo "$RATE puts/s"); ${BEFORE} s before the move, ${AFTER} s after"
run_confman
[ "$SKIP_ETCD" = 1 ] || run_etcd
echo "==> load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo
dirs=("$WORK/confman")
[ "$SKIP_ETCD" = 1 ] || dirs+=("$WORK/etcd")
python3 "$ROOT/bench/move_report.py" "${dirs[@]}"
[ -z "$OUT" ] || echo "raw results in $OUT"
