#!/usr/bin/env bash
# fs-bench.sh: confman-fs against tmpfs and etcd, measured in one run.
#
# Usage: bench/fs-bench.sh [options]
#   --reads N     cached reads per file (default 20000)
#   --remote N    rounds of "remote change, then read" (default 200)
#   --writes N    writes per target, and process-per-op puts (default 300)
#   --events N    write-on-A -> inotify-on-B rounds (default 200)
#   -h, --help    this text
#
# In one run on this machine:
#  1. installs etcd-server and etcd-client if missing, builds build/ if needed;
#  2. a 3-node Confman cluster (data under /var/tmp) and two confman-fs
#     mounts A and B of it (default options: follower reads, 1 s caches);
#  3. (a) open+read+close of a 1 KiB file in a Python loop (no process per
#     op): on mount A (cached: the same file, unchanged) and on tmpfs
#     (/dev/shm); and "just after a remote change": `confmanctl put` of a new
#     1 KiB value (not timed), then the first read on A (and the time until
#     the new value is read);
#     (b) open(O_TRUNC)+write+close of 1 KiB in a Python loop on mount A and
#     on tmpfs; a process per op: `confmanctl put` and `etcdctl put` (to
#     etcd's leader) on a 3-node etcd from Debian's etcd-server, data on
#     the same disk;
#     (c) write on A -> inotify event on B for that file: first event
#     (IN_MODIFY) and IN_CLOSE_WRITE, p50 and p99;
#  4. one table and the ratios.
# Ports 19900-19929 on 127.0.0.1 (Confman 19900-19902, etcd 19911-19913 and
# 19921-19923). Every process, mount and directory made is removed on exit,
# also on failure or Ctrl-C. Exit status: 0 ok, 1 a step failed, 2 usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # scripts/deps.sh, sourced by its absolute path
set -euo pipefail

READS=20000
REMOTE=200
WRITES=300
EVENTS=200
CM_PORT=19900
ETCD_CLIENT_PORT=19911
ETCD_PEER_PORT=19921

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "fs-bench: $*" >&2; exit 1; }
# bench-lib.sh: bl_stop_pid, and the etcd cluster (its processes go in BL_PIDS).
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

while [ $# -gt 0 ]; do
	case "$1" in
	--reads) READS=$2; shift 2 ;;
	--remote) REMOTE=$2; shift 2 ;;
	--writes) WRITES=$2; shift 2 ;;
	--events) EVENTS=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "fs-bench: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
for v in READS REMOTE WRITES EVENTS; do
	if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -eq 0 ]; then
		echo "fs-bench: $v must be a positive integer" >&2
		exit 2
	fi
done

cd "$(dirname "$0")/.."
ROOT=$PWD
CTL=$ROOT/build/client/confmanctl
FSBIN=$ROOT/build/fs/confman-fs
PY=$ROOT/bench/fs_bench.py

WORK=""
SHM=""
CM_UP=0
MOUNTS=()
FS_PIDS=()

cleanup() {
	local rc=$? m p
	trap - EXIT INT TERM
	for m in "${MOUNTS[@]}"; do
		if mountpoint -q "$m"; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
	for p in "${FS_PIDS[@]}"; do bl_stop_pid "$p"; done
	bl_stop_all # etcd
	if [ "$CM_UP" = 1 ]; then
		"$ROOT/scripts/cluster" -d "$WORK/cm" -p "$CM_PORT" -b "$ROOT/build" down --wipe >/dev/null 2>&1 || true
	fi
	for d in "$SHM" "$WORK"; do
		[ -n "$d" ] && rm -rf -- "$d"
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check_ports() {
	local p
	for p in "$@"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			die "port $p is in use"
		fi
	done
}

# ---- 1. packages and build ----

. "$ROOT/scripts/deps.sh"
mapfile -t missing < <(cm_deps_missing etcd-server etcd-client)
if [ ${#missing[@]} -gt 0 ]; then
	echo "==> installing ${missing[*]}"
	cm_deps_apt update -q >/dev/null
	cm_deps_apt install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -f build/build.ninja ]; then
	cm_deps_install
	meson setup build >/dev/null
fi
ninja -C build >/dev/null || die "build failed"
[ -e /dev/fuse ] || die "/dev/fuse missing"

WORK=$(mktemp -d /var/tmp/confman-fs-bench.XXXXXX)
SHM=$(mktemp -d /dev/shm/confman-fs-bench.XXXXXX)

# ---- 2. Confman cluster and two mounts ----

check_ports "$CM_PORT" "$((CM_PORT + 1))" "$((CM_PORT + 2))"
CM_UP=1
"$ROOT/scripts/cluster" --insecure -d "$WORK/cm" -p "$CM_PORT" -b "$ROOT/build" up >"$WORK/cluster.txt" ||
	die "cluster did not start: $(cat "$WORK/cluster.txt")"
SERVERS="127.0.0.1:$CM_PORT,127.0.0.1:$((CM_PORT + 1)),127.0.0.1:$((CM_PORT + 2))"
for _ in $(seq 1 100); do
	"$CTL" --servers "$SERVERS" put /fs-bench/ping x >/dev/null 2>&1 && break
	sleep 0.1
done
"$CTL" --servers "$SERVERS" put /fs-bench/ping x >/dev/null || die "cluster does not take writes"

mount_one() {
	local dir=$1
	mkdir -p "$dir"
	MOUNTS+=("$dir")
	setsid "$FSBIN" -f "$SERVERS" "$dir" >"$dir.log" 2>&1 </dev/null &
	FS_PIDS+=($!)
	for _ in $(seq 1 100); do
		mountpoint -q "$dir" && return 0
		sleep 0.05
	done
	die "confman-fs did not mount $dir: $(cat "$dir.log")"
}
MA=$WORK/mA
MB=$WORK/mB
mount_one "$MA"
mount_one "$MB"

head -c 1023 /dev/zero | tr '\0' 'c' >"$WORK/1k"
echo >>"$WORK/1k"
cp "$WORK/1k" "$MA/fs-bench/cat1k"
cp "$WORK/1k" "$SHM/cat1k"
cp "$WORK/1k" "$MA/fs-bench/w1k"
cp "$WORK/1k" "$MA/fs-bench/ev"
for _ in $(seq 1 100); do [ -e "$MB/fs-bench/ev" ] && break; sleep 0.05; done

declare -A R # "name field" -> value
run() {
	local name=$1 line f
	shift
	line=$(python3 "$PY" "$@") || die "$name: $*"
	while read -r l; do
		echo "   $name: $l"
		for f in $l; do
			case "$f" in *=*) R["$name${l%% *}.${f%%=*}"]=${f#*=} ;; esac
		done
	done <<<"$line"
}

echo "==> machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"

# ---- 3a. cat ----
echo "==> (a) open+read+close of 1 KiB, $READS times"
run tmpfs read "$SHM/cat1k" "$READS"
run mount read "$MA/fs-bench/cat1k" "$READS"
echo "==> (a) read just after a remote change (confmanctl put, then read on A), $REMOTE rounds"
run mount remote-read "$CTL" "$SERVERS" /fs-bench/cat1k "$MA/fs-bench/cat1k" "$REMOTE"

# ---- 3b. writes ----
echo "==> (b) open(O_TRUNC)+write+close of 1 KiB, $WRITES times"
run tmpfs write "$SHM/w1k" "$WRITES"
run mount write "$MA/fs-bench/w1k" "$WRITES"
echo "==> (b) a process per op: confmanctl put, $WRITES times"
V1K=$(cat "$WORK/1k")
run cmctl proc-put "$WRITES" "$CTL" --servers "$SERVERS" put /fs-bench/p{} "$V1K"

bl_etcd_up "$WORK/etcd" "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" cm-fs-bench
LEADER=$BL_ETCD_LEADER
echo "==> (b) a process per op: etcdctl put (etcd $(etcd --version | head -1 | awk '{print $3}'), leader $LEADER), $WRITES times"
run etcdctl proc-put "$WRITES" etcdctl --endpoints="$LEADER" put /fs-bench/p{} "$V1K"

# ---- 3c. change -> event ----
echo "==> (c) write on A -> inotify on B, $EVENTS rounds"
run mount event "$MA/fs-bench/ev" "$MB/fs-bench/ev" "$EVENTS"

# ---- 4. table ----
g() { echo "${R[$1]:-?}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }
echo
printf '%-52s %10s %10s %10s\n' "operation" "p50 us" "p99 us" "mean us"
row() { printf '%-52s %10s %10s %10s\n' "$1" "$(g "$2.p50_us")" "$(g "$2.p99_us")" "$(g "$2.mean_us")"; }
row "cat 1 KiB, tmpfs (open+read+close)" tmpfsread
row "cat 1 KiB, mount, unchanged file" mountread
row "cat 1 KiB, mount, first read after remote put" mountremote-read-first
row "  ... until the new value is read" mountremote-read-until-new
row "write 1 KiB, tmpfs (open O_TRUNC+write+close)" tmpfswrite
row "write 1 KiB, mount" mountwrite
row "confmanctl put (a process per op)" cmctlproc-put
row "etcdctl put (a process per op, 3-node etcd)" etcdctlproc-put
row "write on A -> first inotify event on B" mountevent-first
row "write on A -> IN_CLOSE_WRITE on B" mountevent-close-write
echo
echo "remote-read first reads already fresh: $(g mountremote-read-first.fresh); events missed: $(g mountevent-first.missed)"
echo "ratio cached cat mount/tmpfs (mean):        $(ratio "$(g mountread.mean_us)" "$(g tmpfsread.mean_us)")  (aim <= 1.2)"
echo "ratio cached cat mount/tmpfs (p50):         $(ratio "$(g mountread.p50_us)" "$(g tmpfsread.p50_us)")"
echo "ratio write mount/tmpfs (mean):             $(ratio "$(g mountwrite.mean_us)" "$(g tmpfswrite.mean_us)")"
echo "ratio write mount / etcdctl put (mean):     $(ratio "$(g mountwrite.mean_us)" "$(g etcdctlproc-put.mean_us)")"
echo "ratio confmanctl put / etcdctl put (mean):  $(ratio "$(g cmctlproc-put.mean_us)" "$(g etcdctlproc-put.mean_us)")"
echo "change -> event p99 (IN_CLOSE_WRITE):       $(g mountevent-close-write.p99_us) us  (aim < 50000)"
