#!/usr/bin/env bash
# offline-bench.sh: confman-fs's offline mode (the persistent cache), measured.
#
# Usage: bench/offline-bench.sh [options]
#   --reads N     open+read+close of a cached 1 KiB file per case (default 5000)
#   --rounds N    cluster returns measured (default 5)
#   -h, --help    this text
#
# In one run on this machine:
#  1. builds build/ if needed;
#  2. a 3-node Confman cluster (plain TCP, data under /var/tmp) and one
#     confman-fs mount with its cache in the run's directory (offline_after
#     300 ms, prefetch on);
#  3. (a) a cached cat (open+read+close of 1 KiB in a Python loop): online
#     (the mount's value cache), on tmpfs (/dev/shm), and offline (every node
#     killed: answered from the LMDB cache);
#     (b) the return, --rounds times: all nodes started again -> the mount
#     says online (user.confman.offline 0); and, with the mount SIGSTOPped
#     while the cluster restarts and the file changes (a change it missed),
#     from SIGCONT to online and to inotify's IN_CLOSE_WRITE for that file;
#  4. one table and the ratios.
# Ports 28190-28192 on 127.0.0.1. Every process, mount and directory made is
# removed on exit, also on failure or Ctrl-C. Exit status: 0 ok, 1 a step
# failed, 2 usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # scripts/deps.sh, sourced by its absolute path
set -euo pipefail

READS=5000
ROUNDS=5
CM_PORT=28190

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "offline-bench: $*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

while [ $# -gt 0 ]; do
	case "$1" in
	--reads) READS=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "offline-bench: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
for v in READS ROUNDS; do
	bl_is_uint "${!v}" || { echo "offline-bench: --${v,,} must be a positive integer" >&2; exit 2; }
done

cd "$(dirname "$0")/.."
ROOT=$PWD
CTL=$ROOT/build/client/confmanctl
FSBIN=$ROOT/build/fs/confman-fs

WORK=""
SHM=""
CM_UP=0
MNT=""
FS_PID=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$FS_PID" ] && kill -CONT "$FS_PID" 2>/dev/null
	if [ -n "$MNT" ] && mountpoint -q "$MNT"; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	fi
	[ -n "$FS_PID" ] && bl_stop_pid "$FS_PID"
	if [ "$CM_UP" = 1 ]; then
		"$ROOT/scripts/cluster" -d "$WORK/cm" -p "$CM_PORT" -b "$ROOT/build" --insecure \
			down --wipe >/dev/null 2>&1 || true
	fi
	for d in "$SHM" "$WORK"; do
		[ -n "$d" ] && rm -rf -- "$d"
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. build ----
. "$ROOT/scripts/deps.sh"
if [ ! -f build/build.ninja ]; then
	cm_deps_install
	meson setup build >/dev/null
fi
ninja -C build >/dev/null || die "build failed"
[ -e /dev/fuse ] || die "/dev/fuse missing"
WORK=$(mktemp -d /var/tmp/confman-offline-bench.XXXXXX)
SHM=$(mktemp -d /dev/shm/confman-offline-bench.XXXXXX)

# ---- 2. cluster and mount ----
bl_check_ports "$CM_PORT" "$((CM_PORT + 1))" "$((CM_PORT + 2))"
CLUSTER=("$ROOT/scripts/cluster" -d "$WORK/cm" -p "$CM_PORT" -b "$ROOT/build" --insecure)
CM_UP=1
"${CLUSTER[@]}" up >"$WORK/cluster.txt" || die "cluster did not start: $(cat "$WORK/cluster.txt")"
SERVERS="127.0.0.1:$CM_PORT,127.0.0.1:$((CM_PORT + 1)),127.0.0.1:$((CM_PORT + 2))"
for _ in $(seq 1 100); do
	"$CTL" --servers "$SERVERS" mkdir /ob >/dev/null 2>&1 && break
	sleep 0.1
done
MNT=$WORK/m
mkdir -p "$MNT"
setsid "$FSBIN" -f -o "cache=$WORK/cache,offline_after=300,timeout=5000" "$SERVERS" "$MNT" \
	>"$WORK/fs.log" 2>&1 </dev/null &
FS_PID=$!
for _ in $(seq 1 100); do mountpoint -q "$MNT" && break; sleep 0.05; done
mountpoint -q "$MNT" || die "confman-fs did not mount: $(cat "$WORK/fs.log")"
head -c 1023 /dev/zero | tr '\0' 'c' >"$SHM/cat1k"
echo >>"$SHM/cat1k"
cp "$SHM/cat1k" "$MNT/ob/cat1k"
echo start >"$MNT/ob/ev"
for _ in $(seq 1 200); do
	python3 -c 'import os, sys; sys.exit(b"prefetch done" not in os.getxattr(sys.argv[1], "user.confman.status"))' \
		"$MNT" 2>/dev/null && break
	sleep 0.05
done
sleep 1.2 # one flush of the cache

echo "==> machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "==> $READS cached cats per case, $ROUNDS returns"
OUT=$(python3 "$ROOT/bench/offline_bench.py" "${CLUSTER[*]}" "$CTL" "$SERVERS" "$MNT" "$FS_PID" \
	"$SHM" "$READS" "$ROUNDS") || die "measuring failed: $OUT; mount log: $(tail -5 "$WORK/fs.log")"
while read -r l; do echo "   $l"; done <<<"$OUT"

declare -A P50 P99
while read -r name _ p50 p99 _; do
	P50[$name]=${p50#p50_us=}
	P99[$name]=${p99#p99_us=}
done <<<"$OUT"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1000 }'; }
echo "==> results"
printf '   %-44s %10s %10s\n' "" "p50" "p99"
printf '   %-44s %8s us %8s us\n' "cat 1 KiB, tmpfs" "${P50[cat-tmpfs]}" "${P99[cat-tmpfs]}"
printf '   %-44s %8s us %8s us\n' "cat 1 KiB, mount online (value cache)" "${P50[cat-online]}" "${P99[cat-online]}"
printf '   %-44s %8s us %8s us\n' "cat 1 KiB, mount offline (LMDB cache)" "${P50[cat-offline]}" "${P99[cat-offline]}"
printf '   %-44s %8s ms %8s ms\n' "nodes started -> mount online" "$(ms "${P50[back-online]}")" "$(ms "${P99[back-online]}")"
printf '   %-44s %8s ms %8s ms\n' "mount resumed -> online" "$(ms "${P50[resume-online]}")" "$(ms "${P99[resume-online]}")"
printf '   %-44s %8s ms %8s ms\n' "mount resumed -> missed change's inotify" "$(ms "${P50[resume-event]}")" "$(ms "${P99[resume-event]}")"
echo "==> ratios (p50)"
echo "   offline / online cat: $(ratio "${P50[cat-offline]}" "${P50[cat-online]}")x"
echo "   offline / tmpfs cat:  $(ratio "${P50[cat-offline]}" "${P50[cat-tmpfs]}")x"
echo "   online / tmpfs cat:   $(ratio "${P50[cat-online]}" "${P50[cat-tmpfs]}")x"
echo "   missed change's inotify / mount resumed -> online: $(ratio "${P50[resume-event]}" "${P50[resume-online]}")x"
echo "   load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
